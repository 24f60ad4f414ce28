/**
 * A header that a layer before the interceptor sets on every request (Express middleware, a
 * Fastify onRequest hook) and that a handler removes: a hit sends what the miss sent, on both
 * platforms, over real HTTP.
 */
import 'reflect-metadata'
import { Controller, Get, type INestApplication, Module, Res } from '@nestjs/common'
import type { FastifyAdapter } from '@nestjs/platform-fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CacheModule, CacheResponse } from '../src/index.js'
import { PLATFORMS, send, startApp } from './harness.js'

let runs = 0

@Controller()
class PagesController {
  /** A public page that drops the defaults the app sets on every response. */
  @Get('page')
  @CacheResponse({ ttl: 60 })
  page(@Res() res: any) {
    runs++
    res.removeHeader('x-robots-tag')
    res.removeHeader('cache-control')
    res.status(200).send(`public page ${runs}`)
  }
}

@Module({ imports: [CacheModule.forRoot({})], controllers: [PagesController] })
class PagesModule {}

describe.each(PLATFORMS)(
  'a header set before the interceptor and removed by the handler (platform-%s)',
  (platform) => {
    let app: INestApplication
    let url: string
    beforeAll(async () => {
      ;({ app, url } = await startApp(platform, PagesModule, (nest) => {
        if (platform === 'express') {
          nest.use((_req: unknown, res: any, next: () => void) => {
            res.setHeader('X-Robots-Tag', 'noindex')
            res.setHeader('Cache-Control', 'no-store')
            next()
          })
        } else {
          const fastify = (nest.getHttpAdapter() as FastifyAdapter).getInstance()
          fastify.addHook('onRequest', async (_request, reply) => {
            reply.header('x-robots-tag', 'noindex')
            reply.header('cache-control', 'no-store')
          })
        }
      }))
    })
    afterAll(async () => {
      await app.close()
    })

    it('does not come back on hits (X-Robots-Tag: noindex, Cache-Control: no-store)', async () => {
      const miss = await send(url, '/page')
      expect(miss.headers['x-robots-tag']).toBeUndefined()
      expect(miss.headers['cache-control']).toBeUndefined()
      const hit = await send(url, '/page')
      expect(String(hit.headers['cache-status'])).toMatch(/hit/)
      expect(hit.body.toString()).toBe(miss.body.toString())
      expect(hit.headers['x-robots-tag']).toBeUndefined()
      expect(hit.headers['cache-control']).toBeUndefined()
    })
  },
)

@Controller()
class PlainController {
  @Get('plain')
  @CacheResponse({ ttl: 60 })
  plain() {
    runs++
    return `plain page ${runs}`
  }
}

@Module({ imports: [CacheModule.forRoot({})], controllers: [PlainController] })
class PlainModule {}

describe('a header an onRequest hook set and an onSend hook removed (platform-fastify)', () => {
  let app: INestApplication
  let url: string
  beforeAll(async () => {
    ;({ app, url } = await startApp('fastify', PlainModule, (nest) => {
      const fastify = (nest.getHttpAdapter() as FastifyAdapter).getInstance()
      fastify.addHook('onRequest', async (_request, reply) => {
        reply.header('x-robots-tag', 'noindex')
      })
      fastify.addHook('onSend', async (_request, reply, payload) => {
        reply.removeHeader('x-robots-tag')
        return payload
      })
    }))
  })
  afterAll(async () => {
    await app.close()
  })

  it('is removed on hits too', async () => {
    const miss = await send(url, '/plain')
    expect(miss.headers['x-robots-tag']).toBeUndefined()
    const hit = await send(url, '/plain')
    expect(String(hit.headers['cache-status'])).toMatch(/hit/)
    expect(hit.headers['x-robots-tag']).toBeUndefined()
  })
})
