import { configErrorOf } from '@cache/testing'
/**
 * An option name that is not an option is refused while the application is declared: dropped,
 * `@CacheResponse({ varyy })` would serve one user's response to another, and
 * `CacheModule.forRoot({ namspace })` would share keys with another application.
 */
import 'reflect-metadata'
import { CacheConfigError, resetCache, setCacheLogger } from '@cache/core'
import { loadInstalledPackage } from '@cache/core/backend'
import { memoryBackend } from '@cache/memory'
import { Controller, Get, Headers, Module } from '@nestjs/common'
import { afterEach, describe, expect, it } from 'vitest'
import {
  CACHE_BACKEND,
  CacheModule,
  type CacheModuleAsyncOptions,
  type CacheModuleOptions,
  CacheResponse,
  type CacheResponseOptions,
} from '../src/index.js'
import { PLATFORMS, send, startApp } from './harness.js'

afterEach(async () => {
  setCacheLogger(undefined)
  await resetCache()
})

describe('option names of @CacheResponse() and CacheModule', () => {
  it('refuses @CacheResponse({ varyy }) where the controller is declared, naming vary', () => {
    const error = configErrorOf(() => {
      @Controller()
      class MeController {
        @Get('me')
        @CacheResponse({ ttl: 60, varyy: ['x-user'] } as CacheResponseOptions)
        me(@Headers('x-user') user: string) {
          return `hello ${user}`
        }
      }
      return MeController
    })
    expect(error.setting).toBe('varyy')
    expect(error.message).toBe('varyy: not an option of @CacheResponse(); did you mean `vary`?')
  })

  it('refuses CacheModule.forRoot({ namspace }) and a misspelt forRootAsync option', () => {
    const error = configErrorOf(() =>
      CacheModule.forRoot({ backend: 'memory', namspace: 'app' } as CacheModuleOptions),
    )
    expect(error.message).toBe('namspace: not an option of CacheModule.forRoot(); did you mean `namespace`?')
    expect(configErrorOf(() => CacheModule.forRoot({ isGlobl: true } as CacheModuleOptions)).setting).toBe(
      'isGlobl',
    )
    const async = configErrorOf(() =>
      CacheModule.forRootAsync({ useFactory: () => ({}), injct: [] } as CacheModuleAsyncOptions),
    )
    expect(async.message).toMatch(
      /^injct: not an option of CacheModule.forRootAsync\(\); did you mean `inject`/,
    )
  })

  it.each(PLATFORMS)(
    'refuses a misspelt option the forRootAsync factory returns, on %s',
    async (platform) => {
      @Module({
        imports: [
          CacheModule.forRootAsync({
            useFactory: () => ({ backend: memoryBackend(), defaultTTL: 60 }) as never,
          }),
        ],
      })
      class AppModule {}
      const started = startApp(platform, AppModule)
      await expect(started).rejects.toBeInstanceOf(CacheConfigError)
      await expect(started).rejects.toThrow(/^defaultTTL: not an option of .*; did you mean `defaultTtl`\?/)
    },
  )

  it.each(PLATFORMS)(
    'accepts every documented option of both, and caches with them, on %s',
    async (platform) => {
      // Backend names, not an instance: the build options apply only to a backend configureCache builds.
      const moduleOptions = {
        backend: 'memory',
        loader: loadInstalledPackage,
        logger: false,
        maxKeys: 100,
        maxSize: '1MB' as never,
        diskPath: '/tmp/unused',
        diskMaxSize: '1GB' as never,
        redisUrl: 'redis://127.0.0.1:6379',
        memcachedServers: '127.0.0.1:11211',
        defaultTtl: 60,
        namespace: 'all',
        isGlobal: true,
        closeOnShutdown: true,
        front: false,
      } satisfies Required<CacheModuleOptions>
      const responseOptions = {
        ttl: 60,
        backend: memoryBackend(),
        keyPrefix: 'all',
        vary: ['x-user'],
        key: () => 'all',
        statuses: [200],
        maxBodySize: '512KB',
        allowAuthorized: false,
        allowCookies: false,
        staleWhileRevalidate: 10,
        revalidateTimeout: '10s',
        collapseTimeout: '2s',
        tags: ['t'],
        statusHeader: 'x-cache',
        cacheName: 'edge',
        etag: true,
        now: Date.now,
        bypass: () => false,
        cacheControl: { maxAge: 10, sMaxAge: 20, staleWhileRevalidate: 5, public: false },
        frontSkipsAllMiddleware: false,
      } satisfies Required<CacheResponseOptions>
      let runs = 0
      @Controller()
      class AllController {
        @Get('all')
        @CacheResponse(responseOptions)
        all() {
          return `run ${++runs}`
        }
      }
      @Module({
        imports: [
          CacheModule.forRootAsync({
            useFactory: () => moduleOptions,
            inject: [],
            imports: [],
            isGlobal: true,
          }),
        ],
        controllers: [AllController],
      })
      class AsyncModule {}
      @Module({ imports: [CacheModule.forRoot(moduleOptions)], controllers: [AllController] })
      class SyncModule {}
      for (const module of [SyncModule, AsyncModule]) {
        const { app, url } = await startApp(platform, module)
        try {
          expect((await send(url, '/all')).headers['x-cache']).toBe('MISS')
          const hit = await send(url, '/all')
          expect(hit.headers['x-cache']).toBe('HIT')
          expect(hit.text).toBe(`run ${runs}`)
        } finally {
          await app.close()
        }
      }
    },
  )
})

describe('CacheModule options given as a settings class', () => {
  class Settings {
    get backend() {
      return 'memory'
    }
    get namespace() {
      return 'tenant-a'
    }
    get defaultTtl() {
      return '1s'
    }
    get maxKeys() {
      return 2
    }
  }

  it.each(['forRoot', 'forRootAsync', 'Object.create'] as const)(
    'its getters are read (%s): the namespace, default TTL and size limit apply',
    async (form) => {
      const settings =
        form === 'Object.create'
          ? Object.create({ backend: 'memory', namespace: 'tenant-a', defaultTtl: '1s', maxKeys: 2 })
          : new Settings()
      @Module({
        imports: [
          form === 'forRootAsync'
            ? CacheModule.forRootAsync({ useFactory: async () => settings })
            : CacheModule.forRoot(settings),
        ],
      })
      class AppModule {}
      const { app } = await startApp('express', AppModule)
      try {
        const backend = app.get<import('@cache/core').CacheBackend & { namespace?: string }>(CACHE_BACKEND)
        // Before: the options were destructured, the getters never read: no namespace, no TTL.
        expect(backend.namespace).toBe('tenant-a')
        const before = Date.now()
        await backend.set('k', 1)
        const entry = await backend.getEntry('k')
        expect(entry?.expiresAt).toBeGreaterThanOrEqual(before + 1000)
        expect(entry?.expiresAt).toBeLessThan(before + 5000)
      } finally {
        await app.close()
      }
    },
  )
})
