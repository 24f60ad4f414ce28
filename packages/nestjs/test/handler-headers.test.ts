/**
 * A header the handler sets (`res.header`) at the value a layer before the interceptor had set on the
 * miss is the handler's own: hits replay it, on both platforms, over real HTTP. (`@Header` is set
 * by Nest before the interceptors run, on hits too.) A `@Head` handler beside a cached `@Get`
 * answers HEAD: the interceptor's entries are per handler.
 */
import 'reflect-metadata'
import { Controller, Get, Head, type INestApplication, Module, Res } from '@nestjs/common'
import type { FastifyAdapter } from '@nestjs/platform-fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CacheModule, CacheResponse } from '../src/index.js'
import { PLATFORMS, send, startApp } from './harness.js'

@Controller()
class FrenchController {
  @Get('fr-only')
  @CacheResponse({ ttl: 60 })
  page(@Res({ passthrough: true }) res: any) {
    res.header('Content-Language', 'fr')
    return '<p>Bonjour</p>'
  }

  /** A HEAD handler of its own beside the cached GET. */
  @Head('doc')
  denied(@Res() res: any) {
    res.status(403).header('x-head', 'denied').send()
  }

  @Get('doc')
  @CacheResponse({ ttl: 60 })
  doc() {
    return 'public doc'
  }
}

@Module({ imports: [CacheModule.forRoot({})], controllers: [FrenchController] })
class FrenchModule {}

describe.each(PLATFORMS)('headers of the handler (platform-%s)', (platform) => {
  let app: INestApplication
  let url: string
  beforeAll(async () => {
    ;({ app, url } = await startApp(platform, FrenchModule, (nest) => {
      // i18n before the interceptor: the client's language, on every request.
      if (platform === 'express') {
        nest.use((req: any, res: any, next: () => void) => {
          res.setHeader('Content-Language', String(req.headers['accept-language'] ?? 'en').slice(0, 2))
          next()
        })
      } else {
        const fastify = (nest.getHttpAdapter() as FastifyAdapter).getInstance()
        fastify.addHook('onRequest', async (request, reply) => {
          reply.header('content-language', String(request.headers['accept-language'] ?? 'en').slice(0, 2))
        })
      }
    }))
  })
  afterAll(async () => {
    await app.close()
  })

  it('replays a Content-Language the handler set to the value a layer before had set on the miss', async () => {
    const miss = await send(url, '/fr-only', { headers: { 'accept-language': 'fr' } })
    expect(miss.headers['content-language']).toBe('fr')
    const hit = await send(url, '/fr-only', { headers: { 'accept-language': 'en' } })
    expect(String(hit.headers['cache-status'])).toMatch(/hit/)
    expect(hit.headers['content-language']).toBe('fr')
  })

  it('answers HEAD with the @Head handler beside a cached @Get', async () => {
    expect((await send(url, '/doc', { method: 'HEAD' })).status).toBe(403)
    await send(url, '/doc')
    expect(String((await send(url, '/doc')).headers['cache-status'])).toMatch(/hit/)
    const head = await send(url, '/doc', { method: 'HEAD' })
    expect(head.status).toBe(403)
    expect(head.headers['x-head']).toBe('denied')
  })
})
