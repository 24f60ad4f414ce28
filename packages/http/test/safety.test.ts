/**
 * The safety table of the response cache, over a plain node:http server (no framework): what is
 * stored, what is replayed, to whom, and what never is.
 */
import { randomBytes } from 'node:crypto'
import { defineBackend, invalidateTags } from '@cache/core'
import { MemoryBackend } from '@cache/memory'
import { afterEach, describe, expect, it } from 'vitest'
import { HttpCache, type HttpCacheOptions, invalidateResponsePrefix } from '../src/index.js'
import { type Handler, type Served, send, serve, until } from './node-adapter.js'

const running: Served[] = []
afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.close()))
})

async function start(handler: Handler, options: HttpCacheOptions = {}, adapter = {}) {
  const backend = new MemoryBackend()
  const cache = new HttpCache({ backend, ...options })
  const served = await serve(cache, handler, adapter)
  running.push(served)
  return { ...served, cache, backend }
}

const json: Handler = (req, res) => {
  res.setHeader('content-type', 'application/json')
  res.end(JSON.stringify({ url: req.url, at: Math.random() }))
}

describe('what is stored and replayed', () => {
  it('replays a GET response from the cache: the handler runs once (the control row)', async () => {
    const app = await start(json, { ttl: 60, now: () => 1_000_000 })
    const first = await send(`${app.url}/a?x=1`)
    const second = await send(`${app.url}/a?x=1`)
    expect(first.headers['cache-status']).toBe('@cache; fwd=uri-miss; stored')
    expect(second.headers['cache-status']).toBe('@cache; hit; ttl=60')
    expect(second.body.equals(first.body)).toBe(true)
    expect(second.headers.age).toBe('0')
    expect(second.headers.etag).toBe(first.headers.etag)
    expect(app.calls()).toBe(1)
  })

  it('keys the query in any order, and each host apart', async () => {
    const app = await start(json)
    await send(`${app.url}/a?x=1&y=2`)
    await send(`${app.url}/a?y=2&x=1`)
    expect(app.calls()).toBe(1)
    await send(`${app.url}/a?x=1&y=2`, { headers: { host: 'other.test' } })
    expect(app.calls()).toBe(2)
  })

  it.each(['POST', 'PUT', 'DELETE', 'PATCH'])('never caches %s', async (method) => {
    const app = await start(json)
    const a = await send(`${app.url}/a`, { method })
    await send(`${app.url}/a`, { method })
    expect(app.calls()).toBe(2)
    expect(a.headers['cache-status']).toBe('@cache; fwd=method')
    // Nor does a later GET get what they answered.
    await send(`${app.url}/a`)
    expect(app.calls()).toBe(3)
  })

  it.each([201, 204, 206, 301, 404, 500, 503])('never stores a %i by default', async (status) => {
    const app = await start((_req, res) => {
      res.statusCode = status
      res.end(status === 204 ? undefined : 'body')
    })
    await send(`${app.url}/a`)
    await send(`${app.url}/a`)
    expect(app.calls()).toBe(status === 201 ? 1 : 2)
  })

  it.each([
    ['authorization', 'Bearer x'],
    ['cookie', 'sid=1'],
  ])('lets requests with %s through without reading or storing', async (name, value) => {
    const app = await start(json)
    await send(`${app.url}/a`)
    const reply = await send(`${app.url}/a`, { headers: { [name]: value } })
    expect(reply.headers['cache-status']).toBe(`@cache; fwd=request; detail=${name}`)
    expect(app.calls()).toBe(2)
  })

  it.each([
    ['set-cookie', 'sid=secret'],
    ['cache-control', 'private, max-age=60'],
    ['cache-control', 'no-store'],
    ['cache-control', 'no-cache'],
    ['cache-control', 's-maxage=0, max-age=60'],
    ['cache-control', 'max-age=0'],
    ['vary', '*'],
    // Names no request header has: every client would share the first one's entry.
    ['vary', '"X-User"'],
    ['vary', 'X-User;q=1'],
    ['vary', 'Accept-Language, X User'],
  ])('never stores a response with %s: %s', async (name, value) => {
    const app = await start((_req, res) => {
      res.setHeader(name, value)
      res.end(`body ${Math.random()}`)
    })
    const first = await send(`${app.url}/a`)
    const second = await send(`${app.url}/a`)
    expect(second.body.equals(first.body)).toBe(false)
    expect(app.calls()).toBe(2)
  })

  // A directive list with stray separators (`;`, quotes, brackets, `/`): a name that says not to
  // store is read wherever it stands, as the token it is, whatever is around it.
  it.each([
    'no-store;',
    ';no-store',
    'public;private',
    'max-age=60;private',
    'max-age=60, "private"',
    'max-age=60, (no-cache)',
    'max-age=60/no-store',
    'public;max-age=0',
    'public, max-age=60;s-maxage=0',
  ])('never stores a response with cache-control: %s (stray separators)', async (value) => {
    const app = await start((_req, res) => {
      res.setHeader('cache-control', value)
      res.end(`body ${Math.random()}`)
    })
    const first = await send(`${app.url}/a`)
    const second = await send(`${app.url}/a`)
    expect(second.body.equals(first.body)).toBe(false)
    expect(second.headers['cache-status']).toBe('@cache; fwd=uri-miss; detail=cache-control')
  })

  it('stores a response whose extension directives only contain those names (x-private-data)', async () => {
    const app = await start((_req, res) => {
      res.setHeader('cache-control', 'public, max-age=60, x-private-data, no-store-hint=1')
      res.end(`body ${Math.random()}`)
    })
    await send(`${app.url}/a`)
    expect((await send(`${app.url}/a`)).headers['cache-status']).toMatch(/hit/)
  })

  it("ttl from the response: a max-age after a stray ';' is the entry's lifetime, not the default", async () => {
    const app = await start(
      (_req, res) => {
        res.setHeader('cache-control', 'public;max-age=5')
        res.end(`body ${Math.random()}`)
      },
      { ttl: { fromResponse: true, default: 60 }, now: () => 1_000_000 },
    )
    await send(`${app.url}/a`)
    expect((await send(`${app.url}/a`)).headers['cache-status']).toBe('@cache; hit; ttl=5')
  })

  it('keeps one variant per value of a header the response varies on', async () => {
    const app = await start((req, res) => {
      res.setHeader('vary', 'Accept-Language')
      res.end(req.headers['accept-language'] === 'fr' ? 'bonjour' : 'hello')
    })
    const en = await send(`${app.url}/a`, { headers: { 'accept-language': 'en' } })
    const fr = await send(`${app.url}/a`, { headers: { 'accept-language': 'fr' } })
    const en2 = await send(`${app.url}/a`, { headers: { 'accept-language': 'en' } })
    const fr2 = await send(`${app.url}/a`, { headers: { 'accept-language': 'fr' } })
    expect([en.body, fr.body, en2.body, fr2.body].map(String)).toEqual([
      'hello',
      'bonjour',
      'hello',
      'bonjour',
    ])
    expect(fr.headers['cache-status']).toBe('@cache; fwd=vary-miss; stored')
    expect(app.calls()).toBe(2)
  })

  it('replays a binary body byte for byte, streamed in chunks', async () => {
    const bytes = randomBytes(200_000)
    const app = await start((_req, res) => {
      res.setHeader('content-type', 'application/octet-stream')
      for (let i = 0; i < bytes.length; i += 16_384) res.write(bytes.subarray(i, i + 16_384))
      res.end()
    })
    await send(`${app.url}/bin`)
    const hit = await send(`${app.url}/bin`)
    expect(hit.headers['cache-status']).toMatch(/hit/)
    expect(hit.body.equals(bytes)).toBe(true)
    expect(hit.headers['content-length']).toBe(String(bytes.length))
  })

  it('stores no body over maxBodySize', async () => {
    const app = await start((_req, res) => res.end(Buffer.alloc(2048, 1)), { maxBodySize: 1024 })
    const first = await send(`${app.url}/big`)
    await send(`${app.url}/big`)
    expect(first.body.length).toBe(2048)
    expect(app.calls()).toBe(2)
  })
})

describe('incomplete responses', () => {
  it('never stores a body shorter than its Content-Length', async () => {
    const app = await start((_req, res) => {
      res.setHeader('content-length', '100')
      res.end('short')
    })
    await expect(send(`${app.url}/a`)).rejects.toThrow()
    await expect(send(`${app.url}/a`)).rejects.toThrow()
    expect(app.calls()).toBe(2)
  })

  it('never stores a response whose connection was destroyed half-way', async () => {
    let destroy = true
    const app = await start((_req, res) => {
      res.write('first half')
      if (destroy) {
        destroy = false
        setTimeout(() => res.destroy(), 10)
      } else res.end(' and the rest')
    })
    await expect(send(`${app.url}/a`)).rejects.toThrow()
    const whole = await send(`${app.url}/a`)
    expect(String(whole.body)).toBe('first half and the rest')
    expect(whole.headers['cache-status']).toBe('@cache; fwd=uri-miss; stored')
    const hit = await send(`${app.url}/a`)
    expect(String(hit.body)).toBe('first half and the rest')
  })
})

describe('HEAD, conditional and range requests', () => {
  it('answers a HEAD miss without planting an empty body, and a HEAD hit without a body', async () => {
    const app = await start((_req, res) => {
      res.setHeader('content-type', 'text/plain')
      res.end('the body')
    })
    const head = await send(`${app.url}/a`, { method: 'HEAD' })
    expect(head.body.length).toBe(0)
    const get = await send(`${app.url}/a`)
    expect(String(get.body)).toBe('the body')
    expect(get.headers['cache-status']).toBe('@cache; fwd=uri-miss; stored')
    const headHit = await send(`${app.url}/a`, { method: 'HEAD' })
    expect(headHit.headers['cache-status']).toMatch(/hit/)
    expect(headHit.headers['content-length']).toBe('8')
    expect(headHit.body.length).toBe(0)
    expect(app.calls()).toBe(2)
  })

  it("answers 304 to an If-None-Match of the stored entity tag, the 200's ETag included", async () => {
    const app = await start(json)
    const first = await send(`${app.url}/a`)
    const etag = first.headers.etag!
    expect(etag).toMatch(/^"/)
    const again = await send(`${app.url}/a`, { headers: { 'if-none-match': etag } })
    expect(again.status).toBe(304)
    expect(again.headers.etag).toBe(etag)
    expect(again.body.length).toBe(0)
    const other = await send(`${app.url}/a`, { headers: { 'if-none-match': '"nope"' } })
    expect(other.status).toBe(200)
  })

  it('never plants the part a Range request was answered with', async () => {
    const app = await start((req, res) => {
      const range = /bytes=(\d+)-(\d+)/.exec(req.headers.range ?? '')
      if (range) {
        res.statusCode = 206
        res.setHeader('content-range', `bytes ${range[1]}-${range[2]}/10`)
        res.end('0123456789'.slice(Number(range[1]), Number(range[2]) + 1))
      } else res.end('0123456789')
    })
    const part = await send(`${app.url}/f`, { headers: { range: 'bytes=2-4' } })
    expect(part.status).toBe(206)
    const whole = await send(`${app.url}/f`)
    expect(whole.status).toBe(200)
    expect(String(whole.body)).toBe('0123456789')
  })
})

describe('concurrency and freshness', () => {
  it('runs the handler once for concurrent misses of one key (single-flight)', async () => {
    const app = await start((_req, res) => setTimeout(() => res.end(`once ${Math.random()}`), 50))
    const replies = await Promise.all(Array.from({ length: 8 }, () => send(`${app.url}/slow`)))
    expect(app.calls()).toBe(1)
    expect(new Set(replies.map((r) => String(r.body))).size).toBe(1)
    // Replayed from the flight ('collapsed') or, once stored, from the backend ('hit').
    expect(replies.filter((r) => /stored$/.test(r.headers['cache-status']!)).length).toBe(1)
  })

  it('releases waiting requests after collapseTimeout', async () => {
    const app = await start((_req, res) => setTimeout(() => res.end('late'), 300), { collapseTimeout: 0.05 })
    await Promise.all([send(`${app.url}/slow`), send(`${app.url}/slow`)])
    expect(app.calls()).toBe(2)
  })

  it('serves a stale entry within staleWhileRevalidate while one refresh replaces it', async () => {
    let now = 1_000_000
    let version = 1
    const app = await start((_req, res) => res.end(`v${version}`), {
      ttl: 10,
      staleWhileRevalidate: 60,
      now: () => now,
    })
    expect(String((await send(`${app.url}/a`)).body)).toBe('v1')
    version = 2
    now += 20_000
    const stale = await send(`${app.url}/a`)
    expect(String(stale.body)).toBe('v1')
    expect(stale.headers.age).toBe('20')
    await until(() => app.calls() === 2, 'the refresh')
    await until(async () => String((await send(`${app.url}/a`)).body) === 'v2', 'the refreshed entry')
    expect(app.calls()).toBe(2)
  })

  it('counts a refresh that is not stored as a revalidate error, and keeps the stale entry', async () => {
    let now = 1_000_000
    let fail = false
    const app = await start(
      (_req, res) => {
        res.statusCode = fail ? 500 : 200
        res.end(fail ? 'broken' : 'good')
      },
      { ttl: 10, staleWhileRevalidate: 60, now: () => now },
    )
    await send(`${app.url}/a`)
    fail = true
    now += 20_000
    expect(String((await send(`${app.url}/a`)).body)).toBe('good')
    await until(() => app.cache.stats.errors === 1, 'the refresh error')
    expect(String((await send(`${app.url}/a`)).body)).toBe('good')
  })
})

describe('a refresh resolved otherwise than the request it refreshes', () => {
  it('is not stored under another key: counted and emitted as a revalidate error, the stale entry kept', async () => {
    let now = 1_000_000
    let version = 1
    const app = await start(
      (_req, res) => res.end(`v${version}`),
      { ttl: 10, staleWhileRevalidate: 60, now: () => now },
      // The refresh's copy reaches the app with another Host (a connection the app resolves otherwise).
      {
        before: (req: { headers: Record<string, unknown> }) => {
          if (req.headers['x-test-refresh'] !== undefined) req.headers.host = 'elsewhere.example'
        },
      },
    )
    const events: string[] = []
    app.cache.on('error', (event) => events.push(`${event.operation}: ${String(event.error)}`))
    await send(`${app.url}/a`)
    version = 2
    now += 20_000
    expect(String((await send(`${app.url}/a`)).body)).toBe('v1')
    await until(() => app.cache.stats.errors === 1, 'the refresh error')
    expect(events).toHaveLength(1)
    expect(events[0]).toMatch(/^revalidate: .*refresh-key-changed/)
    expect(app.cache.stats.sets).toBe(1)
    expect(String((await send(`${app.url}/a`)).body)).toBe('v1')
  })
})

describe('sites and adapter decisions', () => {
  it('never replays an entry made at one site at another', async () => {
    const app = await start(
      json,
      {},
      { site: (req: { headers: Record<string, unknown> }) => String(req.headers['x-site']) },
    )
    await send(`${app.url}/a`, { headers: { 'x-site': 'one' } })
    await send(`${app.url}/a`, { headers: { 'x-site': 'two' } })
    await send(`${app.url}/a`, { headers: { 'x-site': 'one' } })
    expect(app.calls()).toBe(2)
  })

  it("bypasses for the adapter's reason, and when the site cannot be told", async () => {
    const app = await start(
      json,
      {},
      {
        site: (req: { url?: string }) => (req.url === '/nowhere' ? undefined : ''),
        bypass: (req: { url?: string }) => (req.url === '/rewritten' ? 'rewritten-url' : undefined),
      },
    )
    const rewritten = await send(`${app.url}/rewritten`)
    const nowhere = await send(`${app.url}/nowhere`)
    await send(`${app.url}/rewritten`)
    expect(rewritten.headers['cache-status']).toBe('@cache; fwd=request; detail=rewritten-url')
    expect(nowhere.headers['cache-status']).toBe('@cache; fwd=request; detail=site')
    expect(app.calls()).toBe(3)
  })
})

describe('invalidation', () => {
  it('by URL (any spelling of the query), by prefix, by tag, and whole', async () => {
    const app = await start(json, { keyPrefix: 'api:users', tags: ['users'] })
    const host = new URL(app.url).host
    const fill = async () => {
      await send(`${app.url}/u?b=2&a=1`)
      const before = app.calls()
      await send(`${app.url}/u?b=2&a=1`)
      expect(app.calls()).toBe(before)
    }
    await fill()
    expect(await app.cache.invalidate(`/u?a=1&b=2`, { host })).toBe(true)
    await send(`${app.url}/u?b=2&a=1`)
    expect(app.calls()).toBe(2)
    await invalidateResponsePrefix('api', { backend: app.backend })
    await fill()
    expect(app.calls()).toBe(3)
    await invalidateTags(['users'], { backend: app.backend })
    await fill()
    expect(app.calls()).toBe(4)
    await app.cache.clear()
    await fill()
    expect(app.calls()).toBe(5)
  })

  it('never stores a response that was in flight when its URL was invalidated', async () => {
    let finish: () => void = () => {}
    const app = await start((_req, res) => {
      finish = () => res.end(`made ${app.calls()}`)
    })
    const host = new URL(app.url).host
    const first = send(`${app.url}/a`)
    await until(() => app.calls() === 1, 'the handler')
    await app.cache.invalidate('/a', { host })
    finish()
    await first
    const second = send(`${app.url}/a`)
    await until(() => app.calls() === 2, 'the handler again')
    finish()
    expect(String((await second).body)).toBe('made 2')
  })

  it('never stores a background refresh that was in flight when invalidateTags() ran over the entry a later miss stored', async () => {
    let now = 1_000_000
    let db = 'old'
    let hold: Promise<void> | undefined
    const app = await start(
      (_req, res) => {
        const seen = db
        if (hold === undefined) res.end(`v=${seen}`)
        else void hold.then(() => res.end(`v=${seen}`))
      },
      { ttl: 10, staleWhileRevalidate: 100, tags: ['products'], now: () => now },
    )
    const errors: string[] = []
    app.cache.on('error', (event) => errors.push(`${event.operation}: ${String(event.error)}`))
    expect(String((await send(`${app.url}/p`)).body)).toBe('v=old')
    now += 20_000
    let release: () => void = () => {}
    hold = new Promise((resolve) => {
      release = resolve
    })
    // A stale hit: its refresh reads 'old', and is still running when the tag is invalidated.
    expect(String((await send(`${app.url}/p`)).body)).toBe('v=old')
    await until(() => app.calls() === 2, 'the refresh')
    db = 'new'
    await invalidateTags(['products'], { backend: app.backend })
    hold = undefined
    expect(String((await send(`${app.url}/p`)).body)).toBe('v=new')
    release()
    await until(() => errors.length > 0 || app.cache.stats.sets === 3, 'the refresh to settle')
    // Before: the refresh was stored over 'v=new' under the old generation; this was a miss (4 runs).
    const hit = await send(`${app.url}/p`)
    expect(String(hit.body)).toBe('v=new')
    expect(hit.headers['cache-status']).toMatch(/hit/)
    expect(app.calls()).toBe(3)
    expect(errors).toEqual([expect.stringMatching(/^revalidate: .*not stored: .*invalidated/s)])
  })

  it('never shares nor stores a response in flight at its invalidation, before the new generation lands', async () => {
    // A backend whose generation writes are slow (a remote level): until the new generation
    // lands, only the cancelled flight keeps the old response from being stored and served.
    const values = new Map<string, unknown>()
    let landed: () => void = () => {}
    let slow: Promise<void> | undefined
    const backend = defineBackend({
      name: 'slow-generations',
      async get(key: string) {
        return values.get(key) as never
      },
      async set(key: string, value: unknown) {
        if (slow !== undefined && key.startsWith('__v:')) await slow
        values.set(key, value)
      },
      async delete(key: string) {
        return values.delete(key)
      },
      async clear() {
        values.clear()
      },
    })
    let version = 1
    let finish: () => void = () => {}
    const cache = new HttpCache({ backend })
    const app = await serve(cache, (_req, res) => {
      const seen = version
      finish = () => res.end(`v${seen}`)
    })
    running.push(app)
    const host = new URL(app.url).host
    const first = send(`${app.url}/a`)
    await until(() => app.calls() === 1, 'the handler')
    slow = new Promise((resolve) => {
      landed = resolve
    })
    version = 2
    const invalidated = cache.invalidate('/a', { host })
    finish()
    expect(String((await first).body)).toBe('v1')
    const second = send(`${app.url}/a`)
    await until(() => app.calls() === 2, 'the handler again')
    finish()
    expect(String((await second).body)).toBe('v2')
    landed()
    await invalidated
  })
})
