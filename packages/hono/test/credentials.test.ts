/**
 * On `@hono/node-server` the `Authorization` and `Cookie` rules are about what the client sent
 * (`c.env.incoming.rawHeaders`), whatever middleware before the cache did to the `Request`: an
 * auth layer that moves the credential into a variable and deletes it, a session layer that takes
 * `sid=` out of `Cookie`.
 */
import { request as httpRequest } from 'node:http'
import { memoryBackend } from '@cache/memory'
import { type Context, Hono, type Next } from 'hono'
import { describe, expect, it } from 'vitest'
import { type CacheResponseOptions, cacheResponse } from '../src/index.js'
import { listen as serve, listenHttp2 as serveHttp2 } from './serve.js'

type Env = { Variables: { user: string | undefined } }

/** `/me` answers the page of the `user` variable, behind `layer` and the cache. */
async function listen(
  options: CacheResponseOptions,
  layer: (c: Context<Env>) => void,
  vary?: string,
): Promise<string> {
  const app = new Hono<Env>()
  app.use('*', async (c: Context<Env>, next: Next) => {
    layer(c)
    await next()
  })
  app.get('/me', cacheResponse({ backend: memoryBackend(), ...options }), (c) => {
    if (vary !== undefined) c.header('vary', vary)
    return c.text(`page of ${c.get('user') ?? 'anonymous'}`)
  })
  return serve(app)
}

/** A GET with header lines as given (`[name, value, …]`, a name may repeat). */
function get(url: string, lines: string[] = []): Promise<{ text: string; status: string }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | string[]> = {}
    for (let i = 0; i < lines.length; i += 2) {
      const known = headers[lines[i]!]
      headers[lines[i]!] = known === undefined ? lines[i + 1]! : [known, lines[i + 1]!].flat()
    }
    httpRequest(`${url}/me`, { headers, agent: false, timeout: 5_000 }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () =>
        resolve({ text: Buffer.concat(chunks).toString(), status: String(res.headers['cache-status']) }),
      )
      res.on('error', reject)
    })
      .on('error', reject)
      .end()
  })
}

/** Moves Authorization or Cookie into the `user` variable and deletes it from the request. */
function moveInto(name: 'authorization' | 'cookie') {
  return (c: Context<Env>) => {
    const value = c.req.raw.headers.get(name)
    if (value === null) return
    c.set('user', value.split(/[= ;]/)[1])
    c.req.raw.headers.delete(name)
  }
}

describe.each([
  ['authorization', ['Authorization', 'Bearer alice'], { allowAuthorized: true }],
  ['cookie', ['Cookie', 'sid=alice'], { allowCookies: true }],
] as const)('%s the client sent, deleted by middleware before the cache', (name, alice, allow) => {
  it('bypasses: the user’s page is never replayed to anyone', async () => {
    const url = await listen({ ttl: 60 }, moveInto(name))
    const first = await get(url, [...alice])
    expect(first.text).toBe('page of alice')
    expect(first.status).toBe(`@cache; fwd=request; detail=${name}`)
    expect((await get(url)).text).toBe('page of anonymous')
  })

  it('bypasses when the middleware hands on a new Request without it', async () => {
    const url = await listen({ ttl: 60 }, (c) => {
      const value = c.req.raw.headers.get(name)
      if (value !== null) c.set('user', value.split(/[= ;]/)[1])
      const headers = new Headers(c.req.raw.headers)
      headers.delete(name)
      c.req.raw = new Request(c.req.raw.url, { headers })
    })
    expect((await get(url, [...alice])).status).toBe(`@cache; fwd=request; detail=${name}`)
    expect((await get(url)).text).toBe('page of anonymous')
  })

  it('bypasses when the middleware deletes its line from c.env.incoming.rawHeaders too', async () => {
    const url = await listen({ ttl: 60 }, (c) => {
      moveInto(name)(c)
      const lines = (c.env as { incoming: { rawHeaders: string[] } }).incoming.rawHeaders
      for (let i = lines.length - 2; i >= 0; i -= 2) if (lines[i]!.toLowerCase() === name) lines.splice(i, 2)
    })
    expect((await get(url, [...alice])).status).toBe(`@cache; fwd=request; detail=${name}`)
    // Before: Alice's page, a hit.
    expect((await get(url)).text).toBe('page of anonymous')
  })

  it('bypasses when it was sent on two lines', async () => {
    const url = await listen({ ttl: 60 }, moveInto(name))
    expect((await get(url, [...alice, alice[0], `${alice[1]}2`])).status).toBe(
      `@cache; fwd=request; detail=${name}`,
    )
    expect((await get(url)).text).toBe('page of anonymous')
  })

  it('with the allow option and a response Vary naming it, never makes the user’s page the variant without it', async () => {
    const url = await listen({ ttl: 60, ...allow }, moveInto(name), name)
    expect((await get(url, [...alice])).text).toBe('page of alice')
    expect((await get(url)).text).toBe('page of anonymous')
    const hit = await get(url, [...alice])
    expect(hit.text).toBe('page of alice')
    expect(hit.status).toMatch(/hit/)
  })
})

describe('allowCookies with vary: cookie', () => {
  /** A session layer: `sid=` out of the Cookie into `user`, the other cookies passed on. */
  const session = (c: Context<Env>) => {
    const parts = (c.req.raw.headers.get('cookie') ?? '').split(/;\s*/).filter(Boolean)
    const sid = parts.find((p) => p.startsWith('sid='))
    if (sid !== undefined) c.set('user', sid.slice(4))
    const rest = parts.filter((p) => !p.startsWith('sid=')).join('; ')
    if (rest === '') c.req.raw.headers.delete('cookie')
    else c.req.raw.headers.set('cookie', rest)
  }

  it('keys on the Cookie the client sent: Bob never gets Alice’s page, nor does a client sending what was left of hers', async () => {
    const url = await listen({ ttl: 60, allowCookies: true, vary: ['cookie'] }, session)
    expect((await get(url, ['Cookie', 'sid=alice; theme=dark'])).text).toBe('page of alice')
    expect((await get(url, ['Cookie', 'sid=bob; theme=dark'])).text).toBe('page of bob')
    expect((await get(url, ['Cookie', 'theme=dark'])).text).toBe('page of anonymous')
    const hit = await get(url, ['Cookie', 'sid=alice; theme=dark'])
    expect(hit.text).toBe('page of alice')
    expect(hit.status).toMatch(/hit/)
  })

  it('refreshes a stale entry keyed on the Cookie by the client’s own request: Bob keeps getting his own page', async () => {
    const app = new Hono<Env>()
    app.use('*', async (c: Context<Env>, next: Next) => {
      session(c)
      await next()
    })
    let runs = 0
    const options = { ttl: 0.2, staleWhileRevalidate: 10, allowCookies: true, vary: ['cookie'] }
    app.get('/me', cacheResponse({ backend: memoryBackend(), ...options }), (c) =>
      c.text(`page of ${c.get('user') ?? 'anonymous'} #${++runs}`),
    )
    const url = await serve(app)
    const bob = ['Cookie', 'sid=bob; theme=dark']
    expect((await get(url, bob)).text).toBe('page of bob #1')
    await new Promise((resolve) => setTimeout(resolve, 300))
    // Stale, keyed on a credential: refreshed by Bob's own request.
    expect((await get(url, bob)).text).toBe('page of bob #2')
    expect((await get(url, bob)).text).toBe('page of bob #2')
  })
})

describe.each([
  ['authorization', { authorization: 'Bearer alice' }, { allowAuthorized: true }],
  ['cookie', { cookie: 'sid=alice' }, { allowCookies: true }],
] as const)(
  'over HTTP/2: %s read from c.env.incoming.headers, then deleted from every view of the request',
  (name, alice, allow) => {
    /**
     * An auth layer that keeps the credential out of logs: it reads it from Node's request, then
     * deletes it from `headers`, `rawHeaders` and the `Request`.
     */
    const strip = (c: Context<Env>) => {
      const incoming = (c.env as { incoming: { headers: Record<string, string>; rawHeaders: string[] } })
        .incoming
      const value = incoming.headers[name]
      if (value !== undefined) c.set('user', value.split(/[= ;]/)[1])
      delete incoming.headers[name]
      const lines = incoming.rawHeaders
      for (let i = lines.length - 2; i >= 0; i -= 2) if (lines[i]!.toLowerCase() === name) lines.splice(i, 2)
      c.req.raw.headers.delete(name)
    }

    /** `/me` behind `strip` and the cache on an HTTP/2 server; `get` sends `headers` on one session. */
    async function listenHttp2(options: CacheResponseOptions, vary?: string, errors: string[] = []) {
      const cache = cacheResponse({ backend: memoryBackend(), ...options })
      cache.on('error', (event) => errors.push(String(event.error)))
      const app = new Hono<Env>()
      app.use('*', async (c: Context<Env>, next: Next) => {
        strip(c)
        await next()
      })
      app.get('/me', cache, (c) => {
        if (vary !== undefined) c.header('vary', vary)
        return c.text(`page of ${c.get('user') ?? 'anonymous'}`)
      })
      const get = await serveHttp2(app)
      return (headers: Record<string, string> = {}) => get('/me', headers)
    }

    it('bypasses: the user’s page is never replayed to an anonymous HTTP/2 client', async () => {
      const get = await listenHttp2({ ttl: 60 })
      const first = await get(alice)
      expect(first.text).toBe('page of alice')
      expect(first.status).toBe(`@cache; fwd=request; detail=${name}`)
      // Before: Alice's page, a hit.
      expect((await get()).text).toBe('page of anonymous')
    })

    it('with the allow option and a response Vary naming it, never makes the user’s page the variant without it', async () => {
      const get = await listenHttp2({ ttl: 60, ...allow }, name)
      expect((await get(alice)).text).toBe('page of alice')
      // Before: Alice's page, a hit (her entry was keyed as sent without the credential).
      expect((await get()).text).toBe('page of anonymous')
      const hit = await get(alice)
      expect(hit.text).toBe('page of alice')
      expect(hit.status).toMatch(/hit/)
    })

    it("a stale entry of the user is refreshed by the user's own request, never by a copy of the stripped one: the entry stays the user's page", async () => {
      let now = Date.now()
      const errors: string[] = []
      const get = await listenHttp2(
        { ttl: 1, staleWhileRevalidate: 60, now: () => now, ...allow, vary: [name] },
        name,
        errors,
      )
      expect((await get(alice)).text).toBe('page of alice')
      now += 2000
      // Over HTTP/2 a background copy would reuse the request the layer stripped: the request
      // itself refreshes the entry, as a miss.
      const stale = await get(alice)
      expect(stale.text).toBe('page of alice')
      expect(stale.status).toBe('@cache; fwd=stale; stored; detail=refresh-in-request')
      await new Promise((resolve) => setTimeout(resolve, 100))
      // Before the refresh moved into the request: a background copy ran on the stripped request.
      const hit = await get(alice)
      expect(hit.text).toBe('page of alice')
      expect(hit.status).toMatch(/hit/)
      expect(errors).toEqual([])
    })
  },
)
