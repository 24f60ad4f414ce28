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
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { afterEach, describe, expect, it } from 'vitest'
import { type CachePluginOptions, cachePlugin } from '../src/index.js'

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
    await fastify.register(cachePlugin, { backend: memoryBackend(), tenantHeader: 'x' } as CachePluginOptions)
    await fastify.register(async (scope) => {
      await scope.register(cachePlugin, {
        backend: memoryBackend(),
        decorateAs: 'pageCache',
        tenantHeader: 'x',
      } as CachePluginOptions)
    })
    await fastify.ready()
    expect(lines.filter((line) => line.msg.startsWith('tenantHeader:'))).toHaveLength(1)
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
