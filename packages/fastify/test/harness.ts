import { Readable } from 'node:stream'
import type { SafetyResponse, HttpCacheHarness } from '@cache/testing'
import compress from '@fastify/compress'
import Fastify, { type FastifyReply } from 'fastify'
import { cachePlugin } from '../src/index.js'

/** The safety table's routes on a real Fastify 5 server, each with `config.cache`. */
export const fastifyHarness: HttpCacheHarness = {
  async mount(routes, setup) {
    const app = Fastify()
    if (setup.compression === 'before') await app.register(compress, { threshold: 1024 })
    await app.register(cachePlugin, { backend: setup.backend, now: setup.now })
    if (setup.compression === 'after') await app.register(compress, { threshold: 1024 })
    for (const route of routes) {
      const before = route.before
      app.route({
        method: [...(route.methods ?? ['GET'])],
        url: route.path,
        config: {
          cache: {
            ttl: route.cache.ttl,
            keyPrefix: route.cache.keyPrefix,
            ...(route.cache.staleWhileRevalidate === undefined
              ? {}
              : { staleWhileRevalidate: route.cache.staleWhileRevalidate }),
            ...(route.cache.tags === undefined ? {} : { tags: route.cache.tags }),
            ...(route.cache.vary === undefined ? {} : { vary: route.cache.vary }),
          },
        },
        // A hook before the cache: it runs on every request, hits included.
        ...(before === undefined
          ? {}
          : {
              onRequest: (_request, reply, done) => {
                for (const [name, value] of Object.entries(before)) reply.header(name, value)
                done()
              },
            }),
        handler: async (request, reply) =>
          answer(
            reply,
            await route.handle({ method: request.method, url: request.url, headers: request.headers }),
          ),
      })
    }
    await app.listen({ port: 0, host: '127.0.0.1' })
    const address = app.server.address()
    const port = typeof address === 'object' && address !== null ? address.port : 0
    return {
      url: `http://127.0.0.1:${port}`,
      invalidate: async (path, host) => {
        await app.cache.invalidate(path, { host })
      },
      invalidatePrefix: (keyPrefix) => app.cache.invalidatePrefix(keyPrefix),
      invalidateTags: (tags) => app.cache.invalidateTags(tags),
      close: async () => {
        app.server.closeAllConnections()
        await app.close()
      },
    }
  },
}

async function answer(reply: FastifyReply, plan: SafetyResponse): Promise<FastifyReply> {
  if (plan.delay) await sleep(plan.delay)
  reply.code(plan.status ?? 200)
  for (const [name, value] of Object.entries(plan.headers ?? {})) reply.header(name, value)
  if (plan.declaredLength !== undefined) reply.header('content-length', String(plan.declaredLength))
  if (plan.chunks === undefined) return reply.send(plan.body ?? '')
  return reply.send(Readable.from(chunks(plan)))
}

async function* chunks(plan: SafetyResponse): AsyncGenerator<Buffer> {
  for (const [i, chunk] of (plan.chunks ?? []).entries()) {
    if (i > 0 && plan.failAfterFirstChunk) throw new Error('source failed')
    if (i > 0 && plan.chunkDelay) await sleep(plan.chunkDelay)
    yield Buffer.from(chunk)
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
