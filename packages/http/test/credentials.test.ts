/**
 * The `Authorization` and `Cookie` rules are about what the client sent (the view's `rawHeaders`),
 * not what a layer before the cache left in the headers: one rule in the engine, for every adapter.
 */
import type { IncomingMessage } from 'node:http'
import { CacheConfigError } from '@cache/core'
import { MemoryBackend } from '@cache/memory'
import { afterEach, describe, expect, it } from 'vitest'
import { HttpCache, type HttpCacheOptions, nodeRequestView } from '../src/index.js'
import { type Handler, type Served, send, serve } from './node-adapter.js'

const running: Served[] = []
afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.close()))
})

type WithUser = IncomingMessage & { user?: string }

/** The page of `req.user`, behind `before` and a cache with `options`. */
async function start(options: HttpCacheOptions, before: (req: WithUser) => void, vary?: string) {
  const cache = new HttpCache({ backend: new MemoryBackend(), ttl: 60, ...options })
  const handler: Handler = (req, res) => {
    if (vary !== undefined) res.setHeader('vary', vary)
    res.end(`page of ${(req as WithUser).user ?? 'anonymous'}`)
  }
  const served = await serve(cache, handler, { before })
  running.push(served)
  const get = async (headers: Record<string, string> = {}) => {
    const reply = await send(`${served.url}/me`, { headers })
    return { text: reply.body.toString(), status: String(reply.headers['cache-status']) }
  }
  return { cache, get }
}

/** Moves the credential into `req.user` and deletes the header. */
const consume = (req: WithUser) => {
  const value = req.headers.authorization ?? req.headers.cookie
  if (value !== undefined) req.user = String(value).split(/[= ]/)[1]
  delete req.headers.authorization
  delete req.headers.cookie
}

/** Takes `sid=` out of the Cookie into `req.user`, passing the other cookies on. */
const session = (req: WithUser) => {
  const parts = String(req.headers.cookie ?? '')
    .split(/;\s*/)
    .filter(Boolean)
  const sid = parts.find((p) => p.startsWith('sid='))
  if (sid !== undefined) req.user = sid.slice(4)
  const rest = parts.filter((p) => !p.startsWith('sid=')).join('; ')
  if (rest === '') delete req.headers.cookie
  else req.headers.cookie = rest
}

describe('credentials as the client sent them', () => {
  it.each([
    ['authorization', { authorization: 'Bearer alice' }],
    ['cookie', { cookie: 'sid=alice' }],
  ])('bypasses a request whose %s a layer before the cache deleted', async (name, alice) => {
    const app = await start({}, consume)
    const first = await app.get(alice)
    expect(first.text).toBe('page of alice')
    expect(first.status).toBe(`@cache; fwd=request; detail=${name}`)
    expect((await app.get()).text).toBe('page of anonymous')
  })

  it('keys vary: cookie on the Cookie sent and on the one the app sees', async () => {
    const app = await start({ allowCookies: true, vary: ['cookie'] }, session)
    expect((await app.get({ cookie: 'sid=alice; theme=dark' })).text).toBe('page of alice')
    expect((await app.get({ cookie: 'sid=bob; theme=dark' })).text).toBe('page of bob')
    expect((await app.get({ cookie: 'theme=dark' })).text).toBe('page of anonymous')
    expect((await app.get()).text).toBe('page of anonymous')
    const hit = await app.get({ cookie: 'sid=alice; theme=dark' })
    expect(hit.text).toBe('page of alice')
    expect(hit.status).toMatch(/hit/)
  })

  it.each([
    ['authorization', { authorization: 'Bearer alice' }],
    ['cookie', { cookie: 'sid=alice' }],
  ])(
    'bypasses a request whose %s a layer deleted from rawHeaders too, on a server noting arrivals',
    async (name, alice) => {
      const app = await start({}, (req) => {
        consume(req)
        for (let i = req.rawHeaders.length - 2; i >= 0; i -= 2)
          if (req.rawHeaders[i]!.toLowerCase() === name) req.rawHeaders.splice(i, 2)
      })
      expect((await app.get(alice)).status).toBe(`@cache; fwd=request; detail=${name}`)
      expect((await app.get(alice)).status).toBe(`@cache; fwd=request; detail=${name}`)
      expect((await app.get()).text).toBe('page of anonymous')
    },
  )

  it('bypasses a request with a Cookie line a layer added to rawHeaders alone', async () => {
    const app = await start({}, (req) => {
      if (req.headers['x-remember'] !== undefined) {
        req.rawHeaders.push('Cookie', 'sid=alice')
        req.user = 'alice'
      }
    })
    expect((await app.get({ 'x-remember': '1' })).status).toBe('@cache; fwd=request; detail=cookie')
    expect((await app.get({ 'x-remember': '1' })).text).toBe('page of alice')
    expect((await app.get()).text).toBe('page of anonymous')
  })

  it('keys a response’s Vary: Authorization on the token sent, when a layer deleted it', async () => {
    const app = await start({ allowAuthorized: true }, consume, 'Authorization')
    expect((await app.get({ authorization: 'Bearer alice' })).text).toBe('page of alice')
    expect((await app.get()).text).toBe('page of anonymous')
    expect((await app.get({ authorization: 'Bearer bob' })).text).toBe('page of bob')
    expect((await app.get({ authorization: 'Bearer alice' })).status).toMatch(/hit/)
  })

  it('keys a credential a layer added (none sent) apart from requests without one', async () => {
    const app = await start({ allowAuthorized: true, vary: ['authorization'] }, (req) => {
      if (req.headers['x-service'] !== undefined) {
        req.headers.authorization = 'Bearer service'
        req.user = 'service'
      }
    })
    expect((await app.get({ 'x-service': '1' })).text).toBe('page of service')
    expect((await app.get()).text).toBe('page of anonymous')
  })

  it('keyFor: no key for a request whose credential bypasses, sent or consumed', () => {
    const cache = new HttpCache({ backend: new MemoryBackend() })
    const view = (headers: Record<string, string>, rawHeaders: string[]) =>
      ({
        ...nodeRequestView({ method: 'GET', url: '/me', headers, rawHeaders, socket: null } as never),
        host: 'shop.test',
      }) as ReturnType<typeof nodeRequestView>
    expect(cache.keyFor(view({ host: 'shop.test' }, ['Host', 'shop.test']))).toBeDefined()
    expect(cache.keyFor(view({ host: 'shop.test', cookie: 'a=1' }, ['Cookie', 'a=1']))).toBeUndefined()
    expect(cache.keyFor(view({ host: 'shop.test' }, ['COOKIE', 'a=1']))).toBeUndefined()
  })
})

describe('the vary option names request headers', () => {
  it('reads a list written as a Vary header, and names in any case or with spaces around them, as the headers', async () => {
    for (const vary of [
      ['accept-language, cookie'],
      ' Accept-Language , COOKIE '.split(','),
      ['cookie ', 'accept-language\t'],
    ]) {
      const { get } = await start({ allowCookies: true, vary }, (req) => {
        const value = req.headers.cookie
        if (value !== undefined) req.user = String(value).split('=')[1]
      })
      expect((await get({ cookie: 'sid=bob' })).text, JSON.stringify(vary)).toBe('page of bob')
      expect((await get()).text, JSON.stringify(vary)).toBe('page of anonymous')
      expect((await get({ cookie: 'sid=carol' })).text, JSON.stringify(vary)).toBe('page of carol')
    }
  })

  it('refuses at start-up what is not a header name', () => {
    for (const vary of [[''], ['co okie'], ['cookie;'], ['*'], ['a,,b'], 'cookie' as never, [42 as never]])
      expect(() => new HttpCache({ backend: new MemoryBackend(), vary }), JSON.stringify(vary)).toThrow(
        CacheConfigError,
      )
  })
})
