/**
 * Plugin-level option names: a name cachePlugin does not have is refused at registration, as in
 * every other entry point, whatever it looks like: ignoring a per-user key written in another
 * library's words (`appendKey`, `sessionId`, `privacy: 'private'`) serves one user's page to
 * another. Only what Fastify and fastify-cli read from a plugin's options pass (`prefix`,
 * `logLevel`, `logSerializers`, `skipOverride`). `@fastify/autoload`'s shared `options` (the app's
 * settings, for other plugins) reach the cache through a plugin of the app's own (README).
 */
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import { memoryBackend } from '@cache/memory'
import { configErrorOfAsync } from '@cache/testing'
import AutoLoad from '@fastify/autoload'
import Fastify, { type FastifyInstance, type FastifyRequest, type FastifyServerOptions } from 'fastify'
import { afterEach, describe, expect, it } from 'vitest'
import { type CachePluginOptions, cachePlugin } from '../src/index.js'
import { get } from './http-get.js'

const FIXTURE = (dir: string) => fileURLToPath(new URL(`./fixtures/autoload/${dir}`, import.meta.url))

/** What the message of a refused plugin option name says after naming it. */
const AUTOLOAD_FIX =
  "if it is one of @fastify/autoload's shared `options`, meant for other plugins, register cachePlugin from a file in plugins/ as fp(async (app) => app.register(cachePlugin, { ...its own options }))"

const apps: FastifyInstance[] = []
afterEach(async () => {
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

const bySession = (request: FastifyRequest) => /sid=([^;]+)/.exec(request.headers.cookie ?? '')?.[1] ?? 'anon'

/** Names other caches and key libraries use for what `vary`, `key`, `bypass`, `tags` do here. */
const otherLibrariesNames: [name: string, value: unknown][] = [
  ['appendKey', bySession],
  ['sessionId', bySession],
  ['privacy', 'private'],
  ['cacheByUser', true],
  ['perUser', true],
  ['partitionKey', bySession],
  ['tenantKey', 'x-tenant'],
  ['userKey', bySession],
  ['cacheSegment', 'products'],
  ['surrogateKeys', ['products']],
  ['cacheTag', ['products']],
  ['skip', () => true],
  ['shouldCache', () => false],
  ['noCache', true],
  ['varyHeaders', ['x-user']],
  ['keyGenerator', bySession],
  ['appName', 'shop'],
]

describe('plugin option names cachePlugin does not have', () => {
  for (const [name, value] of otherLibrariesNames)
    it(`refuses ${name} at registration, saying what to do with autoload's shared options`, async () => {
      const { fastify, lines } = loggingApp()
      const error = await configErrorOfAsync(() =>
        fastify.register(cachePlugin, { backend: memoryBackend(), [name]: value } as CachePluginOptions),
      )
      expect(error.setting).toBe(name)
      expect(error.message).toBe(`${name}: not an option of cachePlugin; ${AUTOLOAD_FIX}`)
      expect(lines).toEqual([])
    })

  it('names the nearest option of a misspelt name, then the autoload fix', async () => {
    const { fastify } = loggingApp()
    const error = await configErrorOfAsync(() =>
      fastify.register(cachePlugin, { backend: memoryBackend(), varyy: ['x-tenant'] } as CachePluginOptions),
    )
    expect(error.message).toBe(`varyy: not an option of cachePlugin; did you mean \`vary\`? ${AUTOLOAD_FIX}`)
  })

  // Before: appendKey (apicache's per-user key) was warned about and ignored, the route keyed on
  // the URL alone, and bob received alice's balance.
  it("never lets bob receive alice's page when the per-user key is given as apicache's appendKey", async () => {
    const { fastify } = loggingApp()
    let refused: string | undefined
    let bobGot: string | undefined
    try {
      await fastify.register(cachePlugin, {
        backend: memoryBackend(),
        allowCookies: true,
        appendKey: bySession,
      } as CachePluginOptions)
      fastify.get(
        '/account',
        { config: { cache: { ttl: 60 } } },
        async (request) => `balance of ${bySession(request)}`,
      )
      await fastify.listen({ port: 0, host: '127.0.0.1' })
      const { port } = fastify.server.address() as AddressInfo
      await get(`http://127.0.0.1:${port}/account`, { cookie: 'sid=alice' })
      bobGot = (await get(`http://127.0.0.1:${port}/account`, { cookie: 'sid=bob' })).body
    } catch (error) {
      refused = (error as Error).message
    }
    expect({ refused, bobGot }).toEqual({
      refused: `appendKey: not an option of cachePlugin; ${AUTOLOAD_FIX}`,
      bobGot: undefined,
    })
  })

  it("passes, without a warning, what Fastify and fastify-cli's test helper read (prefix, logLevel, logSerializers, skipOverride)", async () => {
    const { fastify, lines } = loggingApp()
    let runs = 0
    await fastify.register(async (scope) => {
      await scope.register(cachePlugin, {
        backend: memoryBackend(),
        prefix: '/api',
        logLevel: 'warn',
        logSerializers: { req: () => 'req' },
        skipOverride: true,
      } as CachePluginOptions)
      scope.get('/count', { config: { cache: 60 } }, async () => `run ${++runs}`)
    })
    await fastify.listen({ port: 0, host: '127.0.0.1' })
    const { port } = fastify.server.address() as AddressInfo
    await get(`http://127.0.0.1:${port}/count`)
    const second = await get(`http://127.0.0.1:${port}/count`)
    expect([second.body, second.cacheStatus]).toEqual(['run 1', expect.stringMatching(/hit/)])
    expect(lines).toEqual([])
  })
})

describe("@fastify/autoload's shared options", () => {
  const shared = () => ({
    appName: 'shop',
    database: { url: 'postgres://localhost/shop' },
    apiKey: 'k-1',
    sessionSecret: 'x'.repeat(32),
    visits: { count: 0 },
  })

  it('refuses cachePlugin exported from plugins/ as it is, when autoload hands it the shared options', async () => {
    const { fastify } = loggingApp()
    const error = await configErrorOfAsync(async () => {
      await fastify.register(AutoLoad, { dir: FIXTURE('bare-plugins'), options: shared() })
      await fastify.ready()
    })
    expect(error.message).toBe(`appName: not an option of cachePlugin; ${AUTOLOAD_FIX}`)
  })

  it('serves and caches with cachePlugin registered from plugins/ by an fp wrapper, as the error says', async () => {
    const { fastify, lines } = loggingApp()
    const options = shared()
    for (let i = 0; i < 2; i++)
      await fastify.register(
        async (scope) => {
          await scope.register(AutoLoad, { dir: FIXTURE('plugins'), options })
          await scope.register(AutoLoad, { dir: FIXTURE('routes'), options })
        },
        { prefix: `/app${i}` },
      )
    await fastify.listen({ port: 0, host: '127.0.0.1' })
    const { port } = fastify.server.address() as AddressInfo
    const first = await get(`http://127.0.0.1:${port}/app0/`)
    const second = await get(`http://127.0.0.1:${port}/app0/`)
    expect([first.status, JSON.parse(first.body), JSON.parse(second.body)]).toEqual([
      200,
      { visit: 1 },
      { visit: 1 },
    ])
    expect(second.cacheStatus).toMatch(/hit/)
    expect(lines).toEqual([])
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
