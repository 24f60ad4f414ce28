/**
 * The cache driven by direct calls, as an adapter whose framework hands it the final payload
 * (a Buffer or the chunks of a stream) rather than a Node response: no server at all.
 */
import { MemoryBackend } from '@cache/memory'
import { describe, expect, it } from 'vitest'
import { HttpCache, type HttpRequestView, type LookupResult, type MissResult } from '../src/index.js'

function view(url: string, headers: Record<string, string> = {}, method = 'GET'): HttpRequestView<null> {
  return {
    method,
    url,
    headers: { host: 'shop.test', ...headers },
    protocol: 'https',
    host: 'shop.test',
    site: '',
    raw: null,
  }
}

async function lookup(cache: HttpCache<null>, v: HttpRequestView<null>): Promise<LookupResult> {
  return await cache.lookup(v)
}

function asMiss(result: LookupResult): MissResult {
  if (result.kind !== 'miss') throw new Error(`expected a miss, got ${result.kind}`)
  return result
}

/** Sends a whole response through a miss's recorder, as an `onSend`-style hook would. */
function respond(miss: MissResult, status: number, headers: Record<string, string>, body: Buffer) {
  const advice = miss.recorder.head({
    status,
    headers: { ...headers, 'content-length': String(body.length) },
    body,
  })
  miss.recorder.end(body)
  miss.recorder.finish()
  return advice
}

describe('HttpCache driven by direct calls', () => {
  it('stores what the recorder was fed once it finished, and replays its exact bytes', async () => {
    const cache = new HttpCache<null>({ backend: new MemoryBackend(), now: () => 1_000_000 })
    const body = Buffer.from([0, 255, 1, 254, 10, 13])
    const miss = asMiss(await lookup(cache, view('/bin?b=2&a=1')))
    expect(miss.recording).toBe(true)
    expect(miss.set).toEqual([['cache-status', '@cache; fwd=uri-miss']])
    const advice = respond(miss, 200, { 'content-type': 'application/octet-stream' }, body)
    expect(advice.storable).toBe(true)
    expect(advice.set.map(([name]) => name)).toEqual(['etag', 'cache-status'])
    expect(await miss.recorder.outcome).toEqual({ stored: true })
    const hit = await lookup(cache, view('/bin?a=1&b=2'))
    if (hit.kind !== 'hit') throw new Error(hit.kind)
    expect(hit.status).toBe(200)
    expect(hit.body.equals(body)).toBe(true)
    expect(hit.headers).toContain('application/octet-stream')
    expect(hit.key).toBe('http:https://shop.test/bin?a=1&b=2')
  })

  it('stores nothing until the response finished, and nothing that was aborted', async () => {
    const cache = new HttpCache<null>({ backend: new MemoryBackend() })
    const miss = asMiss(await lookup(cache, view('/a')))
    miss.recorder.head({ status: 200, headers: {} })
    miss.recorder.write('half')
    expect((await lookup(cache, view('/b'))).kind).toBe('miss')
    miss.recorder.abort('closed')
    expect(await miss.recorder.outcome).toEqual({ stored: false, reason: 'closed' })
    expect((await lookup(cache, view('/a'))).kind).toBe('miss')
  })

  it('stores nothing the adapter refused, and releases the requests waiting for it at once', async () => {
    const cache = new HttpCache<null>({ backend: new MemoryBackend(), collapseTimeout: 30 })
    const miss = asMiss(await lookup(cache, view('/a')))
    const waiting = lookup(cache, view('/a'))
    miss.recorder.refuse('a guard ran')
    const started = Date.now()
    expect((await waiting).kind).toBe('miss')
    expect(Date.now() - started).toBeLessThan(5_000)
  })

  it('says which headers to add, and stores none of its own status header or Cache-Control', async () => {
    const cache = new HttpCache<null>({ backend: new MemoryBackend(), cacheControl: true, ttl: 30 })
    const miss = asMiss(await lookup(cache, view('/a')))
    const advice = respond(miss, 200, { 'content-type': 'text/plain' }, Buffer.from('x'))
    expect(advice.cacheControl).toBe('public, max-age=30')
    await miss.recorder.outcome
    const hit = await lookup(cache, view('/a'))
    if (hit.kind !== 'hit') throw new Error(hit.kind)
    expect(hit.cacheControl).toBe('public, max-age=30')
    expect(hit.headers.filter((_, i) => i % 2 === 0)).toEqual([
      'content-type',
      'age',
      'etag',
      'cache-status',
      'content-length',
    ])
  })

  it('never stores a response whose headers the recorder never saw', async () => {
    const cache = new HttpCache<null>({ backend: new MemoryBackend() })
    const miss = asMiss(await lookup(cache, view('/a')))
    miss.recorder.end(Buffer.from('body'))
    miss.recorder.finish()
    expect(await miss.recorder.outcome).toEqual({ stored: false, reason: 'headers-unseen' })
  })

  it('answers a HEAD miss without recording, and a refused request with its reason', async () => {
    const cache = new HttpCache<null>({ backend: new MemoryBackend() })
    const head = await lookup(cache, view('/a', {}, 'HEAD'))
    expect(head.kind === 'miss' && head.recording).toBe(false)
    const refused = await lookup(cache, { ...view('/a'), bypass: 'rewritten-url' })
    expect(refused).toEqual({
      kind: 'bypass',
      reason: 'rewritten-url',
      set: [['cache-status', '@cache; fwd=request; detail=rewritten-url']],
    })
    const noHost = await lookup(cache, { ...view('/a'), host: undefined })
    expect(noHost.kind === 'bypass' && noHost.reason).toBe('url')
  })
})
