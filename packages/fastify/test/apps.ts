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
 * A constraint strategy named `name` choosing routes by the `header` request header (a header a
 * CDN does not see). `mustMatchWhenDerived`: a request naming a value no route declares gets no
 * route rather than the unconstrained one.
 */
export function headerStrategy(name: string, header: string, mustMatchWhenDerived = false) {
  return {
    name,
    validate: () => true,
    mustMatchWhenDerived,
    storage() {
      const routes = new Map<string, unknown>()
      return {
        get: (value: string) => (routes.get(value) ?? null) as never,
        set: (value: string, store: unknown) => {
          routes.set(value, store)
        },
      }
    },
    deriveConstraint: (request: { headers: Record<string, string | string[] | undefined> }) =>
      request.headers[header] as string,
  }
}

/** A `tenant` constraint strategy routing on the `x-tenant` request header. */
export function tenantStrategy(mustMatchWhenDerived = false) {
  return headerStrategy('tenant', 'x-tenant', mustMatchWhenDerived)
}
