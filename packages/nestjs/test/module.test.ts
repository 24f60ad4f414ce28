/**
 * `CacheModule` on real Nest 11 apps: the backend from a spec string (against a real
 * redis-server) or a factory, injected into services, made the default cache, closed on shutdown;
 * and core's `@cache` on providers, with Nest's metadata and injection intact.
 */
import 'reflect-metadata'
import {
  type CacheBackend,
  CacheClosedError,
  CacheConfigError,
  cache,
  getBackend,
  resetCache,
} from '@cache/core'
import { memoryBackend } from '@cache/memory'
import { type RedisServer, startRedis } from '@cache/test-servers'
import { Controller, Get, Inject, Injectable, Module, Param, SetMetadata } from '@nestjs/common'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { CACHE_BACKEND, CacheModule, CacheResponse, InjectCache } from '../src/index.js'
import { PLATFORMS, send, startApp } from './harness.js'

let redis: RedisServer
beforeAll(async () => {
  redis = await startRedis()
})
afterAll(async () => {
  await redis?.stop()
})
afterEach(async () => {
  await resetCache()
})

/**
 * Waits until `backend` answers: a Redis connection opened at start-up may not be up yet, and the
 * backend fails fast (300 ms) meanwhile, on a loaded machine too.
 */
async function connected(backend: CacheBackend): Promise<void> {
  const end = Date.now() + 10_000
  for (;;) {
    try {
      await backend.get('connected?')
      return
    } catch (error) {
      if (Date.now() > end) throw error
    }
  }
}

@Injectable()
class Counter {
  runs = 0
}

@Injectable()
class Prices {
  constructor(
    readonly counter: Counter,
    @InjectCache() readonly backend: CacheBackend,
  ) {}

  @SetMetadata('audit', 'above')
  @cache({ ttl: 60 })
  @SetMetadata('role', 'below')
  async price(sku: string): Promise<string> {
    this.counter.runs++
    return `${sku}:${this.counter.runs}`
  }
}

@Controller('prices')
class PricesController {
  constructor(private readonly prices: Prices) {}

  @Get(':sku')
  @CacheResponse(60)
  async find(@Param('sku') sku: string) {
    return { price: await this.prices.price(sku) }
  }
}

/** A feature module that imports nothing from @cache: it sees the backend because the root module is global. */
@Module({ controllers: [PricesController], providers: [Counter, Prices], exports: [Prices] })
class PricesModule {}

describe.each(PLATFORMS)('CacheModule (platform-%s)', (platform) => {
  it("forRoot('memory,redis'): a spec string builds the chain, the default cache is it, services get it injected", async () => {
    @Module({
      imports: [
        CacheModule.forRoot({ backend: 'memory,redis', redisUrl: redis.url, isGlobal: true }),
        PricesModule,
      ],
    })
    class AppModule {}
    const { app, url } = await startApp(platform, AppModule)
    try {
      const backend = app.get<CacheBackend>(CACHE_BACKEND)
      await connected(backend)
      expect(backend.name).toBe('multi-level')
      expect(getBackend()).toBe(backend)
      expect(app.get(Prices).backend).toBe(backend)
      const first = await send(url, `/prices/lamp-${platform}`)
      const second = await send(url, `/prices/lamp-${platform}`)
      expect(JSON.parse(second.text)).toEqual({ price: `lamp-${platform}:1` })
      expect(second.headers['cache-status']).toMatch(/hit/)
      expect(first.text).toBe(second.text)
      await app.get(Prices).backend.set('greeting', 'hello', 60)
      expect(await getBackend().get('greeting')).toBe('hello')
    } finally {
      await app.close()
    }
  })

  it('forRootAsync: options from a factory with injected providers', async () => {
    const CONFIG = 'CACHE_CONFIG'
    @Module({ providers: [{ provide: CONFIG, useValue: { spec: 'redis', url: '' } }], exports: [CONFIG] })
    class ConfigModule {}
    let given: unknown
    @Module({
      imports: [
        CacheModule.forRootAsync({
          imports: [ConfigModule],
          inject: [CONFIG],
          isGlobal: true,
          useFactory: async (config: { spec: string }) => {
            given = config
            return { backend: config.spec, redisUrl: redis.url, namespace: 'async' }
          },
        }),
        PricesModule,
      ],
    })
    class AppModule {}
    const { app, url } = await startApp(platform, AppModule)
    try {
      expect(given).toEqual({ spec: 'redis', url: '' })
      const backend = app.get<CacheBackend>(CACHE_BACKEND)
      await connected(backend)
      expect(backend.name).toMatch(/redis/)
      await send(url, `/prices/desk-${platform}`)
      expect(JSON.parse((await send(url, `/prices/desk-${platform}`)).text)).toEqual({
        price: `desk-${platform}:1`,
      })
      expect(app.get(Counter).runs).toBe(1)
    } finally {
      await app.close()
    }
  })

  it('closes the backend when the application shuts down', async () => {
    @Module({
      imports: [CacheModule.forRoot({ backend: 'redis', redisUrl: redis.url, isGlobal: true }), PricesModule],
    })
    class AppModule {}
    const { app } = await startApp(platform, AppModule)
    const backend = app.get<CacheBackend>(CACHE_BACKEND)
    await connected(backend)
    await backend.set('k', 'v', 60)
    expect(await backend.get('k')).toBe('v')
    await app.close()
    await expect(backend.get('k')).rejects.toThrow(CacheClosedError)
  })

  it('closeOnShutdown: false leaves the backend open', async () => {
    const backend = memoryBackend()
    @Module({
      imports: [CacheModule.forRoot({ backend, closeOnShutdown: false, isGlobal: true }), PricesModule],
    })
    class AppModule {}
    const { app } = await startApp(platform, AppModule)
    await backend.set('k', 'v', 60)
    await app.close()
    expect(await backend.get('k')).toBe('v')
  })
})

describe('@cache on a Nest provider', () => {
  it('keeps the metadata other decorators put on the method, above and below it, and injection works', async () => {
    const method = Prices.prototype.price
    expect(Reflect.getMetadata('audit', method)).toBe('above')
    expect(Reflect.getMetadata('role', method)).toBe('below')
    expect(Reflect.getMetadata('design:paramtypes', Prices.prototype, 'price')).toEqual([String])
    expect(Reflect.getMetadata('design:paramtypes', Prices)).toHaveLength(2)

    @Module({ imports: [CacheModule.forRoot({ backend: memoryBackend(), isGlobal: true }), PricesModule] })
    class AppModule {}
    const { app } = await startApp('express', AppModule)
    try {
      const prices = app.get(Prices)
      expect(prices.counter).toBe(app.get(Counter))
      expect(await prices.price('chair')).toBe('chair:1')
      expect(await prices.price('chair')).toBe('chair:1')
      expect(await prices.price('sofa')).toBe('sofa:2')
    } finally {
      await app.close()
    }
  })
})

describe('CacheModule options', () => {
  it('a typo in the backend spec stops the application at start-up, naming the option', async () => {
    @Module({ imports: [CacheModule.forRoot({ backend: 'memroy' })] })
    class AppModule {}
    await expect(startApp('express', AppModule)).rejects.toThrow(/backend.*memroy|memroy.*backend/)
  })

  it('forRootAsync without a factory is a CacheConfigError', () => {
    expect(() => CacheModule.forRootAsync({} as never)).toThrow(/useFactory/)
  })

  it('@CacheResponse with a bad option throws when the controller is defined', () => {
    expect(() => CacheResponse({ ttl: 60, keyPrefix: '' })).toThrow(/keyPrefix/)
  })

  it('frontSkipsAllMiddleware with key or bypass, or not a boolean, is a CacheConfigError naming it', () => {
    for (const options of [
      { frontSkipsAllMiddleware: true, key: () => 'k' },
      { frontSkipsAllMiddleware: true, bypass: () => false },
      { frontSkipsAllMiddleware: 'yes' as never },
    ]) {
      expect(() => CacheResponse({ ttl: 60, ...options })).toThrow(CacheConfigError)
      expect(() => CacheResponse({ ttl: 60, ...options })).toThrow(/frontSkipsAllMiddleware/)
    }
    expect(() => CacheResponse({ ttl: 60, frontSkipsAllMiddleware: false, key: () => 'k' })).not.toThrow()
  })

  it('front that is not a boolean stops the application at start-up, naming the option', async () => {
    @Module({ imports: [CacheModule.forRoot({ backend: memoryBackend(), front: 'yes' as never })] })
    class AppModule {}
    await expect(startApp('express', AppModule)).rejects.toThrow(/front/)
  })

  it('Inject(CACHE_BACKEND) is what @InjectCache uses', () => {
    expect(Inject(CACHE_BACKEND).toString()).toBe(InjectCache().toString())
  })
})
