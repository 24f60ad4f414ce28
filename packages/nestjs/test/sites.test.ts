/**
 * What identifies a handler's entries, and what the Fastify platform adds around them, on real Nest
 * 11 apps over real HTTP: versioned copies of one controller, `@fastify/compress` with URL
 * invalidation, and headers that Fastify hooks set for each request.
 */
import 'reflect-metadata'
import type { AddressInfo } from 'node:net'
import { gunzipSync } from 'node:zlib'
import fastifyCompress from '@fastify/compress'
import { memoryBackend } from '@cache/memory'
import { Controller, Get, type INestApplication, Module, VersioningType } from '@nestjs/common'
import { NestFactory } from '@nestjs/core'
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify'
import { afterEach, describe, expect, it } from 'vitest'
import { CacheModule, CacheResponse, invalidateResponse } from '../src/index.js'
import { PLATFORMS, send, startApp } from './harness.js'

/** One controller class as a build emits it from a file: the same name and body for every call. */
function itemsControllerClass() {
  return class ItemsController {
    constructor(private readonly items: { find(): unknown }) {}
    find() {
      return this.items.find()
    }
  }
}

const apps: INestApplication[] = []
afterEach(async () => {
  for (const app of apps.splice(0)) await app.close()
})

describe.each(PLATFORMS)('two versions of one controller (platform-%s)', (platform) => {
  it('never share an entry, though their class and method bodies are the same', async () => {
    const V1 = itemsControllerClass()
    const V2 = itemsControllerClass()
    class ItemsServiceV1 {
      find() {
        return { api: 1 }
      }
    }
    class ItemsServiceV2 {
      find() {
        return { api: 2 }
      }
    }
    for (const [C, S, version] of [
      [V1, ItemsServiceV1, '1'],
      [V2, ItemsServiceV2, '2'],
    ] as const) {
      Reflect.defineMetadata('design:paramtypes', [S], C)
      const descriptor = Object.getOwnPropertyDescriptor(C.prototype, 'find')!
      Get()(C.prototype, 'find', descriptor)
      CacheResponse({ ttl: 60 })(C.prototype, 'find', descriptor)
      Controller({ path: 'items', version })(C)
    }
    class AppModule {}
    Module({
      imports: [CacheModule.forRoot({ backend: memoryBackend(), isGlobal: true })],
      controllers: [V1, V2],
      providers: [ItemsServiceV1, ItemsServiceV2],
    })(AppModule)
    const { app, url } = await startApp(platform, AppModule, (nest) => {
      nest.enableVersioning({ type: VersioningType.HEADER, header: 'x-api-version' })
    })
    apps.push(app)
    for (let i = 0; i < 2; i++) {
      expect(JSON.parse((await send(url, '/items', { headers: { 'x-api-version': '1' } })).text)).toEqual({
        api: 1,
      })
      expect(JSON.parse((await send(url, '/items', { headers: { 'x-api-version': '2' } })).text)).toEqual({
        api: 2,
      })
    }
  })
})

describe('Nest on Fastify', () => {
  it('invalidateResponse(url) reaches every Accept-Encoding variant with @fastify/compress', async () => {
    let version = 'v1'
    class ProductsController {
      list() {
        return { version, pad: 'x'.repeat(2000) }
      }
    }
    const descriptor = Object.getOwnPropertyDescriptor(ProductsController.prototype, 'list')!
    Get()(ProductsController.prototype, 'list', descriptor)
    CacheResponse({ ttl: 60 })(ProductsController.prototype, 'list', descriptor)
    Controller('products')(ProductsController)
    const backend = memoryBackend()
    class AppModule {}
    Module({
      imports: [CacheModule.forRoot({ backend, closeOnShutdown: false })],
      controllers: [ProductsController],
    })(AppModule)
    const { app, url, port } = await startApp('fastify', AppModule, async (nest) => {
      await (nest as NestFastifyApplication).register(fastifyCompress as never, { threshold: 0 })
    })
    apps.push(app)
    const read = async (encoding: string) => {
      const reply = await send(url, '/products', { headers: { 'accept-encoding': encoding } })
      const body = reply.headers['content-encoding'] === 'gzip' ? gunzipSync(reply.body) : reply.body
      return `${JSON.parse(body.toString()).version} ${reply.headers['cache-status']}`
    }
    for (let i = 0; i < 2; i++) {
      expect(await read('gzip')).toMatch(/^v1 /)
      expect(await read('identity')).toMatch(/^v1 /)
    }
    expect(await read('gzip')).toMatch(/^v1 .*hit/)
    version = 'v2'
    expect(await invalidateResponse('/products', { host: `127.0.0.1:${port}`, backend })).toBe(true)
    expect(await read('gzip')).toMatch(/^v2 /)
    expect(await read('identity')).toMatch(/^v2 /)
    await backend.close()
  })

  it('a hit sends the headers that hooks set for the current request, not those of the stored one', async () => {
    class ProductsController {
      list() {
        return { products: ['lamp'] }
      }
    }
    const descriptor = Object.getOwnPropertyDescriptor(ProductsController.prototype, 'list')!
    Get()(ProductsController.prototype, 'list', descriptor)
    CacheResponse({ ttl: 60 })(ProductsController.prototype, 'list', descriptor)
    Controller('products')(ProductsController)
    class AppModule {}
    Module({
      imports: [CacheModule.forRoot({ backend: memoryBackend(), isGlobal: true })],
      controllers: [ProductsController],
    })(AppModule)
    let n = 0
    const app = await NestFactory.create<NestFastifyApplication>(
      AppModule,
      new FastifyAdapter({ genReqId: () => `req-${++n}` }),
      { logger: false },
    )
    apps.push(app)
    app
      .getHttpAdapter()
      .getInstance()
      .addHook('onRequest', async (request, reply) => {
        reply.header('x-request-id', request.id)
      })
    await app.listen(0, '127.0.0.1')
    const url = `http://127.0.0.1:${(app.getHttpServer().address() as AddressInfo).port}`
    const statuses: string[] = []
    for (let i = 1; i <= 3; i++) {
      const reply = await send(url, '/products')
      expect(reply.headers['x-request-id']).toBe(`req-${i}`)
      expect(JSON.parse(reply.text)).toEqual({ products: ['lamp'] })
      statuses.push(String(reply.headers['cache-status']))
    }
    expect(statuses[2]).toMatch(/hit/)
  })

  // On a hit, onSend hooks do not run (the reply is answered before Fastify sends): a header they
  // would remove is sent. Only the miss is held here.
  it('a header a hook set and an onSend hook removed stays removed on the miss', async () => {
    class NotesController {
      list() {
        return { notes: [] }
      }
    }
    const descriptor = Object.getOwnPropertyDescriptor(NotesController.prototype, 'list')!
    Get()(NotesController.prototype, 'list', descriptor)
    CacheResponse({ ttl: 60 })(NotesController.prototype, 'list', descriptor)
    Controller('notes')(NotesController)
    class AppModule {}
    Module({
      imports: [CacheModule.forRoot({ backend: memoryBackend(), isGlobal: true })],
      controllers: [NotesController],
    })(AppModule)
    const { app, url } = await startApp('fastify', AppModule, (nest) => {
      const fastify = (nest.getHttpAdapter() as FastifyAdapter).getInstance()
      fastify.addHook('onRequest', async (_request, reply) => {
        reply.header('x-draft', 'yes')
      })
      fastify.addHook('onSend', async (_request, reply, payload) => {
        reply.removeHeader('x-draft')
        return payload
      })
    })
    apps.push(app)
    const reply = await send(url, '/notes')
    expect(JSON.parse(reply.text)).toEqual({ notes: [] })
    expect(reply.headers['cache-status']).toMatch(/stored/)
    expect(reply.headers['x-draft']).toBeUndefined()
  })
})
