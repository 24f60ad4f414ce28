/**
 * Interceptors that run outside `@CacheResponse` (global ones, one on the controller when the cache
 * is on the method) never see a hit's result: what they add after the handler on a miss must not
 * be stored and replayed to other requests. Real Nest apps on both platforms, over real HTTP.
 */
import 'reflect-metadata'
import { randomUUID } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import {
  type ArgumentsHost,
  type CallHandler,
  Catch,
  Controller,
  type ExceptionFilter,
  type ExecutionContext,
  Get,
  HttpCode,
  type INestApplication,
  Injectable,
  Module,
  type NestInterceptor,
  Render,
  StreamableFile,
  UseInterceptors,
} from '@nestjs/common'
import { APP_FILTER, APP_INTERCEPTOR } from '@nestjs/core'
import { catchError, map, of, tap } from 'rxjs'
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

/** Sets status 203 for `x-user: alice`, after the handler (`after`) or before it, with the platform's method or on the Node response. */
function perUserStatus(when: 'after' | 'before', spelling: 'method' | 'node') {
  @Injectable()
  class PerUserStatus implements NestInterceptor {
    intercept(context: ExecutionContext, next: CallHandler) {
      const http = context.switchToHttp()
      const res = http.getResponse()
      const alice = http.getRequest().headers['x-user'] === 'alice'
      const set = () => {
        if (!alice) return
        if (spelling === 'node') (res.raw ?? res).statusCode = 203
        else if (typeof res.code === 'function') res.code(203)
        else res.status(203)
      }
      if (when === 'before') set()
      return next.handle().pipe(tap(() => when === 'after' && set()))
    }
  }
  return PerUserStatus
}

@Controller('partial')
class PartialController {
  @Get()
  @HttpCode(203)
  @CacheResponse({ ttl: 60 })
  list() {
    return { items: [1, 2, 3] }
  }
}

@Controller('codes')
class CodesController {
  @Get('partial')
  @HttpCode(203)
  @CacheResponse({ ttl: 60 })
  partial() {
    return { items: [1, 2, 3] }
  }

  @Get('plain')
  @CacheResponse({ ttl: 60 })
  plain() {
    return { items: [4, 5, 6] }
  }
}

@Controller('file')
class FileController {
  @Get()
  @CacheResponse({ ttl: 60 })
  file() {
    return new StreamableFile(Buffer.from('file body'), { type: 'text/plain' })
  }
}

describe.each(PLATFORMS)('a status set outside @CacheResponse (platform-%s)', (platform) => {
  const as = (url: string, user: string) => send(url, '/items', { headers: { 'x-user': user } })

  it.each([
    ['after', 'method'],
    ['after', 'node'],
    ['before', 'method'],
    ['before', 'node'],
  ] as const)(
    'never replays a per-user status a global interceptor sets %s the handler (%s)',
    async (when, spelling) => {
      @Module({
        imports: [cacheModule],
        controllers: [ItemsController],
        providers: [{ provide: APP_INTERCEPTOR, useClass: perUserStatus(when, spelling) }],
      })
      class AppModule {}
      const started = await startApp(platform, AppModule)
      app = started.app
      const alice = await as(started.url, 'alice')
      expect(alice.status).toBe(203)
      expect(alice.headers['cache-status']).toMatch(/detail=outer-interceptor/)
      const bob = await as(started.url, 'bob')
      expect(bob.status).toBe(200)
      expect(bob.headers['cache-status']).toMatch(/stored/)
      const bobAgain = await as(started.url, 'bob')
      expect(bobAgain.status).toBe(200)
      expect(bobAgain.headers['cache-status']).toMatch(/hit/)
      if (when === 'before') {
        // Alice's status is her own: she is not answered with Bob's entry either.
        const aliceAgain = await as(started.url, 'alice')
        expect(aliceAgain.status).toBe(203)
        expect(aliceAgain.headers['cache-status']).toMatch(/detail=outer-interceptor/)
      }
    },
  )

  it('never replays a per-user status set after a handler that returns a StreamableFile', async () => {
    @Module({
      imports: [cacheModule],
      controllers: [FileController],
      providers: [{ provide: APP_INTERCEPTOR, useClass: perUserStatus('after', 'method') }],
    })
    class AppModule {}
    const started = await startApp(platform, AppModule)
    app = started.app
    const file = (user: string) => send(started.url, '/file', { headers: { 'x-user': user } })
    const alice = await file('alice')
    expect(alice.status).toBe(203)
    expect(alice.text).toBe('file body')
    expect(alice.headers['cache-status']).toMatch(/detail=outer-interceptor/)
    const bob = await file('bob')
    expect(bob.status).toBe(200)
    expect(bob.headers['cache-status']).toMatch(/stored/)
    const bobAgain = await file('bob')
    expect(bobAgain.status).toBe(200)
    expect(bobAgain.text).toBe('file body')
    expect(bobAgain.headers['cache-status']).toMatch(/hit/)
  })

  it('stores and replays each handler of one controller with its own @HttpCode or 200', async () => {
    @Module({ imports: [cacheModule], controllers: [CodesController] })
    class AppModule {}
    const started = await startApp(platform, AppModule)
    app = started.app
    for (const [path, status] of [
      ['/codes/partial', 203],
      ['/codes/plain', 200],
      ['/codes/partial', 203],
    ] as const) {
      const [first, second] = await twice(started.url, path)
      expect(first.status).toBe(status)
      expect(second.status).toBe(status)
      expect(second.headers['cache-status']).toMatch(/hit/)
    }
  })

  it("stores and replays the handler's own @HttpCode, with a global interceptor around it", async () => {
    @Module({
      imports: [cacheModule],
      controllers: [PartialController],
      providers: [{ provide: APP_INTERCEPTOR, useClass: perUserStatus('after', 'method') }],
    })
    class AppModule {}
    const started = await startApp(platform, AppModule)
    app = started.app
    const [first, second] = await twice(started.url, '/partial')
    expect(first.status).toBe(203)
    expect(first.headers['cache-status']).toMatch(/stored/)
    expect(second.status).toBe(203)
    expect(second.headers['cache-status']).toMatch(/hit/)
  })
})

/** Answers every error with 200 and a fallback body (a "degraded mode" filter). */
@Catch()
class DegradedFilter implements ExceptionFilter {
  catch(_error: unknown, host: ArgumentsHost) {
    const res = host.switchToHttp().getResponse()
    if (typeof res.code === 'function') res.code(200).send({ degraded: true })
    else res.status(200).json({ degraded: true })
  }
}

/** Turns an error of the handler into a fallback result, which Nest sends with 200. */
@Injectable()
class FallbackOnError implements NestInterceptor {
  intercept(_context: ExecutionContext, next: CallHandler) {
    return next.handle().pipe(catchError(() => of({ degraded: true })))
  }
}

/** A handler that fails once (synchronously or by rejecting), then recovers. */
function failingOnce(how: 'throw' | 'reject') {
  let calls = 0
  @Controller('prices')
  class PricesController {
    @Get()
    @CacheResponse({ ttl: 60 })
    get() {
      if (calls++ === 0) {
        const error = new Error('database timeout, once')
        if (how === 'throw') throw error
        return Promise.reject(error)
      }
      return how === 'throw' ? { price: 10 } : Promise.resolve({ price: 10 })
    }
  }
  return PricesController
}

describe.each(PLATFORMS)('an error answered with 200 outside @CacheResponse (platform-%s)', (platform) => {
  it.each([
    ['a global exception filter (APP_FILTER)', 'throw'],
    ['a global exception filter (APP_FILTER)', 'reject'],
    ["an outer interceptor's catchError fallback", 'throw'],
    ["an outer interceptor's catchError fallback", 'reject'],
  ] as const)('never stores what %s answers after the handler fails (%s)', async (by, how) => {
    @Module({
      imports: [cacheModule],
      controllers: [failingOnce(how)],
      providers: [
        by.startsWith('a global')
          ? { provide: APP_FILTER, useClass: DegradedFilter }
          : { provide: APP_INTERCEPTOR, useClass: FallbackOnError },
      ],
    })
    class AppModule {}
    const started = await startApp(platform, AppModule)
    app = started.app
    const [first, second] = await twice(started.url, '/prices')
    expect(first.status).toBe(200)
    expect(JSON.parse(first.text)).toEqual({ degraded: true })
    expect(first.headers['cache-status']).toMatch(/detail=handler-error/)
    expect(JSON.parse(second.text)).toEqual({ price: 10 })
    expect(second.headers['cache-status']).toMatch(/stored/)
  })

  it('never stores the 200 a filter from app.useGlobalFilters() answers an error with', async () => {
    @Module({ imports: [cacheModule], controllers: [failingOnce('throw')] })
    class AppModule {}
    const started = await startApp(platform, AppModule, (nest) => {
      nest.useGlobalFilters(new DegradedFilter())
    })
    app = started.app
    const [first, second] = await twice(started.url, '/prices')
    expect(JSON.parse(first.text)).toEqual({ degraded: true })
    expect(JSON.parse(second.text)).toEqual({ price: 10 })
  })
})

/** A result `JSON.stringify` (and so Nest) cannot serialize, once: then the handler recovers. */
const UNSERIALIZABLE: Record<string, () => unknown> = {
  'a BigInt': () => ({ orders: 42n }),
  'a circular object': () => {
    const orders: Record<string, unknown> = { orders: 42 }
    orders.self = orders
    return orders
  },
  'a toJSON that throws': () => ({
    orders: 42,
    toJSON() {
      throw new Error('cannot serialize, once')
    },
  }),
}

function unserializableOnce(make: () => unknown) {
  let calls = 0
  @Controller('stats')
  class StatsController {
    @Get()
    @CacheResponse({ ttl: 60 })
    get() {
      return calls++ === 0 ? make() : { orders: 42 }
    }
  }
  return StatsController
}

/** What `ClassSerializerInterceptor` does with a class-transformer getter that throws, once. */
@Injectable()
class SerializerThrowingOnce implements NestInterceptor {
  private calls = 0
  intercept(_context: ExecutionContext, next: CallHandler) {
    return next.handle().pipe(
      map((data) => {
        if (this.calls++ === 0) throw new Error('a @Transform failed, once')
        return JSON.parse(JSON.stringify(data))
      }),
    )
  }
}

describe.each(PLATFORMS)(
  'a result Nest fails to send, answered 200 by a filter (platform-%s)',
  (platform) => {
    async function expectNotStored(url: string, detail: RegExp) {
      const [first, second] = await twice(url, '/stats')
      expect(first.status).toBe(200)
      expect(JSON.parse(first.text)).toEqual({ degraded: true })
      expect(first.headers['cache-status']).toMatch(detail)
      expect(first.headers['cache-status']).not.toMatch(/stored/)
      expect(JSON.parse(second.text)).toEqual({ orders: 42 })
      expect(second.headers['cache-status']).toMatch(/stored/)
      const third = await send(url, '/stats')
      expect(JSON.parse(third.text)).toEqual({ orders: 42 })
      expect(third.headers['cache-status']).toMatch(/hit/)
    }

    it.each(Object.keys(UNSERIALIZABLE))(
      'never stores the fallback sent when the handler returns %s',
      async (what) => {
        @Module({
          imports: [cacheModule],
          controllers: [unserializableOnce(UNSERIALIZABLE[what]!)],
          providers: [{ provide: APP_FILTER, useClass: DegradedFilter }],
        })
        class AppModule {}
        const started = await startApp(platform, AppModule)
        app = started.app
        await expectNotStored(started.url, /detail=handler-error/)
      },
    )

    it('never stores the fallback sent when a global serializing interceptor throws', async () => {
      @Module({
        imports: [cacheModule],
        controllers: [unserializableOnce(() => ({ orders: 42 }))],
        providers: [
          { provide: APP_FILTER, useClass: DegradedFilter },
          { provide: APP_INTERCEPTOR, useClass: SerializerThrowingOnce },
        ],
      })
      class AppModule {}
      const started = await startApp(platform, AppModule)
      app = started.app
      await expectNotStored(started.url, /detail=/)
    })

    it("never stores the fallback sent when the platform's serialization throws once", async () => {
      @Module({
        imports: [cacheModule],
        controllers: [unserializableOnce(() => ({ orders: 42 }))],
        providers: [{ provide: APP_FILTER, useClass: DegradedFilter }],
      })
      class AppModule {}
      let calls = 0
      const started = await startApp(platform, AppModule, (nest) => {
        const instance = nest.getHttpAdapter().getInstance()
        if (platform === 'express')
          // Express's res.json runs the app's `json replacer`.
          instance.set('json replacer', (key: string, value: unknown) => {
            if (key === 'orders' && calls++ === 0) throw new Error('replacer failed, once')
            return value
          })
        // A Fastify hook between the result and the bytes: its error goes to Nest's filter.
        else
          instance.addHook(
            'preSerialization',
            async (_request: unknown, _reply: unknown, payload: unknown) => {
              if (calls++ === 0) throw new Error('preSerialization failed, once')
              return payload
            },
          )
      })
      app = started.app
      await expectNotStored(started.url, /detail=handler-error/)
    })
  },
)

describe('a page rendered by @Render (platform-express)', () => {
  it('stores a page that an asynchronous view engine sends after render returns', async () => {
    @Controller('page')
    class PageController {
      @Get()
      @Render('page')
      @CacheResponse({ ttl: 60 })
      get() {
        return { name: 'world' }
      }
    }
    @Module({ imports: [cacheModule], controllers: [PageController] })
    class AppModule {}
    const started = await startApp('express', AppModule, (nest) => {
      const express = nest.getHttpAdapter().getInstance()
      express.engine('txt', (_path: string, locals: { name: string }, done: (e: null, s: string) => void) =>
        setImmediate(() => done(null, `hello ${locals.name}`)),
      )
      express.set('view engine', 'txt')
      writeFileSync(`${tmpdir()}/page.txt`, '')
      express.set('views', tmpdir())
    })
    app = started.app
    const [first, second] = await twice(started.url, '/page')
    expect(first.text).toBe('hello world')
    expect(first.headers['cache-status']).toMatch(/stored/)
    expect(second.text).toBe('hello world')
    expect(second.headers['cache-status']).toMatch(/hit/)
  })
})
