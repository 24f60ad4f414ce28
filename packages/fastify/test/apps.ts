import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { afterEach } from 'vitest'

const apps: FastifyInstance[] = []
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()))
})

/** A Fastify app, closed after the test that made it. */
export function app(options?: FastifyServerOptions): FastifyInstance {
  const fastify = Fastify(options)
  apps.push(fastify)
  return fastify
}

/**
 * A custom constraint strategy choosing routes by the `x-tenant` request header (a header a CDN
 * does not see). `mustMatchWhenDerived`: a request naming a tenant no route declares gets no route.
 */
export function tenantStrategy(mustMatchWhenDerived = false) {
  return {
    name: 'tenant',
    validate: () => true,
    mustMatchWhenDerived,
    storage() {
      const routes = new Map<string, unknown>()
      return {
        get: (tenant: string) => (routes.get(tenant) ?? null) as never,
        set: (tenant: string, store: unknown) => {
          routes.set(tenant, store)
        },
      }
    },
    deriveConstraint: (request: { headers: Record<string, string | string[] | undefined> }) =>
      request.headers['x-tenant'] as string,
  }
}
