import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Contestant, HttpService, Scenario } from '../contestant.js'
import { HTTP_BODY, TTL_SECONDS } from '../data.js'
import { ourMemory } from './memory.js'

/** How long the uncached route takes: a database query or a downstream call. */
export const ROUTE_MS = 20
export const PATH = '/users'

const BODY = Buffer.from(HTTP_BODY)

/** An Express app whose `/users` route takes {@link ROUTE_MS}, behind `middleware`. */
async function slowRoute(
  middleware: (req: any, res: any, next: () => void) => void,
  front?: (app: (req: IncomingMessage, res: ServerResponse) => void) => HttpService['handler'],
): Promise<HttpService> {
  const { default: express } = await import('express')
  let calls = 0
  const app = express()
  app.get(PATH, middleware, (_req, res) => {
    calls++
    setTimeout(() => res.type('json').send(HTTP_BODY), ROUTE_MS)
  })
  return { handler: front ? front(app) : app, routeCalls: () => calls, cached: true }
}

/**
 * A Fastify 5 app whose `/users` route takes {@link ROUTE_MS}, set up by `setup` (plugins) and
 * declared with `routeConfig`, as a request listener (Fastify's own handler, from `serverFactory`).
 */
async function slowFastifyRoute(
  setup: (app: import('fastify').FastifyInstance) => Promise<void>,
  routeConfig: Record<string, unknown>,
  cached: boolean,
): Promise<HttpService> {
  const { default: Fastify } = await import('fastify')
  const { createServer } = await import('node:http')
  let handler: HttpService['handler'] | undefined
  const app = Fastify({
    serverFactory: (h) => {
      handler = h
      return createServer()
    },
  })
  await setup(app)
  let calls = 0
  app.get(PATH, { config: routeConfig }, (_request, reply) => {
    calls++
    setTimeout(() => reply.type('application/json').send(HTTP_BODY), ROUTE_MS)
  })
  await app.ready()
  return { handler: handler!, routeCalls: () => calls, cached }
}

/**
 * A Hono app whose `/users` route takes {@link ROUTE_MS}, behind `middleware` when given, as a
 * request listener (`getRequestListener` of @hono/node-server, what its `serve` runs).
 */
async function slowHonoRoute(
  middleware: import('hono').MiddlewareHandler | undefined,
  cached: boolean,
): Promise<HttpService> {
  const { Hono } = await import('hono')
  const { getRequestListener } = await import('@hono/node-server')
  let calls = 0
  const app = new Hono()
  const route = async (c: import('hono').Context) => {
    calls++
    await new Promise((resolve) => setTimeout(resolve, ROUTE_MS))
    return c.json(JSON.parse(HTTP_BODY))
  }
  if (middleware) app.get(PATH, middleware, route)
  else app.get(PATH, route)
  return { handler: getRequestListener(app.fetch), routeCalls: () => calls, cached }
}

const contestants: Contestant[] = [
  {
    id: 'node-http',
    label: 'node:http (precomputed body)',
    role: 'limit',
    packages: [],
    workloads: ['http'],
    note: `Bare node:http writing a precomputed ${Math.round(BODY.length / 1024)} KB JSON body: the ceiling of any Node server.`,
    serve: async () => ({
      handler: (_req: IncomingMessage, res: ServerResponse) => {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': BODY.length })
        res.end(BODY)
      },
      routeCalls: () => 0,
      cached: false,
    }),
  },
  {
    id: 'express-bare',
    label: 'Express (precomputed body)',
    role: 'limit',
    packages: ['express'],
    workloads: ['http'],
    note: 'Express 5 with default settings (weak ETag on) sending the same precomputed body.',
    serve: async () => {
      const { default: express } = await import('express')
      const app = express()
      app.get(PATH, (_req, res) => {
        res.type('json').send(HTTP_BODY)
      })
      return { handler: app, routeCalls: () => 0, cached: false }
    },
  },
  {
    id: 'apicache',
    label: `apicache in front of a ${ROUTE_MS} ms route`,
    role: 'peer',
    packages: ['apicache', 'express'],
    workloads: ['http'],
    note:
      `apicache's in-memory store, \`middleware('${TTL_SECONDS} seconds')\`, on Express 5. ` +
      'Its README documents no speed setting: its costly options (`debug`, `trackPerformance`) are off by default, so its default is its fastest configuration.',
    serve: async () => {
      const { default: apicache } = await import('apicache')
      return slowRoute(apicache.middleware(`${TTL_SECONDS} seconds`))
    },
  },
  {
    id: 'cache-express',
    label: `\`cacheResponse\` in front of a ${ROUTE_MS} ms route`,
    role: 'ours',
    packages: ['@cache/express', '@cache/memory', '@cache/core', 'express'],
    needs: '@cache/express',
    workloads: ['http'],
    note: `\`cacheResponse({ ttl: ${TTL_SECONDS} })\` on an @cache/memory backend, on Express 5, with every safety rule of the route middleware on.`,
    serve: async () => {
      const { cacheResponse } = await import('@cache/express')
      return slowRoute(cacheResponse({ ttl: TTL_SECONDS, backend: await ourMemory() }))
    },
  },
  {
    id: 'cache-express-front',
    label: `\`cacheResponse\` + \`front(app)\` in front of a ${ROUTE_MS} ms route`,
    role: 'ours',
    packages: ['@cache/express', '@cache/memory', '@cache/core', 'express'],
    needs: '@cache/express',
    workloads: ['http'],
    note: 'The same route with `cacheResponse({ ttl, frontSkipsAllMiddleware: true })`, served through `http.createServer(cache.front(app))`: fresh hits are replayed before Express (and any middleware) runs.',
    serve: async () => {
      const { cacheResponse } = await import('@cache/express')
      const cache = cacheResponse({
        ttl: TTL_SECONDS,
        backend: await ourMemory(),
        frontSkipsAllMiddleware: true,
      })
      return slowRoute(cache, (app) => cache.front(app))
    },
  },
  {
    id: 'fastify-bare',
    label: 'Fastify (precomputed body)',
    role: 'limit',
    packages: ['fastify'],
    workloads: ['http'],
    note: 'Fastify 5 with default settings sending the same precomputed body.',
    serve: async () => {
      const { default: Fastify } = await import('fastify')
      const { createServer } = await import('node:http')
      let handler: HttpService['handler'] | undefined
      const app = Fastify({
        serverFactory: (h) => {
          handler = h
          return createServer()
        },
      })
      app.get(PATH, (_request, reply) => {
        reply.type('application/json').send(HTTP_BODY)
      })
      await app.ready()
      return { handler: handler!, routeCalls: () => 0, cached: false }
    },
  },
  {
    id: 'fastify-uncached',
    label: `Fastify, the ${ROUTE_MS} ms route uncached`,
    role: 'limit',
    packages: ['fastify'],
    workloads: ['http'],
    note: `The Fastify route itself, taking ${ROUTE_MS} ms per request, with no cache: what the cached rows save.`,
    serve: () => slowFastifyRoute(async () => {}, {}, false),
  },
  {
    id: 'fastify-caching',
    label: `@fastify/caching in front of a ${ROUTE_MS} ms route`,
    role: 'peer',
    packages: ['@fastify/caching', 'fastify'],
    workloads: ['http'],
    note:
      `\`@fastify/caching\` (Fastify's cache plugin) with \`privacy: 'public', expiresIn: ${TTL_SECONDS}\`. ` +
      'It stores no responses: it sets `Cache-Control` and answers `304` to a client whose `If-None-Match` it knows, so a load without conditional requests runs the route every time.',
    serve: () =>
      slowFastifyRoute(
        async (app) => {
          const { default: caching } = await import('@fastify/caching')
          await app.register(caching, { privacy: 'public', expiresIn: TTL_SECONDS })
        },
        {},
        false,
      ),
  },
  {
    id: 'cache-fastify',
    label: `\`@cache/fastify\` in front of a ${ROUTE_MS} ms route`,
    role: 'ours',
    packages: ['@cache/fastify', '@cache/memory', '@cache/core', 'fastify'],
    needs: '@cache/fastify',
    workloads: ['http'],
    note: `\`cachePlugin\` on an @cache/memory backend, the route with \`config: { cache: { ttl: ${TTL_SECONDS} } }\`, on Fastify 5, with every safety rule on.`,
    serve: async () => {
      const { cachePlugin } = await import('@cache/fastify')
      const backend = await ourMemory()
      return slowFastifyRoute(
        async (app) => {
          await app.register(cachePlugin, { backend })
        },
        { cache: { ttl: TTL_SECONDS } },
        true,
      )
    },
  },
  {
    id: 'hono-bare',
    label: 'Hono (precomputed body)',
    role: 'limit',
    packages: ['hono', '@hono/node-server'],
    workloads: ['http'],
    note: 'Hono 4 on @hono/node-server sending the same precomputed body with `c.body()`.',
    serve: async () => {
      const { Hono } = await import('hono')
      const { getRequestListener } = await import('@hono/node-server')
      const app = new Hono()
      app.get(PATH, (c) => c.body(HTTP_BODY, 200, { 'content-type': 'application/json' }))
      return { handler: getRequestListener(app.fetch), routeCalls: () => 0, cached: false }
    },
  },
  {
    id: 'hono-uncached',
    label: `Hono, the ${ROUTE_MS} ms route uncached`,
    role: 'limit',
    packages: ['hono', '@hono/node-server'],
    workloads: ['http'],
    note: `The Hono route itself, taking ${ROUTE_MS} ms per request, with no cache: what the cached row saves. Hono's own \`cache\` middleware needs the Web Cache API (\`caches\`), which Node does not have: on Node there is no usual Hono cache to compare with.`,
    serve: () => slowHonoRoute(undefined, false),
  },
  {
    id: 'cache-hono',
    label: `\`@cache/hono\` in front of a ${ROUTE_MS} ms route`,
    role: 'ours',
    packages: ['@cache/hono', '@cache/memory', '@cache/core', 'hono', '@hono/node-server'],
    needs: '@cache/hono',
    workloads: ['http'],
    note: `\`cacheResponse({ ttl: ${TTL_SECONDS} })\` on an @cache/memory backend, on Hono 4 over @hono/node-server, with every safety rule on.`,
    serve: async () => {
      const { cacheResponse } = await import('@cache/hono')
      return slowHonoRoute(cacheResponse({ ttl: TTL_SECONDS, backend: await ourMemory() }), true)
    },
  },
]

export const http: Scenario = { id: 'http', title: 'HTTP response caching (autocannon)', contestants }
