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
