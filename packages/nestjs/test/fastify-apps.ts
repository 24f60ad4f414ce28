/** Nest applications on platform-fastify with `CacheModule` (memory), for the route-constraint tests. */
import 'reflect-metadata'
import { resetCache } from '@cache/core'
import { memoryBackend } from '@cache/memory'
import { type INestApplication, Module } from '@nestjs/common'
import { NestFactory } from '@nestjs/core'
import { FastifyAdapter } from '@nestjs/platform-fastify'
import type { FastifyInstance } from 'fastify'
import { CacheModule } from '../src/index.js'

const apps: INestApplication[] = []

/** Closes the applications {@link startOnFastify} started (an `afterEach`). */
export async function closeFastifyApps(): Promise<void> {
  for (const app of apps.splice(0)) await app.close()
  await resetCache()
}

export interface FastifyAppOptions {
  front?: boolean
  /** The FastifyAdapter's options. */
  fastify?: ConstructorParameters<typeof FastifyAdapter>[0]
  /** Runs on the Fastify instance before Nest is created. */
  instance?: (fastify: FastifyInstance) => void
  /** Runs once Nest started its modules, before Fastify is ready. */
  afterInit?: (fastify: FastifyInstance) => void
  /** Runs on the Nest application before it starts (`enableVersioning`). */
  before?: (app: INestApplication) => void
}

/** Starts `controllers` on Fastify, listening on a free loopback port; its base URL. */
export async function startOnFastify(
  controllers: Function[],
  options: FastifyAppOptions = {},
): Promise<string> {
  class AppModule {}
  Module({
    imports: [
      CacheModule.forRoot({
        backend: memoryBackend(),
        front: options.front ?? false,
        closeOnShutdown: false,
      }),
    ],
    controllers: controllers as never[],
  })(AppModule)
  const adapter = new FastifyAdapter(options.fastify)
  const fastify = adapter.getInstance<FastifyInstance>()
  options.instance?.(fastify)
  const app = await NestFactory.create(AppModule, adapter, { logger: false, abortOnError: false })
  apps.push(app)
  options.before?.(app)
  if (options.afterInit !== undefined) {
    await app.init()
    options.afterInit(fastify)
  }
  await app.listen(0, '127.0.0.1')
  return (await app.getUrl()).replace('[::1]', '127.0.0.1')
}
