/**
 * Plugin-level options may carry settings meant for other plugins: `@fastify/autoload` (the
 * fastify-cli template's `plugins/` directory) hands its shared `options` to every plugin it
 * loads. A name that is not an option is then reported once (through `fastify.log`, or the cache's
 * logger when Fastify logs nothing) and ignored; a name close to an option, or one holding the
 * word of an option whose loss serves the wrong response (`varyHeaders`), is still refused. A
 * route's `config.cache` stays strict.
 */
import { fileURLToPath } from 'node:url'
import { setCacheLogger } from '@cache/core'
import { memoryBackend } from '@cache/memory'
import { configErrorOfAsync } from '@cache/testing'
import AutoLoad from '@fastify/autoload'
import type { AddressInfo } from 'node:net'
import Fastify, { type FastifyInstance, type FastifyRequest, type FastifyServerOptions } from 'fastify'
import { afterEach, describe, expect, it } from 'vitest'
import { type CachePluginOptions, cachePlugin } from '../src/index.js'
import { get } from './http-get.js'

const FIXTURE = (dir: string) => fileURLToPath(new URL(`./fixtures/autoload/${dir}`, import.meta.url))

const apps: FastifyInstance[] = []
afterEach(async () => {
  setCacheLogger(undefined)
  await Promise.all(apps.splice(0).map((app) => app.close()))
})

/** An app whose log lines at `warn` and above are kept in `lines`. */
function loggingApp(): { fastify: FastifyInstance; lines: { level: number; msg: string }[] } {
  const lines: { level: number; msg: string }[] = []
  const logger: FastifyServerOptions['logger'] = {
    level: 'warn',
    stream: { write: (line: string) => void lines.push(JSON.parse(line)) },
  }
  const fastify = Fastify({ logger })
  apps.push(fastify)
  return { fastify, lines }
}

describe('plugin options meant for other plugins', () => {
  it('starts an app whose plugins/ directory exports cachePlugin, with autoload shared options, and caches', async () => {
    const { fastify, lines } = loggingApp()
    const shared = { appName: 'shop', visits: { count: 0 } }
    await fastify.register(AutoLoad, { dir: FIXTURE('plugins'), options: shared })
    await fastify.register(AutoLoad, { dir: FIXTURE('routes'), options: shared })
    await fastify.ready()
    expect(JSON.parse((await fastify.inject('/')).body)).toEqual({ visit: 1 })
    const second = await fastify.inject('/')
    expect(JSON.parse(second.body)).toEqual({ visit: 1 })
    expect(second.headers['cache-status']).toMatch(/hit/)
    const warnings = lines.filter((line) => line.level === 40).map((line) => line.msg)
    expect(warnings).toEqual([
      expect.stringMatching(/^appName: not an option of cachePlugin, ignored/),
      expect.stringMatching(/^visits: not an option of cachePlugin, ignored/),
    ])
  })

  it('reports a name once, however many times the plugin is registered with it', async () => {
    const { fastify, lines } = loggingApp()
    await fastify.register(cachePlugin, { backend: memoryBackend(), tenantDomain: 'x' } as CachePluginOptions)
    await fastify.register(async (scope) => {
      await scope.register(cachePlugin, {
        backend: memoryBackend(),
        decorateAs: 'pageCache',
        tenantDomain: 'x',
      } as CachePluginOptions)
    })
    await fastify.ready()
    expect(lines.filter((line) => line.msg.startsWith('tenantDomain:'))).toHaveLength(1)
  })

  it("reports through the cache's logger when the app has no logger: never silent", async () => {
    const warned: string[] = []
    setCacheLogger({ warn: (message) => warned.push(message), error: () => {} })
    const fastify = Fastify()
    apps.push(fastify)
    await fastify.register(cachePlugin, { backend: memoryBackend(), dbPool: 4 } as CachePluginOptions)
    await fastify.ready()
    expect(warned).toEqual([expect.stringMatching(/dbPool: not an option of cachePlugin, ignored/)])
  })

  it('still refuses a name close to an option (a typo), with the fix', async () => {
    const { fastify } = loggingApp()
    const error = await configErrorOfAsync(() =>
      fastify.register(cachePlugin, { backend: memoryBackend(), varyy: ['x-tenant'] } as CachePluginOptions),
    )
    expect(error.message).toBe('varyy: not an option of cachePlugin; did you mean `vary`?')
  })

  it('still refuses a name holding the word of a safety option (varyHeaders, bypassIf, cacheKeyPrefix)', async () => {
    for (const [name, option] of [
      ['varyHeaders', 'vary'],
      ['bypassIf', 'bypass'],
      ['cacheKeyPrefix', 'keyPrefix'],
    ] as const) {
      const fastify = Fastify()
      apps.push(fastify)
      const error = await configErrorOfAsync(() =>
        fastify.register(cachePlugin, {
          backend: memoryBackend(),
          [name]: ['x-tenant'],
        } as CachePluginOptions),
      )
      expect(error.setting).toBe(name)
      expect(error.message).toBe(`${name}: not an option of cachePlugin; did you mean \`${option}\`?`)
    }
  })

  it("keeps a route's config.cache strict: any name that is not an option is refused", async () => {
    const fastify = Fastify()
    apps.push(fastify)
    await fastify.register(cachePlugin, { backend: memoryBackend() })
    const error = await configErrorOfAsync(async () => {
      fastify.get('/x', { config: { cache: { ttl: 60, appName: 'shop' } as never } }, async () => 'x')
      await fastify.ready()
    })
    expect(error.message).toBe('appName: not an option of config.cache of route /x')
  })
})

/**
 * Names a user writes for a per-user or per-variant cache key, which the plugin does not have
 * (other caches and key libraries do): ignored with a warning, the route's cache would key every
 * user's response on the URL alone. Refused instead, naming the option that does what was meant.
 */
describe('plugin option names meant as a per-user or per-variant key', () => {
  const byUser = (request: FastifyRequest) => String(request.headers['x-user'])
  const misplaced: [name: string, value: unknown, meant: string][] = [
    ['varies', ['x-user'], 'vary'],
    ['cacheKey', byUser, 'key'],
    ['keyFn', byUser, 'key'],
    ['keyGenerator', byUser, 'key'],
    ['keyHeaders', ['x-user'], 'vary'],
    ['headers', ['x-user'], 'vary'],
    ['privateHeaders', ['x-user'], 'vary'],
    ['private', true, 'vary'],
    ['variantBy', ['x-user'], 'vary'],
    ['getCacheKey', byUser, 'key'],
    ['CACHE_KEY_FN', byUser, 'key'],
    ['keyBuilder', byUser, 'key'],
    ['HTTPHeaders', ['x-user'], 'vary'],
    ['tenantHeader', 'x-tenant', 'vary'],
  ]

  for (const [name, value, meant] of misplaced)
    it(`refuses ${name} at registration, naming \`${meant}\``, async () => {
      const { fastify, lines } = loggingApp()
      const error = await configErrorOfAsync(() =>
        fastify.register(cachePlugin, { backend: memoryBackend(), [name]: value } as CachePluginOptions),
      )
      expect(error.setting).toBe(name)
      expect(error.message).toBe(`${name}: not an option of cachePlugin; did you mean \`${meant}\`?`)
      expect(lines).toEqual([])
    })

  // Before: keyGenerator was warned about and ignored, the route keyed on the URL alone, and bob
  // received "hello alice" (bobGot: 'hello alice', refused: undefined).
  it("never lets bob receive alice's page when the per-user key is given as keyGenerator: registration refuses", async () => {
    const { fastify } = loggingApp()
    let refused: string | undefined
    let bobGot: string | undefined
    try {
      await fastify.register(cachePlugin, {
        backend: memoryBackend(),
        keyGenerator: (request: FastifyRequest) => request.headers['x-user'],
      } as CachePluginOptions)
      fastify.get('/me', { config: { cache: true } }, async (request) => `hello ${request.headers['x-user']}`)
      await fastify.listen({ port: 0, host: '127.0.0.1' })
      const { port } = fastify.server.address() as AddressInfo
      await get(`http://127.0.0.1:${port}/me`, { 'x-user': 'alice' })
      bobGot = (await get(`http://127.0.0.1:${port}/me`, { 'x-user': 'bob' })).body
    } catch (error) {
      refused = (error as Error).message
    }
    expect({ refused, bobGot }).toEqual({
      refused: 'keyGenerator: not an option of cachePlugin; did you mean `key`?',
      bobGot: undefined,
    })
  })

  it("still reports once and ignores autoload's shared app settings (dir, autoPrefix, database, apiKey, privateKey, monkey…), and serves", async () => {
    const { fastify, lines } = loggingApp()
    const shared = {
      prefix: '/api',
      autoPrefix: '/v1',
      dir: '/srv/app',
      database: { url: 'postgres://localhost/shop' },
      apiKey: 'k-1',
      API_KEY: 'k-2',
      secretKey: 's',
      privateKey: '-----BEGIN PRIVATE KEY-----',
      PRIVATE_KEY_PATH: '/etc/app/key.pem',
      accessKeyId: 'AKIA',
      keyFile: '/etc/tls/key.pem',
      monkey: 'patch',
      sessionSecret: 'x'.repeat(32),
      authToken: 't',
      dbUser: 'shop',
      userAgent: 'shop-bot',
      visits: { count: 0 },
    }
    for (let i = 0; i < 2; i++)
      await fastify.register(
        async (scope) => {
          await scope.register(AutoLoad, { dir: FIXTURE('plugins'), options: shared })
          await scope.register(AutoLoad, { dir: FIXTURE('routes'), options: shared })
        },
        { prefix: `/app${i}` },
      )
    await fastify.listen({ port: 0, host: '127.0.0.1' })
    const { port } = fastify.server.address() as AddressInfo
    const first = await get(`http://127.0.0.1:${port}/app0/api/`)
    const second = await get(`http://127.0.0.1:${port}/app0/api/`)
    expect([first.status, JSON.parse(first.body), JSON.parse(second.body)]).toEqual([
      200,
      { visit: 1 },
      { visit: 1 },
    ])
    expect(second.cacheStatus).toMatch(/hit/)
    // Each once, though two apps' caches were given them: `prefix` is read by fastify.register, and
    // `visits` (the fixture route's counter) was reported by the first test of this file.
    const warnings = lines.filter((line) => line.level === 40).map((line) => line.msg.split(':')[0])
    expect(warnings).toEqual(Object.keys(shared).filter((name) => name !== 'prefix' && name !== 'visits'))
  })
})
