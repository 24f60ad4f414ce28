import { type IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http'
import type { CacheEvent, CacheEventName, CacheStats, Duration } from '@cache/core'
import { optionsArgument, type ResponseIndexEntry, type ResponseIndexOptions } from '@cache/http'
import { keepMetadata, nestInterceptor, useInterceptor } from './decorator-metadata.js'
import { isThenable, markCacheMiddleware } from './dispatch.js'
import { type CacheResponseOptions, resolveOptions } from './options.js'
import { ResponseCache } from './response-cache.js'
import { frontOf, identifyAs } from './site.js'

type Handler = (...args: any[]) => unknown

/**
 * What `cacheResponse(options)` returns: Express middleware, a handler wrapper, and a method
 * decorator (TC39 standard and legacy `experimentalDecorators`) in one function, plus
 * invalidation and stats for the responses it stores.
 */
export interface ResponseCacheHandler {
  /** As middleware: `app.get('/path', cacheResponse({ ttl: 60 }), handler)`. */
  (req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void): void
  /** As a wrapper: `app.get('/path', cacheResponse({ ttl: 60 })(handler))`. */
  <H extends Handler>(handler: H): H
  /** As a TC39 standard method decorator. */
  <H extends Handler>(method: H, context: ClassMethodDecoratorContext): H
  /** As a legacy (`experimentalDecorators`) method decorator. */
  (target: object, propertyKey: string | symbol, descriptor: PropertyDescriptor): PropertyDescriptor
  /** Hits, misses, sets and backend errors of this cache. */
  readonly stats: CacheStats
  on(event: CacheEventName, listener: (event: CacheEvent) => void): void
  off(event: CacheEventName, listener: (event: CacheEvent) => void): void
  /**
   * The backend key of a request; `undefined` when the request bypasses the cache (a host, port,
   * query or custom key the cache refuses).
   */
  keyFor(req: IncomingMessage): string | undefined
  /**
   * Removes the stored response for a URL (`https://host/path?query`, or a path with `host`),
   * with every variant its responses made with `Vary` and of the headers of the `vary` option,
   * in every process sharing the backend. `headers` name the variant whose entry is deleted at
   * once to free its space (the others stop being served). `true` if something was removed.
   */
  invalidate(url: string, options?: { host?: string; headers?: IncomingHttpHeaders }): Promise<boolean>
  /** Removes the stored response for a key built by the `key` option (without `keyPrefix`). */
  invalidateKey(key: string): Promise<boolean>
  /** Invalidates every response stored under this `keyPrefix`, in every process sharing the backend. */
  clear(): Promise<void>
  /**
   * A `node:http` request listener that answers fresh hits **before** `app` runs and hands every
   * other request to `app`: `http.createServer(cache.front(app))`. Only entries stored by a
   * `cacheResponse({ frontSkipsAllMiddleware: true })` are answered here, because **no middleware
   * runs for these hits**: neither app-level (CORS, helmet, sessions, logging, rate limits) nor
   * route-level (guards, API-key checks). Everything else goes to `app`. It skips Express's
   * per-request work on hits (3.96× apicache's req/s in `pnpm bench`, against 1.05× for the
   * middleware alone). Only in-process backends (memory) are consulted.
   */
  front(
    app: (req: IncomingMessage, res: ServerResponse) => void,
  ): (req: IncomingMessage, res: ServerResponse) => void
  /**
   * The responses stored under this cache's `keyPrefix` that are still served, each with its URL,
   * status, age, remaining TTL, tags and size: for debugging. Reads every key of the prefix from
   * the backend (`backend.keys()`), so it costs a scan; backends that cannot list keys
   * (memcached) throw `CacheUnsupportedError`.
   */
  responseIndex(options?: ResponseIndexOptions): AsyncIterableIterator<ResponseIndexEntry>
}

/**
 * Caches whole HTTP responses (GET, with HEAD answered from the GET entry). Usable as
 * middleware, as a handler wrapper and as a decorator on controller methods. `options` may be a
 * TTL alone: `cacheResponse(60)`, `cacheResponse('5m')`. See {@link CacheResponseOptions}. One
 * argument only: `cacheResponse(60, { vary })` is a `CacheConfigError` (write
 * `cacheResponse({ ttl: 60, vary })`), as is `null`.
 */
export function cacheResponse(options?: CacheResponseOptions | Duration): ResponseCacheHandler
export function cacheResponse(...args: unknown[]): ResponseCacheHandler {
  const engine = new ResponseCache(
    resolveOptions(optionsArgument<CacheResponseOptions>(args, 'cacheResponse')),
  )

  const wrap = <H extends Handler>(handler: H): H => {
    let identity: string
    const wrapped = function (this: unknown, ...args: unknown[]) {
      const [req, res, next] = args
      // Called by a framework with other arguments (a NestJS handler gets its parameters): the
      // interceptor registered below does the caching there; the method runs as written.
      if (!(req instanceof IncomingMessage) || !(res instanceof ServerResponse))
        return handler.apply(this, args)
      const result = engine.handle(
        req,
        res,
        (watch) => {
          // A handler that passes the request on (or fails through `next`) is not the whole answer.
          if (watch !== undefined && typeof next === 'function')
            args[2] = watch.handlerNext(next as (error?: unknown) => void)
          return handler.apply(this, args)
        },
        'handler',
        wrapped,
        identity,
        this,
      )
      if (typeof next === 'function' && isThenable(result)) {
        // Express 4 ignores a rejected promise: hand the error to the error handler, once.
        return result.then(undefined, (error: unknown) => (next as (error: unknown) => void)(error))
      }
      return result
    } as unknown as H
    Object.defineProperty(wrapped, 'name', { value: handler.name, configurable: true })
    // In a route's description (its site) the wrapper stands for the handler it wraps.
    identity = identifyAs(wrapped, handler)
    keepMetadata(handler, wrapped)
    useInterceptor(wrapped, interceptor)
    return wrapped
  }
  const interceptor = nestInterceptor(engine)

  const cacheHandler = ((a: any, b?: any, c?: any): any => {
    if (typeof b === 'string' || typeof b === 'symbol') {
      // Legacy decorator: (prototype, propertyKey, descriptor) => descriptor
      if (typeof c?.value !== 'function') throw new TypeError('@cacheResponse() decorates methods')
      c.value = wrap(c.value)
      return c
    }
    if (typeof a === 'function') {
      if (b !== undefined && typeof b === 'object' && 'kind' in b && b.kind !== 'method') {
        throw new TypeError(`@cacheResponse() decorates methods, not ${String(b.kind)}s`)
      }
      // A legacy class decorator gets the class alone: wrapping it would break `new`.
      if (/^class[\s{]/.test(Function.prototype.toString.call(a))) {
        throw new TypeError('@cacheResponse() decorates methods, not classes')
      }
      // A TC39 standard decorator (method, context) or a wrapper (handler). `context.metadata`
      // belongs to the class and is left as other decorators made it.
      return wrap(a)
    }
    // Middleware: (req, res, next)
    const result = engine.handle(a, b, () => c(), 'middleware', cacheHandler)
    if (isThenable(result)) result.then(undefined, c)
  }) as ResponseCacheHandler
  markCacheMiddleware(cacheHandler)

  Object.defineProperty(cacheHandler, 'stats', { get: () => engine.observer.stats })
  cacheHandler.on = (event, listener) => void engine.observer.on(event, listener)
  cacheHandler.off = (event, listener) => void engine.observer.off(event, listener)
  cacheHandler.keyFor = (req) => engine.keyFor(req)
  cacheHandler.invalidate = (url, opts = {}) => engine.http.invalidate(url, opts)
  cacheHandler.invalidateKey = (key) => engine.http.invalidateKey(key)
  cacheHandler.responseIndex = (opts) => engine.http.responseIndex(opts)
  cacheHandler.front = (app) => {
    const listener = (req: IncomingMessage, res: ServerResponse) => {
      if (!engine.serveFresh(req, res, app)) app(req, res)
    }
    frontOf(listener, app)
    return listener
  }
  cacheHandler.clear = () => engine.http.clear()
  return cacheHandler
}
