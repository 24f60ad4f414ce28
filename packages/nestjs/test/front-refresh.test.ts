/**
 * `staleWhileRevalidate` on a handler the front door answers (`front: true`,
 * `frontSkipsAllMiddleware`): a stale hit passes the front (it answers fresh hits only), the
 * interceptor replays the stale entry and refreshes it with a copy of the request, which never
 * passes the front. The copy must store under the key the front answers from, so the next request
 * is fresh, on both platforms, with and without URI versioning.
 */
import 'reflect-metadata'
import { resetCache } from '@cache/core'
import { memoryBackend } from '@cache/memory'
import { Controller, Get, type INestApplication, Module, VersioningType } from '@nestjs/common'
import { afterEach, describe, expect, it } from 'vitest'
import { CacheModule, CacheResponse } from '../src/index.js'
import { PLATFORMS, send, startApp } from './harness.js'

let now = Date.now()
let runs = 0

@Controller('items')
class ItemsController {
  @Get()
  @CacheResponse({ ttl: 1, staleWhileRevalidate: 30, frontSkipsAllMiddleware: true, now: () => now })
  list() {
    return { runs: ++runs }
  }
}

function itemsModule() {
  class ItemsModule {}
  Module({
    imports: [CacheModule.forRoot({ backend: memoryBackend(), front: true, closeOnShutdown: false })],
    controllers: [ItemsController],
  })(ItemsModule)
  return ItemsModule
}

const apps: INestApplication[] = []
afterEach(async () => {
  for (const app of apps.splice(0)) await app.close()
  await resetCache()
  now = Date.now()
  runs = 0
})

/** Waits for the background refresh to have run the handler `n` times (bounded at 2 s). */
async function handlerRan(n: number): Promise<void> {
  for (let i = 0; i < 200 && runs < n; i++) await new Promise((resolve) => setTimeout(resolve, 10))
}

describe.each(PLATFORMS)('a stale hit of a handler the front answers (platform-%s)', (platform) => {
  it.each(['none', 'uri'])(
    'refreshes the entry the front serves: the next request is fresh (versioning: %s)',
    async (versioning) => {
      const { app, url } = await startApp(platform, itemsModule(), (nest) => {
        if (versioning === 'uri') nest.enableVersioning({ type: VersioningType.URI, defaultVersion: '1' })
      })
      apps.push(app)
      const path = versioning === 'uri' ? '/v1/items' : '/items'
      expect(JSON.parse((await send(url, path)).text)).toEqual({ runs: 1 })
      expect(String((await send(url, path)).headers['cache-status'])).toMatch(/hit/)
      now += 2_000
      const stale = await send(url, path)
      expect(JSON.parse(stale.text)).toEqual({ runs: 1 })
      await handlerRan(2)
      const fresh = await send(url, path)
      expect(JSON.parse(fresh.text)).toEqual({ runs: 2 })
      expect(String(fresh.headers['cache-status'])).toMatch(/hit; ttl=1/)
      expect(JSON.parse((await send(url, path)).text)).toEqual({ runs: 2 })
      expect(runs).toBe(2)
    },
  )
})
