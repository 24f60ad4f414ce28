import { randomUUID } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import { type CacheBackend, CacheConfigError, type Duration, getBackend, invalidateTags } from '@cache/core'
import {
  answerFromResult,
  HttpCache,
  type HttpCacheOptions,
  type HttpRequestView,
  invalidateResponsePrefix,
  type LookupContext,
  type LookupResult,
  type Refresh,
  recordNodeResponse,
} from '@cache/http'
import type {
  FastifyInstance,
  FastifyPluginCallback,
  FastifyReply,
  FastifyRequest,
  HookHandlerDoneFunction,
  RouteOptions,
} from 'fastify'
import fp from 'fastify-plugin'

/**
 * Options of one route's cache, in `config: { cache }` (and defaults for every route in the
 * plugin's options): the options of `@cache/http`, the same as `@cache/express`'s. The `key`,
 * `tags` and `bypass` functions receive the Fastify request.
 */
export type RouteCacheOptions = HttpCacheOptions<FastifyRequest>

/**
 * A route's `config.cache`: `true` (the plugin's defaults), a TTL (`60`, `'5m'`), options, or
 * `false` (not cached, the default for a route without it).
 */
export type RouteCacheConfig = boolean | Duration | RouteCacheOptions

/** Options of {@link cachePlugin}: defaults for every cached route, and where the API goes. */
export interface CachePluginOptions extends RouteCacheOptions {
  /**
   * The name of the instance decorator holding {@link FastifyResponseCache}. Another plugin that
   * decorates `cache` (`@fastify/caching` does) makes registration fail with a
   * `CacheConfigError` naming this option; choose another name then (typed as `cache` only).
   * Default: `'cache'`.
   */
  decorateAs?: string
}

/** `fastify.cache`: invalidation across every cached route. */
export interface FastifyResponseCache {
  /**
   * Removes the stored responses of a URL (`https://host/path?query`, or a path with `host`),
   * every variant, under every `keyPrefix` and backend of the app's cached routes, in every
   * process sharing the backend. Headers of the routes' `vary` option: give them in `headers`.
   * `true` if an entry was there.
   */
  invalidate(url: string, options?: { host?: string; headers?: IncomingHttpHeaders }): Promise<boolean>
  /** Invalidates every response stored under `prefix` (`api` reaches `api:users`, not `apiv2`). */
  invalidatePrefix(prefix: string): Promise<void>
  /** Invalidates every response stored with one of these tags. */
  invalidateTags(tags: readonly string[]): Promise<void>
  /** The caches of the routes, one per `config.cache` (stats, events, `invalidateKey`). */
  readonly routes: ReadonlyMap<string, HttpCache<FastifyRequest>>
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Cache this route's responses: `true`, a TTL, or options (see `@cache/fastify`). */
    cache?: RouteCacheConfig
  }
  interface FastifyInstance {
    /** Invalidation of the responses the cache plugin stored. */
    cache: FastifyResponseCache
  }
}

/** Request headers a stale-while-revalidate refresh drops: it asks for the whole, current response. */
const CONDITIONAL = [
  'if-none-match',
  'if-modified-since',
  'if-match',
  'if-unmodified-since',
  'if-range',
  'range',
]

const register: FastifyPluginCallback<CachePluginOptions> = (fastify, options, done) => {
  let defaults: RouteCacheOptions
  const decorateAs = options?.decorateAs ?? 'cache'
  try {
    defaults = pluginDefaults(options)
    if (typeof decorateAs !== 'string' || decorateAs === '')
      throw new CacheConfigError(
        'decorateAs',
        `expected a non-empty string, got ${JSON.stringify(decorateAs)}`,
      )
    if (fastify.hasDecorator(decorateAs))
      throw new CacheConfigError(
        'decorateAs',
        `fastify.${decorateAs} is already decorated by another plugin (@fastify/caching decorates "cache"): choose another name`,
      )
  } catch (error) {
    done(error as Error)
    return
  }
  const caches = new Map<string, HttpCache<FastifyRequest>>()
  const byConfig = new WeakMap<object, HttpCache<FastifyRequest>>()
  // The header that marks a refresh the plugin runs through `inject`: a name no client can guess.
  const refreshHeader = `x-cache-refresh-${randomUUID()}`
  const refreshes = new Map<string, Refresh>()

  fastify.addHook('onRoute', function (this: FastifyInstance, route) {
    const config = route.config?.cache
    if (config === undefined || config === false) return
    if (!answersGet(route)) return
    const holder = route.config as object
    let cache = byConfig.get(holder)
    if (cache === undefined) {
      const own = { ...defaults, ...routeOptions(config, route.url) }
      // @fastify/compress adds `Vary: Accept-Encoding` only to the responses it compresses: an
      // identity response stored first would then be replayed to every client, gzip-capable or
      // not. Keyed on Accept-Encoding, each encoding keeps its own entry.
      if (this.hasReplyDecorator('compress'))
        own.vary = [...new Set([...(own.vary ?? []), 'accept-encoding'])]
      cache = new HttpCache<FastifyRequest>(own)
      byConfig.set(holder, cache)
      caches.set(`${route.url}${caches.has(route.url) ? ` #${caches.size}` : ''}`, cache)
    }
    const site = siteOf(route)
    const lookup = lookupHook(fastify, cache, site, refreshHeader, refreshes)
    // Last before the handler: every hook of the route (a guard in onRequest, preValidation or
    // preHandler, at any level) ran for a hit as it did for the response stored.
    route.preHandler = [...toList(route.preHandler), lookup]
  })

  const distinct = () => {
    const seen = new Map<string, HttpCache<FastifyRequest>>()
    const backends = new Set<CacheBackend>()
    for (const cache of caches.values()) {
      const s = cache.settings
      backends.add(s.backend ?? getBackend())
      seen.set(`${s.keyPrefix}\n${s.vary.join(',')}\n${backendId(s.backend)}`, cache)
    }
    return { caches: [...seen.values()], backends: [...backends] }
  }

  const api: FastifyResponseCache = {
    async invalidate(url, invalidateOptions = {}) {
      const results = await Promise.all(
        distinct().caches.map((cache) => cache.invalidate(url, invalidateOptions)),
      )
      return results.some(Boolean)
    },
    async invalidatePrefix(prefix) {
      await Promise.all(distinct().backends.map((backend) => invalidateResponsePrefix(prefix, { backend })))
    },
    async invalidateTags(tags) {
      await Promise.all(distinct().backends.map((backend) => invalidateTags([...tags], { backend })))
    },
    routes: caches,
  }
  fastify.decorate(decorateAs, api)
  done()
}

/**
 * The response cache for Fastify 5. Register it before the routes it caches (it sees routes
 * through `onRoute`); a route is cached when its `config.cache` is set:
 *
 * ```ts
 * await app.register(cachePlugin, { backend: memoryBackend() })
 * app.get('/products', { config: { cache: { ttl: 60, tags: ['products'] } } }, handler)
 * ```
 *
 * A hit is answered in the route's last `preHandler` hook, once every hook before it (guards
 * included) let the request through, with one write of the stored status, headers and bytes.
 * Storability is decided on the response as the client receives it, after every `onSend` hook.
 */
export const cachePlugin = fp(
  // Named as exported: fastify-plugin returns this function itself.
  function cachePlugin(fastify, options, done) {
    register(fastify, options, done)
  } as FastifyPluginCallback<CachePluginOptions>,
  { fastify: '5.x', name: '@cache/fastify' },
)

/** Checks the plugin's options now: a bad one throws a `CacheConfigError` at registration. */
function pluginDefaults(options: CachePluginOptions): RouteCacheOptions {
  if (options === null || typeof options !== 'object')
    throw new CacheConfigError('options', `expected an object, got ${String(options)}`)
  const { decorateAs: _, ...defaults } = options
  // Built once to check every option (ttl, keyPrefix, statuses, …) when the plugin registers.
  new HttpCache(defaults)
  return defaults
}

function routeOptions(config: RouteCacheConfig, url: string): RouteCacheOptions {
  if (config === true) return {}
  if (typeof config === 'number' || typeof config === 'string') return { ttl: config }
  if (config !== null && typeof config === 'object') return config
  throw new CacheConfigError(
    'config.cache',
    `route ${url}: expected true, a TTL or cache options, got ${JSON.stringify(config)}`,
  )
}

function answersGet(route: RouteOptions): boolean {
  const methods = Array.isArray(route.method) ? route.method : [route.method]
  return methods.some((method) => method === 'GET' || method === 'HEAD')
}

/**
 * Where the cache sits: one site for the app (a URL reaches one route), except for a route with
 * constraints (host, version), which shares its URL with other routes.
 */
function siteOf(route: RouteOptions): string {
  const constraints = route.constraints
  if (constraints === undefined || Object.keys(constraints).length === 0) return ''
  return `${route.url} ${JSON.stringify(constraints, (_, value) => (value instanceof RegExp ? String(value) : value))}`
}

const backendIds = new WeakMap<CacheBackend, number>()
let nextBackendId = 1
/** A number per backend object, to invalidate each distinct (backend, keyPrefix, vary) once. */
function backendId(backend: CacheBackend | undefined): number {
  if (backend === undefined) return 0
  let id = backendIds.get(backend)
  if (id === undefined) {
    id = nextBackendId++
    backendIds.set(backend, id)
  }
  return id
}

function toList<T>(value: T | readonly T[] | undefined): T[] {
  if (value === undefined) return []
  return Array.isArray(value) ? [...value] : [value as T]
}

function lookupHook(
  fastify: FastifyInstance,
  cache: HttpCache<FastifyRequest>,
  site: string,
  refreshHeader: string,
  refreshes: Map<string, Refresh>,
) {
  return function cacheLookup(request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) {
    const view = viewOf(request, site, refreshHeader, refreshes)
    const context: LookupContext = {
      revalidate: (refresh) => {
        const id = randomUUID()
        refreshes.set(id, refresh)
        const headers: Record<string, string | string[]> = {}
        for (const [name, value] of Object.entries(request.headers))
          if (value !== undefined && !CONDITIONAL.includes(name)) headers[name] = value
        headers[refreshHeader] = id
        fastify
          .inject({ method: 'GET', url: request.url, headers })
          .catch((error: unknown) => refresh.fail(error))
          .finally(() => refreshes.delete(id))
        return undefined
      },
    }
    let result: LookupResult | Promise<LookupResult>
    try {
      result = cache.lookup(view, context)
    } catch (error) {
      done(error as Error)
      return
    }
    if (result instanceof Promise) result.then((settled) => act(settled, reply, done), done)
    else act(result, reply, done)
  }
}

function act(result: LookupResult, reply: FastifyReply, done: HookHandlerDoneFunction): void {
  if (result.kind === 'hit' || result.kind === 'not-modified') {
    reply.hijack()
    // Headers the hooks before this one set on the reply (CORS, security headers) go out as they
    // would without the cache; the stored ones replace those of the same name.
    for (const [name, value] of Object.entries(reply.getHeaders()))
      if (value !== undefined) reply.raw.setHeader(name, value)
    answerFromResult(reply.raw, result)
    done()
    return
  }
  if (result.kind === 'miss') recordNodeResponse(reply.raw, result)
  answerFromResult(reply.raw, result)
  done()
}

function viewOf(
  request: FastifyRequest,
  site: string,
  refreshHeader: string,
  refreshes: Map<string, Refresh>,
): HttpRequestView<FastifyRequest> {
  let refresh: Refresh | undefined
  const id = request.headers[refreshHeader]
  if (id !== undefined) {
    refresh = refreshes.get(String(id))
    delete request.headers[refreshHeader]
    delete request.raw.headers[refreshHeader]
  }
  return {
    method: request.method,
    url: request.url,
    headers: request.headers,
    protocol: request.protocol,
    host: request.host,
    site,
    raw: request,
    ...(refresh === undefined ? {} : { refresh }),
  }
}
