import { memoryBackend } from '@cache/memory'
import Fastify, {
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type preHandlerHookHandler,
  type RouteOptions,
} from 'fastify'
import fp from 'fastify-plugin'
import { afterEach, describe, expect, it } from 'vitest'
import { cachePlugin } from '../src/index.js'
import { get } from './http-get.js'

const apps: FastifyInstance[] = []
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()))
})

async function listen(app: FastifyInstance): Promise<string> {
  apps.push(app)
  return app.listen({ port: 0, host: '127.0.0.1' })
}

declare module 'fastify' {
  interface FastifyContextConfig {
    roles?: string[]
  }
}

const roleCheck =
  (roles: string[]) =>
  async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    if (!roles.includes(String(request.headers['x-role']))) await reply.code(403).send('forbidden')
  }

/** The ways a plugin's `onRoute` hook adds a guard to a route's `preHandler`. */
const addGuard: Record<string, (route: RouteOptions, guard: preHandlerHookHandler) => void> = {
  'assigns a new list': (route, guard) => {
    const before = route.preHandler === undefined ? [] : [route.preHandler].flat()
    route.preHandler = [...before, guard]
  },
  'pushes onto the list it reads': (route, guard) => {
    if (route.preHandler === undefined) route.preHandler = []
    else if (!Array.isArray(route.preHandler)) route.preHandler = [route.preHandler]
    ;(route.preHandler as preHandlerHookHandler[]).push(guard)
  },
  'replaces it with its own function': (route, guard) => {
    route.preHandler = guard
  },
}

describe('a guard that another plugin adds to a route from onRoute', () => {
  for (const [spelling, add] of Object.entries(addGuard))
    for (const order of ['after', 'before'] as const)
      it(`runs before every hit when the plugin ${spelling}, registered ${order} the cache`, async () => {
        const roleGuard = fp(async (app: FastifyInstance) => {
          app.addHook('onRoute', (route) => {
            const roles = route.config?.roles
            if (roles) add(route, roleCheck(roles) as preHandlerHookHandler)
          })
        })
        const app = Fastify()
        if (order === 'before') await app.register(roleGuard)
        await app.register(cachePlugin, { backend: memoryBackend(), ttl: 60 })
        if (order === 'after') await app.register(roleGuard)
        app.get('/admin/report', { config: { cache: true, roles: ['admin'] } }, async () => 'SECRET report')
        const url = `${await listen(app)}/admin/report`
        expect((await get(url)).status).toBe(403)
        expect((await get(url, { 'x-role': 'admin' })).body).toBe('SECRET report')
        const again = await get(url, { 'x-role': 'admin' })
        expect(again.cacheStatus).toMatch(/hit/)
        for (const headers of [{ 'x-role': 'guest' }, {}] as Record<string, string>[]) {
          const other = await get(url, headers)
          expect(other.status).toBe(403)
          expect(other.body).not.toContain('SECRET')
        }
      })
})

describe('under trustProxy, the Host header a handler reads', () => {
  async function linkApp(): Promise<string> {
    const app = Fastify({ trustProxy: true })
    await app.register(cachePlugin, { backend: memoryBackend(), ttl: 60 })
    // Links built from the raw Host header, as many apps do, not from the forwarded host.
    app.get(
      '/reset-password',
      { config: { cache: true } },
      async (request) => `${request.protocol}://${request.headers.host}/reset-password/submit`,
    )
    return `${await listen(app)}/reset-password`
  }

  it.each([
    ['one forwarded host', 'shop.test'],
    ['a list of forwarded hosts (Fastify takes the last)', 'other.test, shop.test'],
  ])(
    'is part of the key when it differs from %s: a forged Host never plants its links',
    async (_, forwarded) => {
      const url = await linkApp()
      const proto = { 'x-forwarded-proto': 'https' }
      const attack = await get(url, { host: 'evil.test', 'x-forwarded-host': forwarded, ...proto })
      expect(attack.body).toBe('https://evil.test/reset-password/submit')
      for (const host of ['internal-lb', 'shop.test']) {
        const client = await get(url, { host, 'x-forwarded-host': 'shop.test', ...proto })
        expect(client.body).toBe(`https://${host}/reset-password/submit`)
      }
      const direct = await get(url, { host: 'shop.test', ...proto })
      expect(direct.body).toBe('https://shop.test/reset-password/submit')
      // Each Host keeps its own entry, and the entries are still shared by its clients.
      expect(
        (await get(url, { host: 'internal-lb', 'x-forwarded-host': 'shop.test', ...proto })).cacheStatus,
      ).toMatch(/hit/)
    },
  )

  it('keys apart are all reached by invalidating the URL of the forwarded host', async () => {
    const app = Fastify({ trustProxy: true })
    await app.register(cachePlugin, { backend: memoryBackend(), ttl: 60 })
    let version = 1
    app.get('/page', { config: { cache: true } }, async (request) => `${request.headers.host} v${version}`)
    const url = `${await listen(app)}/page`
    const viaLb = { host: 'internal-lb', 'x-forwarded-host': 'shop.test' }
    expect((await get(url, viaLb)).body).toBe('internal-lb v1')
    expect((await get(url, { host: 'shop.test' })).body).toBe('shop.test v1')
    version = 2
    await app.cache.invalidate('/page', { host: 'shop.test' })
    expect((await get(url, viaLb)).body).toBe('internal-lb v2')
    expect((await get(url, { host: 'shop.test' })).body).toBe('shop.test v2')
  })
})

describe('a response an error handler made', () => {
  const failures: Record<string, (app: FastifyInstance, fail: () => void) => void> = {
    'the handler throws': (app, fail) =>
      app.get('/prices', { config: { cache: true } }, async () => {
        fail()
        return 'price 10'
      }),
    'the handler sends an Error': (app, fail) =>
      app.get('/prices', { config: { cache: true } }, (_request, reply) => {
        try {
          fail()
          reply.send('price 10')
        } catch (error) {
          reply.send(error)
        }
      }),
    'an onSend hook of the route throws': (app, fail) =>
      app.get(
        '/prices',
        {
          config: { cache: true },
          onSend: async (_request, _reply, payload) => {
            fail()
            return payload
          },
        },
        async () => 'price 10',
      ),
    'a preSerialization hook throws': (app, fail) =>
      app.get(
        '/prices',
        {
          config: { cache: true },
          preSerialization: async (_request, _reply, payload) => {
            fail()
            return payload
          },
        },
        async () => ({ price: 10 }),
      ),
  }

  for (const [where, declare] of Object.entries(failures))
    for (const handler of ['setErrorHandler', 'the route errorHandler option'] as const)
      it(`is never stored, even a 200, when ${where} (${handler})`, async () => {
        const app = Fastify()
        await app.register(cachePlugin, { backend: memoryBackend(), ttl: 60 })
        const degraded = (_error: unknown, _request: FastifyRequest, reply: FastifyReply) => {
          reply.code(200).send('degraded')
        }
        if (handler === 'setErrorHandler') app.setErrorHandler(degraded)
        else app.addHook('onRoute', (route) => void (route.errorHandler = degraded))
        let calls = 0
        declare(app, () => {
          if (calls++ === 0) throw new Error('database timeout, once')
        })
        const url = `${await listen(app)}/prices`
        const first = await get(url)
        expect([first.status, first.body]).toEqual([200, 'degraded'])
        expect(first.cacheStatus).toMatch(/detail=handler-error/)
        const second = await get(url)
        expect(second.body).not.toBe('degraded')
        expect(second.body).toMatch(/10/)
        expect((await get(url)).cacheStatus).toMatch(/hit/)
      })
})

describe('app.cache.invalidate(url)', () => {
  it.each([
    ['the plugin options', { vary: ['accept-language'] }, true],
    ["the route's config.cache", {}, { vary: ['accept-language'] }],
  ])('reaches every variant of the vary option given in %s', async (_, pluginOptions, routeCache) => {
    const app = Fastify()
    await app.register(cachePlugin, { backend: memoryBackend(), ttl: 60, ...pluginOptions })
    let version = 1
    app.get(
      '/greeting',
      { config: { cache: routeCache } },
      async (request) => `${request.headers['accept-language'] ?? 'none'} v${version}`,
    )
    const url = `${await listen(app)}/greeting`
    const host = new URL(url).host
    const languages = [{ 'accept-language': 'fr' }, { 'accept-language': 'de' }, {}] as Record<
      string,
      string
    >[]
    for (const headers of languages) {
      await get(url, headers)
      expect((await get(url, headers)).cacheStatus).toMatch(/hit/)
    }
    version = 2
    await app.cache.invalidate('/greeting', { host })
    for (const headers of languages) expect((await get(url, headers)).body).toMatch(/ v2$/)
    version = 3
    await app.cache.invalidate('/greeting', { host, headers: { 'accept-language': 'en' } })
    for (const headers of languages) expect((await get(url, headers)).body).toMatch(/ v3$/)
  })
})

describe("an app's own querystringParser", () => {
  /** `ids=1,2` and `ids=1&ids=2` read as the same list, as qs's `comma: true` does. */
  const commaLists = (query: string) => {
    const parsed: Record<string, string | string[]> = {}
    for (const [name, value] of new URLSearchParams(query)) {
      const values = value.includes(',') ? value.split(',') : [value]
      const before = parsed[name]
      const all = before === undefined ? values : [...[before].flat(), ...values]
      parsed[name] = all.length === 1 ? all[0]! : all
    }
    return parsed
  }

  it.each([
    ['routerOptions.querystringParser', { routerOptions: { querystringParser: commaLists } }],
    ['the top-level querystringParser', { querystringParser: commaLists }],
  ])(
    '(%s): two spellings it reads as one query are never served apart after an invalidation',
    async (_, options) => {
      const app = Fastify(options)
      await app.register(cachePlugin, { backend: memoryBackend(), ttl: 60 })
      let version = 1
      app.get('/products', { config: { cache: true } }, async (request) => ({
        version,
        query: request.query,
      }))
      const base = await listen(app)
      const host = new URL(base).host
      const [one, other] = [`${base}/products?ids=1,2`, `${base}/products?ids=1&ids=2`]
      for (const url of [one, other, one, other]) expect(JSON.parse((await get(url)).body).version).toBe(1)
      version = 2
      await app.cache.invalidate('/products?ids=1&ids=2', { host })
      for (const url of [one, other]) expect(JSON.parse((await get(url)).body).version).toBe(2)
      version = 3
      await app.cache.invalidate('/products?ids=1,2', { host })
      for (const url of [one, other]) expect(JSON.parse((await get(url)).body).version).toBe(3)
      expect((await get(one)).cacheStatus).toMatch(/detail=querystring-parser/)
    },
  )

  it('leaves requests without a query cached, and a route with its own key cached', async () => {
    const app = Fastify({ routerOptions: { querystringParser: commaLists } })
    await app.register(cachePlugin, { backend: memoryBackend(), ttl: 60 })
    let runs = 0
    app.get('/plain', { config: { cache: true } }, async () => `run ${++runs}`)
    app.get(
      '/keyed',
      { config: { cache: { key: (request) => `keyed ${JSON.stringify(request.query)}` } } },
      async () => `run ${++runs}`,
    )
    const base = await listen(app)
    await get(`${base}/plain`)
    expect((await get(`${base}/plain`)).cacheStatus).toMatch(/hit/)
    await get(`${base}/keyed?ids=1,2`)
    expect((await get(`${base}/keyed?ids=1&ids=2`)).cacheStatus).toMatch(/hit/)
  })

  it('the default parser keeps query URLs cached', async () => {
    const app = Fastify()
    await app.register(cachePlugin, { backend: memoryBackend(), ttl: 60 })
    app.get('/products', { config: { cache: true } }, async (request) => request.query)
    const url = `${await listen(app)}/products?ids=1&ids=2`
    await get(url)
    expect((await get(url)).cacheStatus).toMatch(/hit/)
  })
})

describe('a plugin that replaces request.query in a hook (fastify-qs)', () => {
  /** As fastify-qs with `comma: true`: `??` trimmed, `ids=1,2` and `ids=1&ids=2` one list. */
  const qsLike = fp((fastify: FastifyInstance, _options: object, done: () => void) => {
    fastify.addHook('onRequest', (request, _reply, hookDone) => {
      const url = (request.raw.url ?? '/').replace(/\?{2,}/, '?')
      const at = url.indexOf('?')
      const parsed: Record<string, string[]> = {}
      for (const [name, value] of new URLSearchParams(at === -1 ? '' : url.slice(at + 1)))
        (parsed[name] ??= []).push(...value.split(','))
      request.query = parsed
      hookDone()
    })
    done()
  })

  it('three spellings it reads as one query are never served apart after an invalidation', async () => {
    const app = Fastify()
    await app.register(qsLike)
    await app.register(cachePlugin, { backend: memoryBackend(), ttl: 60 })
    let price = 10
    app.get('/prices', { config: { cache: true } }, async (request) => ({
      ids: (request.query as { ids?: string[] }).ids,
      price,
    }))
    const base = await listen(app)
    const host = new URL(base).host
    const spellings = ['/prices?ids=1,2', '/prices?ids=1&ids=2', '/prices??ids=1,2']
    for (const path of spellings) await get(`${base}${path}`)
    price = 99
    await app.cache.invalidate('/prices?ids=1,2', { host })
    const answers = []
    for (const path of spellings) answers.push(await get(`${base}${path}`))
    expect(answers.map((answer) => JSON.parse(answer.body).price)).toEqual([99, 99, 99])
    for (const answer of answers) expect(answer.cacheStatus).toMatch(/detail=querystring-parser/)
    // Without a query there is nothing the plugin could read otherwise.
    await get(`${base}/prices`)
    expect((await get(`${base}/prices`)).cacheStatus).toMatch(/hit/)
  })

  it('a hook that changes request.query in place: two spellings are never served apart after an invalidation', async () => {
    const app = Fastify()
    // Comma lists written into the object Fastify's parser made: `?ids=1,2` is `?ids=1&ids=2`.
    app.addHook('onRequest', async (request) => {
      const query = request.query as Record<string, unknown>
      if (typeof query.ids === 'string' && query.ids.includes(',')) query.ids = query.ids.split(',')
    })
    await app.register(cachePlugin, { backend: memoryBackend(), ttl: 60 })
    let price = 10
    app.get('/prices', { config: { cache: true } }, async (request) => ({
      ids: (request.query as { ids?: string[] }).ids,
      price,
    }))
    const base = await listen(app)
    const host = new URL(base).host
    const spellings = ['/prices?ids=1,2', '/prices?ids=1&ids=2']
    for (const path of spellings) await get(`${base}${path}`)
    price = 99
    await app.cache.invalidate('/prices?ids=1&ids=2', { host })
    const answers = []
    for (const path of spellings) answers.push(await get(`${base}${path}`))
    expect(answers.map((answer) => JSON.parse(answer.body).price)).toEqual([99, 99])
    expect(answers[0]!.cacheStatus).toMatch(/detail=querystring-parser/)
    // A query the hook leaves as Fastify's parser made it is cached.
    await get(`${base}/prices?ids=3`)
    expect((await get(`${base}/prices?ids=3`)).cacheStatus).toMatch(/hit/)
  })

  it('a route schema that coerces or a validator that returns new values does not count as one', async () => {
    const app = Fastify()
    await app.register(cachePlugin, { backend: memoryBackend(), ttl: 60 })
    const schema = { querystring: { type: 'object', properties: { page: { type: 'integer' } } } }
    app.get('/ajv', { schema, config: { cache: true } }, async (request) => request.query)
    app.get(
      '/returns-values',
      {
        schema,
        // A type provider's validator (zod's `safeParse`) hands Fastify a new object.
        validatorCompiler: () => (data: unknown) => ({ value: { ...(data as object), checked: true } }),
        config: { cache: true },
      },
      async (request) => request.query,
    )
    const base = await listen(app)
    for (const path of ['/ajv?page=2', '/returns-values?page=2']) {
      await get(`${base}${path}`)
      expect((await get(`${base}${path}`)).cacheStatus).toMatch(/hit/)
    }
  })
})

/** A query of the app's own: `lang` a getter of its class, over a private field. */
class QueryWithDefault {
  readonly #lang: string
  constructor(
    readonly parsed: Record<string, unknown>,
    lang: string,
  ) {
    this.#lang = lang
  }
  get lang(): string {
    return (this.parsed.lang as string | undefined) ?? this.#lang
  }
}

describe('a hook that fills in a query default on a request without a query string', () => {
  /**
   * `lang` from Accept-Language when the query names none: in the object Fastify made (also as a
   * property that `Object.keys` does not list), or in a new one.
   */
  const LANG = Symbol.for('app.lang')
  const defaultLang =
    (mode: 'in place' | 'defined' | 'replaced' | 'symbol' | 'class' | 'proxy' | 'prototype') =>
    async (request: FastifyRequest): Promise<void> => {
      if (!/fr/.test(request.headers['accept-language'] ?? '')) return
      const query = request.query as Record<string, unknown>
      if (mode === 'in place') query.lang ??= 'fr'
      else if (mode === 'defined') Object.defineProperty(query, 'lang', { value: 'fr' })
      else if (mode === 'symbol') (query as Record<symbol, unknown>)[LANG] ??= 'fr'
      else if (mode === 'class') request.query = new QueryWithDefault(query, 'fr')
      else if (mode === 'proxy')
        request.query = new Proxy(query, {
          get: (target, name) => (name === 'lang' ? (target.lang ?? 'fr') : target[name as string]),
        })
      else if (mode === 'prototype') Object.setPrototypeOf(query, { lang: 'fr' })
      else request.query = { ...query, lang: 'fr' }
    }

  for (const hook of ['onRequest', 'preValidation'] as const)
    for (const mode of ['in place', 'defined', 'replaced', 'symbol', 'class', 'proxy', 'prototype'] as const)
      it(`(${hook}, ${mode}): the page it renders is never stored under the bare URL`, async () => {
        const app = Fastify()
        await app.register(cachePlugin, { backend: memoryBackend(), ttl: 60 })
        app.addHook(hook, defaultLang(mode))
        app.get('/p', { config: { cache: true } }, async (request) => {
          const query = request.query as { lang?: string; [LANG]?: string }
          return (query.lang ?? query[LANG]) === 'fr' ? 'FRENCH' : 'ENGLISH'
        })
        const base = await listen(app)
        for (const path of ['/p', '/p?page=1']) {
          const french = await get(`${base}${path}`, { 'accept-language': 'fr' })
          expect(french.body).toBe('FRENCH')
          expect(french.cacheStatus).toMatch(/detail=querystring-parser/)
          expect((await get(`${base}${path}`)).body).toBe('ENGLISH')
        }
        const plain = await get(`${base}/p`)
        expect(plain.body).toBe('ENGLISH')
        // The requests the hook leaves alone are cached.
        expect((await get(`${base}/p`)).cacheStatus).toMatch(/hit/)
        expect((await get(`${base}/p`, { 'accept-language': 'fr' })).body).toBe('FRENCH')
      })

  it('a route schema whose defaults fill the query, after preValidation, does not count', async () => {
    const app = Fastify()
    await app.register(cachePlugin, { backend: memoryBackend(), ttl: 60 })
    const schema = {
      querystring: { type: 'object', properties: { page: { type: 'integer', default: 1 } } },
    }
    app.get('/list', { schema, config: { cache: true } }, async (request) => request.query)
    const base = await listen(app)
    expect((await get(`${base}/list`)).body).toBe('{"page":1}')
    expect((await get(`${base}/list`)).cacheStatus).toMatch(/hit/)
  })
})
