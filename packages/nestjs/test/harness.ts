/**
 * Real Nest 11 apps on either platform, listening on a loopback port, for the tests: the safety
 * table's routes become a controller built at run time, one handler per route and method.
 */
import 'reflect-metadata'
import type { AddressInfo } from 'node:net'
import { Readable } from 'node:stream'
import { request } from 'node:http'
import type { IncomingHttpHeaders } from 'node:http'
import fastifyCompress from '@fastify/compress'
import type { HttpCacheHarness, SafetyApp, SafetyResponse, SafetyRoute } from '@cache/testing'
import {
  Controller,
  type INestApplication,
  Module,
  RequestMapping,
  RequestMethod,
  Req,
  Res,
} from '@nestjs/common'
import { NestFactory } from '@nestjs/core'
import { ExpressAdapter } from '@nestjs/platform-express'
import type { FastifyInstance } from 'fastify'
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify'
import compression from 'compression'
import {
  CacheModule,
  CacheResponse,
  invalidateResponse,
  invalidateResponsePrefix,
  invalidateTags,
} from '../src/index.js'

export type PlatformName = 'express' | 'fastify'
export const PLATFORMS: PlatformName[] = ['express', 'fastify']

/**
 * Starts `module` on `platform` at 127.0.0.1:`port` (default: a free one). `before` runs before
 * routes are registered.
 */
export async function startApp(
  platform: PlatformName,
  module: new (...args: never[]) => unknown,
  before?: (app: INestApplication) => void | Promise<void>,
  fastifyOptions?: ConstructorParameters<typeof FastifyAdapter>[0],
  listenPort = 0,
): Promise<{ app: INestApplication; url: string; port: number }> {
  const app =
    platform === 'express'
      ? await NestFactory.create(module, new ExpressAdapter(), { logger: false, abortOnError: false })
      : await NestFactory.create(module, new FastifyAdapter(fastifyOptions), {
          logger: false,
          abortOnError: false,
        })
  await before?.(app)
  await app.listen(listenPort, '127.0.0.1')
  const port = (app.getHttpServer().address() as AddressInfo).port
  return { app, url: `http://127.0.0.1:${port}`, port }
}

/** The safety table's routes on a Nest app of `platform`, `@CacheResponse` on each handler. */
export function nestHarness(platform: PlatformName): HttpCacheHarness {
  return {
    async mount(routes, setup) {
      class SafetyController {}
      const proto = SafetyController.prototype as unknown as Record<string, unknown>
      routes.forEach((route, i) => {
        for (const method of route.methods ?? ['GET']) {
          const name = `${method.toLowerCase()}${i}`
          proto[name] = async (req: any, res: any) => {
            const plan = await route.handle({
              method: req.method,
              url: platform === 'express' ? req.originalUrl : req.url,
              headers: req.headers,
            })
            await answer(platform, res, plan)
          }
          const descriptor = Object.getOwnPropertyDescriptor(proto, name)!
          RequestMapping({ path: route.path, method: RequestMethod[method as 'GET'] })(
            proto,
            name,
            descriptor,
          )
          CacheResponse({
            ttl: route.cache.ttl,
            keyPrefix: route.cache.keyPrefix,
            now: setup.now,
            ...(route.cache.staleWhileRevalidate === undefined
              ? {}
              : { staleWhileRevalidate: route.cache.staleWhileRevalidate }),
            ...(route.cache.tags === undefined ? {} : { tags: route.cache.tags }),
            ...(route.cache.vary === undefined ? {} : { vary: route.cache.vary }),
          })(proto, name, descriptor)
          Req()(proto, name, 0)
          Res()(proto, name, 1)
        }
      })
      Controller()(SafetyController)
      class SafetyModule {}
      Module({
        imports: [CacheModule.forRoot({ backend: setup.backend, closeOnShutdown: false })],
        controllers: [SafetyController],
      })(SafetyModule)

      const { app, url } = await startApp(platform, SafetyModule as never, async (app) => {
        if (platform === 'express') {
          // Nest runs middleware before interceptors: compression wraps the response either way.
          if (setup.compression !== undefined) app.use(compression())
          for (const route of routes) if (route.before) app.use(route.path, expressBefore(route.before))
        } else {
          const fastify = (app.getHttpAdapter() as FastifyAdapter).getInstance()
          // An onSend hook: compresses what the handler sends, whatever the order it was registered in.
          if (setup.compression !== undefined)
            await (app as NestFastifyApplication).register(fastifyCompress as never, { threshold: 1024 })
          fastify.addHook('onRequest', async (request, reply) => {
            const before = routes.find((r) => r.path === request.url.split('?')[0])?.before
            if (before) for (const [name, value] of Object.entries(before)) reply.header(name, value)
          })
        }
      })
      const route = (prefix: string): SafetyRoute | undefined =>
        routes.find((r) => r.cache.keyPrefix === prefix)
      const safetyApp: SafetyApp = {
        url,
        async invalidate(path, host) {
          for (const r of routes) {
            await invalidateResponse(path, {
              host,
              backend: setup.backend,
              keyPrefix: r.cache.keyPrefix,
              ...(r.cache.vary ? { vary: r.cache.vary } : {}),
            })
          }
        },
        async invalidatePrefix(keyPrefix) {
          if (route(keyPrefix) === undefined) throw new Error(`no route with keyPrefix ${keyPrefix}`)
          await invalidateResponsePrefix(keyPrefix, { backend: setup.backend })
        },
        async invalidateTags(tags) {
          await invalidateTags([...tags], { backend: setup.backend })
        },
        async close() {
          await app.close()
        },
      }
      return safetyApp
    },
  }
}

function expressBefore(headers: Record<string, string | string[]>) {
  return (_req: unknown, res: { append(name: string, value: string | string[]): void }, next: () => void) => {
    for (const [name, value] of Object.entries(headers)) res.append(name, value)
    next()
  }
}

/** The handler's answer through the platform's own response API, as a `@Res()` handler writes it. */
async function answer(platform: PlatformName, res: any, plan: SafetyResponse): Promise<void> {
  if (plan.delay) await sleep(plan.delay)
  if (platform === 'express') {
    res.status(plan.status ?? 200)
    for (const [name, value] of Object.entries(plan.headers ?? {})) res.append(name, value)
    if (plan.declaredLength !== undefined) res.setHeader('content-length', String(plan.declaredLength))
    if (plan.chunks === undefined) return void res.end(plan.body)
    for (const [i, chunk] of plan.chunks.entries()) {
      if (i > 0 && plan.failAfterFirstChunk) return void res.destroy(new Error('source failed'))
      if (i > 0 && plan.chunkDelay) await sleep(plan.chunkDelay)
      if (res.destroyed) return
      res.write(chunk)
    }
    return void res.end()
  }
  res.code(plan.status ?? 200)
  for (const [name, value] of Object.entries(plan.headers ?? {})) res.header(name, value)
  if (plan.declaredLength !== undefined) {
    // Fastify corrects a wrong Content-Length it is given: a handler that lies writes the raw response.
    res.hijack()
    res.raw.writeHead(plan.status ?? 200, {
      ...res.getHeaders(),
      'content-length': String(plan.declaredLength),
    })
    return void res.raw.end(plan.body)
  }
  if (plan.chunks === undefined) return void res.send(plan.body ?? '')
  const chunks = plan.chunks
  const stream = new Readable({ read() {} })
  void (async () => {
    for (const [i, chunk] of chunks.entries()) {
      if (i > 0 && plan.failAfterFirstChunk) return void stream.destroy(new Error('source failed'))
      if (i > 0 && plan.chunkDelay) await sleep(plan.chunkDelay)
      stream.push(chunk)
    }
    stream.push(null)
  })()
  return void res.send(stream)
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

export interface Reply {
  status: number
  headers: IncomingHttpHeaders
  body: Buffer
  text: string
}

/** One request over a fresh connection, bounded at 5 s. */
export function send(
  url: string,
  path: string,
  options: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<Reply> {
  const { hostname, port } = new URL(url)
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: hostname,
        port,
        path,
        method: options.method ?? 'GET',
        headers: options.headers,
        agent: false,
        timeout: 5000,
      },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (chunk: Buffer) => chunks.push(chunk))
        res.on('error', reject)
        res.on('end', () => {
          const body = Buffer.concat(chunks)
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body, text: body.toString() })
        })
      },
    )
    req.on('timeout', () => req.destroy(new Error(`timed out: ${path}`)))
    req.on('error', reject)
    req.end(options.body)
  })
}

/** A Fastify constraint strategy named `name` routing on the `header` request header. */
export function headerStrategy(
  name: string,
  header: string,
): Parameters<FastifyInstance['addConstraintStrategy']>[0] {
  return {
    name,
    storage() {
      const handlers = new Map<unknown, any>()
      return {
        get: (value) => handlers.get(value) ?? null,
        set: (value, handler) => void handlers.set(value, handler),
      }
    },
    deriveConstraint: (req) => req.headers[header] as string,
    mustMatchWhenDerived: false,
  }
}
