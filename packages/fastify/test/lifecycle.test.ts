import { request } from 'node:http'
import { memoryBackend } from '@cache/memory'
import Fastify, {
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type preHandlerHookHandler,
  type RouteOptions,
} from 'fastify'
import fp from 'fastify-plugin'
import { afterEach, describe, expect, it } from 'vitest'
import { cachePlugin } from '../src/index.js'

const apps: FastifyInstance[] = []
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()))
})

async function listen(app: FastifyInstance): Promise<string> {
  apps.push(app)
  return app.listen({ port: 0, host: '127.0.0.1' })
}

interface Answer {
  status: number
  body: string
  cacheStatus: string
}

/** A GET over real HTTP with the headers as given (fetch does not send a Host of its own choosing). */
function get(url: string, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    request(url, { headers, agent: false }, (response) => {
      const chunks: Buffer[] = []
      response.on('data', (chunk: Buffer) => chunks.push(chunk))
      response.on('end', () =>
        resolve({
          status: response.statusCode ?? 0,
          body: Buffer.concat(chunks).toString(),
          cacheStatus: String(response.headers['cache-status']),
        }),
      )
      response.on('error', reject)
    })
      .on('error', reject)
      .end()
  })
}

declare module 'fastify' {
  interface FastifyContextConfig {
    roles?: string[]
  }
}

const roleCheck =
  (roles: string[]) =>
  async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    if (!roles.includes(String(request.headers['x-role']))) await reply.code(403).send('forbidden')
  }

/** The ways a plugin's `onRoute` hook adds a guard to a route's `preHandler`. */
const addGuard: Record<string, (route: RouteOptions, guard: preHandlerHookHandler) => void> = {
  'assigns a new list': (route, guard) => {
    const before = route.preHandler === undefined ? [] : [route.preHandler].flat()
    route.preHandler = [...before, guard]
  },
  'pushes onto the list it reads': (route, guard) => {
    if (route.preHandler === undefined) route.preHandler = []
    else if (!Array.isArray(route.preHandler)) route.preHandler = [route.preHandler]
    ;(route.preHandler as preHandlerHookHandler[]).push(guard)
  },
  'replaces it with its own function': (route, guard) => {
    route.preHandler = guard
  },
}

describe('a guard that another plugin adds to a route from onRoute', () => {
  for (const [spelling, add] of Object.entries(addGuard))
    for (const order of ['after', 'before'] as const)
      it(`runs before every hit when the plugin ${spelling}, registered ${order} the cache`, async () => {
        const roleGuard = fp(async (app: FastifyInstance) => {
          app.addHook('onRoute', (route) => {
            const roles = route.config?.roles
            if (roles) add(route, roleCheck(roles) as preHandlerHookHandler)
          })
        })
        const app = Fastify()
        if (order === 'before') await app.register(roleGuard)
        await app.register(cachePlugin, { backend: memoryBackend(), ttl: 60 })
        if (order === 'after') await app.register(roleGuard)
        app.get('/admin/report', { config: { cache: true, roles: ['admin'] } }, async () => 'SECRET report')
        const url = `${await listen(app)}/admin/report`
        expect((await get(url)).status).toBe(403)
        expect((await get(url, { 'x-role': 'admin' })).body).toBe('SECRET report')
        const again = await get(url, { 'x-role': 'admin' })
        expect(again.cacheStatus).toMatch(/hit/)
        for (const headers of [{ 'x-role': 'guest' }, {}] as Record<string, string>[]) {
          const other = await get(url, headers)
          expect(other.status).toBe(403)
          expect(other.body).not.toContain('SECRET')
        }
      })
})
