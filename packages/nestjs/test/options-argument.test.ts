/**
 * What the application hands the module and the decorator, in the shapes a Nest developer writes
 * them: `@CacheResponse(60, { vary })` (apicache's `cache('5 minutes', …)` habit, plain
 * JavaScript), `null`, and a `forRootAsync` factory that injects a ConfigService-style provider
 * and returns what `forRoot` accepts (a backend instance) or what only `forRootAsync` reads
 * (`isGlobal`).
 */
import 'reflect-metadata'
import { type CacheBackend, CacheConfigError, resetCache } from '@cache/core'
import { memoryBackend } from '@cache/memory'
import { configErrorOf } from '@cache/testing'
import { Controller, Get, Headers, Inject, Injectable, Module } from '@nestjs/common'
import { afterEach, describe, expect, it } from 'vitest'
import { CACHE_BACKEND, CacheModule, type CacheModuleOptions, CacheResponse } from '../src/index.js'
import { PLATFORMS, send, startApp } from './harness.js'

afterEach(async () => {
  await resetCache()
})

/** `@CacheResponse` as plain JavaScript calls it, whatever its arguments. */
const callAsJavaScript = CacheResponse as unknown as (...args: unknown[]) => MethodDecorator

/** A ConfigService-style provider: the application's settings, read by name. */
@Injectable()
class AppConfig {
  readonly values: Record<string, string> = { CACHE_NAMESPACE: 'shop', CACHE_BACKEND: 'memory' }
  get(name: string): string | undefined {
    return this.values[name]
  }
}

@Module({ providers: [AppConfig], exports: [AppConfig] })
class AppConfigModule {}

/** A feature module's service that injects the module's backend (needs `isGlobal`). */
@Injectable()
class Basket {
  constructor(@Inject(CACHE_BACKEND) readonly backend: CacheBackend) {}
}

@Controller('basket')
class BasketController {
  constructor(@Inject(Basket) private readonly basket: Basket) {}
  @Get()
  async read() {
    return { item: (await this.basket.backend.get('basket:item')) ?? null }
  }
}

@Module({ providers: [Basket], controllers: [BasketController] })
class BasketModule {}

describe('the arguments of @CacheResponse()', () => {
  it("refuses @CacheResponse(60, { vary: ['x-tenant'] }) where the controller is declared, saying how to write it", () => {
    const error = configErrorOf(() => {
      @Controller('t')
      class TenantController {
        @Get()
        @callAsJavaScript(60, { vary: ['x-tenant'] })
        read(@Headers('x-tenant') tenant: string) {
          return { tenant }
        }
      }
      return TenantController
    })
    expect(error.setting).toBe('options')
    expect(error.message).toMatch(/^options: @CacheResponse\(\) takes one argument/)
    expect(error.message).toContain('@CacheResponse({ ttl: 60, vary: ["x-tenant"] })')
  })

  it.each(PLATFORMS)(
    'serves each tenant its own response when written as the error says, on %s',
    async (platform) => {
      @Controller('t')
      class TenantController {
        @Get()
        @CacheResponse({ ttl: 60, vary: ['x-tenant'] })
        read(@Headers('x-tenant') tenant: string) {
          return { tenant }
        }
      }
      @Module({ imports: [CacheModule.forRoot(memoryBackend())], controllers: [TenantController] })
      class AppModule {}
      const { app, url } = await startApp(platform, AppModule)
      try {
        await send(url, '/t', { headers: { 'x-tenant': 'a' } })
        await send(url, '/t', { headers: { 'x-tenant': 'a' } })
        expect(JSON.parse((await send(url, '/t', { headers: { 'x-tenant': 'b' } })).text)).toEqual({
          tenant: 'b',
        })
      } finally {
        await app.close()
      }
    },
  )

  it('refuses @CacheResponse(null) and what is neither options nor a TTL with "expected an options object"', () => {
    for (const given of [null, true, ['x-tenant']]) {
      const error = configErrorOf(() => callAsJavaScript(given))
      expect(error.setting).toBe('options')
      expect(error.message).toMatch(
        /^options: @CacheResponse\(\) expected an options object or a TTL \(60, '5m'\), got /,
      )
    }
    expect(() => CacheResponse(60)).not.toThrow()
    expect(() => CacheResponse('5m')).not.toThrow()
    expect(() => CacheResponse()).not.toThrow()
  })

  it('refuses CacheModule.forRoot(null) with a CacheConfigError', () => {
    const error = configErrorOf(() => CacheModule.forRoot(null as never))
    expect(error.message).toMatch(/expected an options object/)
  })
})

describe.each(PLATFORMS)('CacheModule.forRootAsync factories with an injected config, on %s', (platform) => {
  it('accepts a backend instance returned by the factory, as forRoot does', async () => {
    const made = memoryBackend()
    @Module({
      imports: [
        CacheModule.forRootAsync({
          imports: [AppConfigModule],
          inject: [AppConfig],
          isGlobal: true,
          useFactory: (config: AppConfig) => {
            expect(config.get('CACHE_NAMESPACE')).toBe('shop')
            return made
          },
        }),
        BasketModule,
      ],
    })
    class AppModule {}
    const { app, url } = await startApp(platform, AppModule)
    try {
      await made.set('basket:item', 'lamp')
      expect(JSON.parse((await send(url, '/basket')).text)).toEqual({ item: 'lamp' })
    } finally {
      await app.close()
    }
  })

  it("accepts a spec string returned by the factory (config.get('CACHE_BACKEND'))", async () => {
    @Module({
      imports: [
        CacheModule.forRootAsync({
          imports: [AppConfigModule],
          inject: [AppConfig],
          isGlobal: true,
          useFactory: (config: AppConfig) => config.get('CACHE_BACKEND') as string,
        }),
        BasketModule,
      ],
    })
    class AppModule {}
    const { app, url } = await startApp(platform, AppModule)
    try {
      await app.get<CacheBackend>(CACHE_BACKEND).set('basket:item', 'desk')
      expect(JSON.parse((await send(url, '/basket')).text)).toEqual({ item: 'desk' })
    } finally {
      await app.close()
    }
  })

  it('refuses isGlobal returned by the factory, saying it goes beside useFactory', async () => {
    @Controller('basket')
    class OwnBasketController {
      constructor(@Inject(CACHE_BACKEND) private readonly backend: CacheBackend) {}
      @Get()
      async read() {
        return { item: (await this.backend.get('basket:item')) ?? null }
      }
    }
    @Module({
      imports: [
        CacheModule.forRootAsync({
          imports: [AppConfigModule],
          inject: [AppConfig],
          useFactory: (config: AppConfig) =>
            ({ backend: config.get('CACHE_BACKEND'), isGlobal: true }) as CacheModuleOptions,
        }),
      ],
      controllers: [OwnBasketController],
    })
    class AppModule {}
    const started = startApp(platform, AppModule)
    await expect(started).rejects.toBeInstanceOf(CacheConfigError)
    await expect(started).rejects.toThrow(
      /^isGlobal: returned by the factory comes too late .*: isGlobal goes beside useFactory in forRootAsync\(\{ isGlobal, useFactory \}\)$/,
    )
  })

  it("names isGlobal beside useFactory in Nest's error when a feature module needs the backend before the factory runs", async () => {
    @Module({
      imports: [
        CacheModule.forRootAsync({
          imports: [AppConfigModule],
          inject: [AppConfig],
          useFactory: (config: AppConfig) =>
            ({ backend: config.get('CACHE_BACKEND'), isGlobal: true }) as CacheModuleOptions,
        }),
        BasketModule,
      ],
    })
    class AppModule {}
    await expect(startApp(platform, AppModule)).rejects.toThrow(
      /BasketModule[\s\S]*forRootAsync\(\{ isGlobal: true, useFactory \}\) \(isGlobal beside useFactory, not in what it returns\)/,
    )
  })

  it('accepts the options forRoot takes, isGlobal included, from the factory when isGlobal beside useFactory agrees', async () => {
    const made = memoryBackend()
    @Module({
      imports: [
        CacheModule.forRootAsync({ isGlobal: true, useFactory: () => ({ backend: made, isGlobal: true }) }),
        BasketModule,
      ],
    })
    class AppModule {}
    const { app, url } = await startApp(platform, AppModule)
    try {
      await made.set('basket:item', 'chair')
      expect(JSON.parse((await send(url, '/basket')).text)).toEqual({ item: 'chair' })
    } finally {
      await app.close()
    }
  })

  it('names what the factory returned when it is neither options nor a backend', async () => {
    @Module({
      imports: [
        CacheModule.forRootAsync({
          imports: [AppConfigModule],
          inject: [AppConfig],
          // The config service itself, by mistake.
          useFactory: (config: AppConfig) => config as never,
        }),
      ],
    })
    class AppModule {}
    const started = startApp(platform, AppModule)
    await expect(started).rejects.toBeInstanceOf(CacheConfigError)
    await expect(started).rejects.toThrow(
      /the factory of CacheModule.forRootAsync\(\) returned an AppConfig instance: expected an options object \(\{ backend, namespace, … \}\), a backend instance or a spec string/,
    )
  })
})
