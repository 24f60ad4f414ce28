/**
 * What the cache decides on is what Node sent: the header block it wrote, whatever object the
 * chain of `writeHead` calls finally handed to Node's own.
 */
import { type IncomingMessage, ServerResponse } from 'node:http'
import { MemoryBackend } from '@cache/memory'
import { afterEach, describe, expect, it } from 'vitest'
import { HttpCache } from '../src/index.js'
import { type Served, send, serve } from './node-adapter.js'

/**
 * A session layer written as a `ServerResponse` subclass: its `writeHead` hands Node a new header
 * object with the visitor's cookie, `private`, and the `Vary` its pages need.
 */
class SessionResponse extends ServerResponse {
  override writeHead(code: number, ...rest: unknown[]): this {
    const at = typeof rest[0] === 'string' ? 1 : 0
    const req = this.req as IncomingMessage
    const user = req.headers['x-user']
    const given = (rest[at] ?? {}) as Record<string, unknown>
    rest[at] =
      user === undefined
        ? { ...given, vary: 'Accept-Language' }
        : { ...given, 'set-cookie': `sid=${user}; HttpOnly`, 'cache-control': 'private' }
    return (super.writeHead as (...a: unknown[]) => this)(code, ...rest)
  }
}

let served: Served | undefined
afterEach(async () => {
  await served?.close()
  served = undefined
})

describe('a ServerResponse subclass that hands super.writeHead a new header object, no header set before', () => {
  // `statusHeader: false`: nothing is set on the response before `writeHead`, so Node writes the
  // object it is handed directly, without keeping it among the response's headers.
  const cache = () => new HttpCache({ backend: new MemoryBackend(), ttl: 60, statusHeader: false })
  const page = (req: IncomingMessage, res: ServerResponse) => {
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.end(`page for ${req.headers['x-user'] ?? 'nobody'} in ${req.headers['accept-language'] ?? '?'}`)
  }

  it("never stores Alice's page, which left with her Set-Cookie and private", async () => {
    served = await serve(cache(), page, {
      serverOptions: { ServerResponse: SessionResponse as typeof ServerResponse },
    })
    const alice = await send(`${served.url}/cart`, {
      headers: { 'x-user': 'alice', 'accept-language': 'en' },
    })
    expect(alice.headers['set-cookie']).toEqual(['sid=alice; HttpOnly'])
    const anonymous = await send(`${served.url}/cart`, { headers: { 'accept-language': 'en' } })
    expect(anonymous.body.toString()).toBe('page for nobody in en')
    expect(served.calls()).toBe(2)
  })

  it('keys the entry on the Vary it added: the French page never reaches an English client', async () => {
    served = await serve(cache(), page, {
      serverOptions: { ServerResponse: SessionResponse as typeof ServerResponse },
    })
    const fr = await send(`${served.url}/home`, { headers: { 'accept-language': 'fr' } })
    expect(fr.headers.vary).toBe('Accept-Language')
    const en = await send(`${served.url}/home`, { headers: { 'accept-language': 'en' } })
    expect(en.body.toString()).toBe('page for nobody in en')
    const frAgain = await send(`${served.url}/home`, { headers: { 'accept-language': 'fr' } })
    expect(frAgain.body.toString()).toBe('page for nobody in fr')
    expect(served.calls()).toBe(2)
  })
})
