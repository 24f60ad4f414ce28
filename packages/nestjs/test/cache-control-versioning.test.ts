/**
 * `cacheControl` on handlers that Nest's versioning chooses by the request (header, media type,
 * custom), on real Nest 11 apps of both platforms over real HTTP: a CDN keys on the URL and the
 * response's `Vary`, so a response told apart from another at the same URL only by a request
 * header no `Vary` names must not be offered to it as `public`.
 */
import 'reflect-metadata'
import { memoryBackend } from '@cache/memory'
import {
  type CanActivate,
  Controller,
  type INestApplication,
  Get,
  Injectable,
  Module,
  UseInterceptors,
  VERSION_NEUTRAL,
  type VersioningOptions,
  VersioningType,
} from '@nestjs/common'
import { APP_GUARD } from '@nestjs/core'
import { afterEach, describe, expect, it } from 'vitest'
import {
  CACHE_RESPONSE_OPTIONS,
  CacheModule,
  CacheResponse,
  CacheResponseInterceptor,
  type CacheResponseOptions,
  noteArrivals,
} from '../src/index.js'
import { PLATFORMS, type PlatformName, send, startApp } from './harness.js'

const apps: INestApplication[] = []
/** The requests that reached Nest (its global guard), under `CacheModule` with `front: true`. */
let guarded = 0
afterEach(async () => {
  for (const app of apps.splice(0)) await app.close()
  guarded = 0
})

@Injectable()
class CountingGuard implements CanActivate {
  canActivate(): boolean {
    guarded++
    return true
  }
}

type Version = string | typeof VERSION_NEUTRAL | undefined

/**
 * One controller at `/catalog` per version, each with a cached GET answering its version and how
 * many times it ran. `undefined`: a controller without a version of its own (the app's
 * `defaultVersion` applies).
 */
function catalogControllers(
  versions: Version[],
  options: CacheResponseOptions = { ttl: 60, cacheControl: true },
  interceptor?: CacheResponseInterceptor,
): Function[] {
  return versions.map((version) => {
    let runs = 0
    const name = version === undefined ? 'default' : version === VERSION_NEUTRAL ? 'neutral' : `v${version}`
    class CatalogController {
      list() {
        return { version: name, run: ++runs }
      }
    }
    const descriptor = Object.getOwnPropertyDescriptor(CatalogController.prototype, 'list')!
    Get()(CatalogController.prototype, 'list', descriptor)
    if (interceptor === undefined) CacheResponse(options)(CatalogController.prototype, 'list', descriptor)
    else {
      // As a user wires it by hand: the interceptor made with `new`, outside Nest's injector.
      Reflect.defineMetadata(CACHE_RESPONSE_OPTIONS, options, descriptor.value as object)
      UseInterceptors(interceptor)(CatalogController.prototype, 'list', descriptor)
    }
    Controller(version === undefined ? { path: 'catalog' } : { path: 'catalog', version })(CatalogController)
    return CatalogController
  })
}

async function versionedApp(
  platform: PlatformName,
  controllers: Function[],
  versioning: VersioningOptions,
  module: { front?: boolean; cacheModule?: boolean } = {},
) {
  class AppModule {}
  Module({
    imports:
      module.cacheModule === false
        ? []
        : [
            CacheModule.forRoot({
              backend: memoryBackend(),
              closeOnShutdown: false,
              front: module.front === true,
            }),
          ],
    controllers: controllers as never[],
    providers: module.front === true ? [{ provide: APP_GUARD, useClass: CountingGuard }] : [],
  })(AppModule)
  const { app, url } = await startApp(platform, AppModule, (nest) => {
    nest.enableVersioning(versioning)
    // What CacheModule does otherwise (see the README): requests are keyed as they arrived.
    if (module.cacheModule === false) noteArrivals(nest.getHttpServer())
  })
  apps.push(app)
  return async (path: string, headers: Record<string, string> = {}) => {
    const reply = await send(url, path, { headers })
    return {
      status: reply.status,
      body: reply.status === 200 ? (JSON.parse(reply.text) as { version: string; run: number }) : undefined,
      cacheControl: reply.headers['cache-control'],
      vary: reply.headers.vary,
      cacheStatus: reply.headers['cache-status'],
    }
  }
}

/** Whether a `Vary` value names `header` (a CDN would then key on it, and `public` would be safe). */
function varies(vary: string | undefined, header: string): boolean {
  return (vary ?? '')
    .split(',')
    .map((name) => name.trim().toLowerCase())
    .some((name) => name === '*' || name === header)
}

describe.each(PLATFORMS)('cacheControl with Nest versioning (platform-%s)', (platform) => {
  it.each([
    [
      'header',
      { type: VersioningType.HEADER, header: 'X-API-Version' } as const,
      (v: string) => ({ 'x-api-version': v }),
      'x-api-version',
    ],
    [
      'media-type',
      { type: VersioningType.MEDIA_TYPE, key: 'v=' } as const,
      (v: string) => ({ accept: `application/json;v=${v}` }),
      'accept',
    ],
    [
      'custom',
      {
        type: VersioningType.CUSTOM,
        extractor: (req: any) => String(req.headers['x-tenant-version'] ?? ''),
      } as const,
      (v: string) => ({ 'x-tenant-version': v }),
      'x-tenant-version',
    ],
  ])(
    '%s versioning: no CDN gives a v2 client the v1 page (private, on the miss and on the hit)',
    async (_, versioning, ask, header) => {
      const get = await versionedApp(platform, catalogControllers(['1', '2']), versioning)
      for (const [version, run, status] of [
        ['1', 1, 'stored'],
        ['2', 1, 'stored'],
        ['1', 1, 'hit'],
        ['2', 1, 'hit'],
      ] as const) {
        const page = await get('/catalog', ask(version))
        expect(page.body).toEqual({ version: `v${version}`, run })
        expect(page.cacheStatus).toContain(status)
        // Nest sends no Vary for the header it routes on: a CDN would key v1 and v2 alike.
        expect(varies(page.vary, header)).toBe(false)
        // Before: public, max-age=60.
        expect(page.cacheControl).toBe('private, max-age=60')
      }
    },
  )

  it.each([
    ['a VERSION_NEUTRAL handler', VERSION_NEUTRAL],
    ['a handler under defaultVersion', undefined],
  ] as const)(
    'header versioning: %s beside a versioned one at the same URL is private too',
    async (_, own) => {
      const get = await versionedApp(platform, catalogControllers(['2', own]), {
        type: VersioningType.HEADER,
        header: 'X-API-Version',
        ...(own === undefined ? { defaultVersion: '1' } : {}),
      })
      const asked: Record<string, string> = own === undefined ? { 'x-api-version': '1' } : {}
      const name = own === undefined ? 'default' : 'neutral'
      for (const run of [1, 1]) {
        const page = await get('/catalog', asked)
        expect(page.body).toEqual({ version: name, run })
        expect(page.cacheControl).toBe('private, max-age=60')
      }
      const v2 = await get('/catalog', { 'x-api-version': '2' })
      expect(v2.body).toEqual({ version: 'v2', run: 1 })
      expect(v2.cacheControl).toBe('private, max-age=60')
    },
  )

  it('URI versioning: each version has its own URL, so its responses stay public', async () => {
    const get = await versionedApp(platform, catalogControllers(['1', '2']), { type: VersioningType.URI })
    for (const version of ['1', '2', '1', '2']) {
      const page = await get(`/v${version}/catalog`)
      expect(page.body).toEqual({ version: `v${version}`, run: 1 })
      expect(page.cacheControl).toBe('public, max-age=60')
    }
  })

  it('header versioning: the front door (front: true) replays its hits private as well', async () => {
    const get = await versionedApp(
      platform,
      catalogControllers(['1', '2'], { ttl: 60, cacheControl: true, frontSkipsAllMiddleware: true }),
      { type: VersioningType.HEADER, header: 'X-API-Version' },
      { front: true },
    )
    for (const [version, reached] of [
      ['1', 1],
      ['2', 2],
      ['1', 2],
      ['2', 2],
    ] as const) {
      const page = await get('/catalog', { 'x-api-version': version })
      expect(page.body).toEqual({ version: `v${version}`, run: 1 })
      // The hits are the front's: Nest never saw them.
      expect(guarded).toBe(reached)
      expect(page.cacheControl).toBe('private, max-age=60')
    }
  })

  describe('with an interceptor made with new (outside the injector: no application config)', () => {
    const made = () => new CacheResponseInterceptor(memoryBackend())
    const options = { ttl: 60, cacheControl: true } as const

    it('header versioning: a handler under defaultVersion beside a versioned one is private (CacheModule noted the app)', async () => {
      const get = await versionedApp(platform, catalogControllers(['2', undefined], options, made()), {
        type: VersioningType.HEADER,
        header: 'X-API-Version',
        defaultVersion: '1',
      })
      for (const version of ['1', '2', '1', '2']) {
        const page = await get('/catalog', { 'x-api-version': version })
        expect(page.body).toEqual({ version: version === '1' ? 'default' : 'v2', run: 1 })
        expect(page.cacheControl).toBe('private, max-age=60')
      }
    })

    it('URI versioning: stays public (CacheModule noted the app)', async () => {
      const get = await versionedApp(platform, catalogControllers(['1', '2'], options, made()), {
        type: VersioningType.URI,
      })
      for (const version of ['1', '2', '1', '2']) {
        const page = await get(`/v${version}/catalog`)
        expect(page.body).toEqual({ version: `v${version}`, run: 1 })
        expect(page.cacheControl).toBe('public, max-age=60')
      }
    })

    it('header versioning without CacheModule: versioned handlers are private', async () => {
      const get = await versionedApp(
        platform,
        catalogControllers(['1', '2'], options, made()),
        { type: VersioningType.HEADER, header: 'X-API-Version' },
        { cacheModule: false },
      )
      for (const version of ['1', '2', '1', '2']) {
        const page = await get('/catalog', { 'x-api-version': version })
        expect(page.body).toEqual({ version: `v${version}`, run: 1 })
        expect(page.cacheControl).toBe('private, max-age=60')
      }
    })
  })
})
