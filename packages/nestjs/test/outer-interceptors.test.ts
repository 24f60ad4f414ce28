/**
 * Interceptors that run outside `@CacheResponse` (global ones, one on the controller when the cache
 * is on the method) never see a hit's result: what they add after the handler on a miss must not
 * be stored and replayed to other requests. Real Nest apps on both platforms, over real HTTP.
 */
import 'reflect-metadata'
import { randomUUID } from 'node:crypto'
import {
  type CallHandler,
  Controller,
  type ExecutionContext,
  Get,
  type INestApplication,
  Injectable,
  Module,
  type NestInterceptor,
  UseInterceptors,
} from '@nestjs/common'
import { APP_INTERCEPTOR } from '@nestjs/core'
import { map, tap } from 'rxjs'
import { afterEach, describe, expect, it } from 'vitest'
import { CacheModule, CacheResponse, CacheResponseInterceptor } from '../src/index.js'
import { PLATFORMS, type Reply, send, startApp } from './harness.js'

/** The common "TransformInterceptor": the result wrapped with this request's id, also sent as a header. */
@Injectable()
class RequestIdEnvelope implements NestInterceptor {
  intercept(context: ExecutionContext, next: CallHandler) {
    const id = randomUUID()
    const res = context.switchToHttp().getResponse()
    return next.handle().pipe(
      map((data) => {
        res.header('x-request-id', id)
        return { requestId: id, data }
      }),
    )
  }
}

/** Sets a per-request header once the handler produced its result, and leaves the body alone. */
@Injectable()
class RequestIdHeader implements NestInterceptor {
  intercept(context: ExecutionContext, next: CallHandler) {
    const res = context.switchToHttp().getResponse()
    return next.handle().pipe(tap(() => res.header('x-request-id', randomUUID())))
  }
}

/** Writes this request's id into the handler's own result object (no new object). */
@Injectable()
class StampInPlace implements NestInterceptor {
  intercept(_context: ExecutionContext, next: CallHandler) {
    return next.handle().pipe(
      map((data: Record<string, unknown>) => {
        data.requestId = randomUUID()
        return data
      }),
    )
  }
}

/** Logs, and copies the result into an equal plain object (as `ClassSerializerInterceptor` does). */
@Injectable()
class HarmlessCopy implements NestInterceptor {
  intercept(_context: ExecutionContext, next: CallHandler) {
    return next.handle().pipe(map((data) => JSON.parse(JSON.stringify(data))))
  }
}

@Controller('items')
class ItemsController {
  @Get()
  @CacheResponse({ ttl: 60 })
  list() {
    return { items: [1, 2, 3] }
  }
}

@Controller('stamped')
@UseInterceptors(StampInPlace)
class StampedController {
  @Get()
  @CacheResponse({ ttl: 60 })
  list() {
    return { items: [1, 2, 3] }
  }
}

const cacheModule = CacheModule.forRoot({ backend: 'memory' })

let app: INestApplication | undefined
afterEach(async () => {
  await app?.close()
  app = undefined
})

async function twice(url: string, path: string): Promise<[Reply, Reply]> {
  const first = await send(url, path)
  const second = await send(url, path)
  return [first, second]
}

describe.each(PLATFORMS)('interceptors outside @CacheResponse (platform-%s)', (platform) => {
  it('never replays the request id a global interceptor (APP_INTERCEPTOR) wraps the body in', async () => {
    @Module({
      imports: [cacheModule],
      controllers: [ItemsController],
      providers: [{ provide: APP_INTERCEPTOR, useClass: RequestIdEnvelope }],
    })
    class AppModule {}
    const started = await startApp(platform, AppModule)
    app = started.app
    const [first, second] = await twice(started.url, '/items')
    expect(first.status).toBe(200)
    expect(second.status).toBe(200)
    expect(second.headers['x-request-id']).not.toBe(first.headers['x-request-id'])
    expect(JSON.parse(second.text).requestId).toBe(second.headers['x-request-id'])
    expect(JSON.parse(second.text).data).toEqual({ items: [1, 2, 3] })
    expect(second.headers['cache-status']).toMatch(/detail=outer-interceptor/)
  })

  it('never replays a header that app.useGlobalInterceptors() sets after the handler', async () => {
    @Module({ imports: [cacheModule], controllers: [ItemsController] })
    class AppModule {}
    const started = await startApp(platform, AppModule, (nest) => {
      nest.useGlobalInterceptors(new RequestIdHeader())
    })
    app = started.app
    const [first, second] = await twice(started.url, '/items')
    expect(first.headers['x-request-id']).toBeDefined()
    expect(second.headers['x-request-id']).toBeDefined()
    expect(second.headers['x-request-id']).not.toBe(first.headers['x-request-id'])
    expect(second.headers['cache-status']).toMatch(/detail=outer-interceptor/)
  })

  it("never replays what a controller's interceptor writes into the handler's result in place", async () => {
    @Module({ imports: [cacheModule], controllers: [StampedController] })
    class AppModule {}
    const started = await startApp(platform, AppModule)
    app = started.app
    const [first, second] = await twice(started.url, '/stamped')
    expect(JSON.parse(second.text).requestId).toBeDefined()
    expect(JSON.parse(second.text).requestId).not.toBe(JSON.parse(first.text).requestId)
    expect(second.headers['cache-status']).toMatch(/detail=outer-interceptor/)
  })

  it('still stores under a global interceptor whose output is the handler’s result', async () => {
    @Module({
      imports: [cacheModule],
      controllers: [ItemsController],
      providers: [{ provide: APP_INTERCEPTOR, useClass: HarmlessCopy }],
    })
    class AppModule {}
    const started = await startApp(platform, AppModule)
    app = started.app
    const [first, second] = await twice(started.url, '/items')
    expect(first.headers['cache-status']).toMatch(/stored/)
    expect(second.headers['cache-status']).toMatch(/hit/)
    expect(JSON.parse(second.text)).toEqual({ items: [1, 2, 3] })
  })

  it('stores the output of global interceptors registered after CacheResponseInterceptor (they run inside it)', async () => {
    @Module({
      imports: [cacheModule],
      controllers: [ItemsController],
      providers: [
        { provide: APP_INTERCEPTOR, useClass: CacheResponseInterceptor },
        { provide: APP_INTERCEPTOR, useClass: RequestIdEnvelope },
      ],
    })
    class AppModule {}
    const started = await startApp(platform, AppModule)
    app = started.app
    const [first, second] = await twice(started.url, '/items')
    expect(first.headers['cache-status']).toMatch(/stored/)
    expect(second.headers['cache-status']).toMatch(/hit/)
    expect(second.text).toBe(first.text)
  })
})
