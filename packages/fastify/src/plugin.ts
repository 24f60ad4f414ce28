import { createHash, randomUUID } from 'node:crypto'
import type { IncomingHttpHeaders, OutgoingHttpHeaders, ServerResponse } from 'node:http'
import {
  type CacheBackend,
  CacheConfigError,
  CacheMissingPackageError,
  type Duration,
  getBackend,
  invalidateTags,
} from '@cache/core'
import {
  assertKnownOptions,
  isOptionsObject,
  nearestName,
  optionNames,
  optionValue,
  settingNames,
  toBackend,
} from '@cache/core/backend'
import {
  answerFromResult,
  describeFunction,
  fastifyArrivedLines,
  fastifyHostKeyPart,
  fastifyInstanceOptions,
  fastifyParsesQueriesItself,
  fastifyQueryReplaced,
  fastifyRewrite,
  fastifySharedServerBypass,
  fastifyTarget,
  HANDLER_ERROR,
  HTTP_CACHE_OPTION_NAMES,
  HttpCache,
  type HttpCacheOptions,
  type HttpCacheSettings,
  type HttpRequestView,
  invalidateResponse,
  invalidateResponsePrefix,
  type LookupContext,
  injectRefresh,
  type LookupResult,
  type MissResult,
  noteFastifyAppPrefix,
  noteFastifyQueryBeforeValidation,
  noteFastifyTargets,
  type Refresh,
  recordNodeResponse,
  refreshArrivedLines,
  resolveHttpCacheOptions,
  takeFastifyRefresh,
  trackFastifyReplyHeaders,
} from '@cache/http'
import type {
  RegisterOptions,
  FastifyInstance,
  FastifyPluginCallback,
  FastifyReply,
  FastifyRequest,
  HookHandlerDoneFunction,
  preHandlerHookHandler,
  preValidationHookHandler,
  RouteHandlerMethod,
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

/** The flag fastify-cli's test helper (`build()`) sets in the options of the app it registers. */
interface FastifyCliOptions {
  skipOverride?: boolean
}

/**
 * What a plugin's options may name: its own, those `fastify.register` reads from the same object
 * (`RegisterOptions` of Fastify 5: `prefix`, `logLevel`, `logSerializers`), and fastify-cli's
 * `skipOverride`, which an app's options (and so autoload's shared ones) may carry. These are
 * not cache options and do not reach the routes' caches.
 */
const PLUGIN_OPTION_NAMES = optionNames<CachePluginOptions & RegisterOptions & FastifyCliOptions>({
  ...HTTP_CACHE_OPTION_NAMES,
  decorateAs: true,
  prefix: true,
  logLevel: true,
  logSerializers: true,
  skipOverride: true,
})

const ROUTE_OPTION_NAMES = optionNames<RouteCacheOptions>(HTTP_CACHE_OPTION_NAMES)

const INVALIDATE_NAMES = optionNames<{ host?: string; headers?: IncomingHttpHeaders }>({
  host: true,
  headers: true,
})

/** `fastify.cache`: invalidation across every cached route. */
export interface FastifyResponseCache {
  /**
   * Removes the stored responses of a URL (`https://host/path?query`, or a path with `host`),
   * every variant (of the response's `Vary` and of the headers of the routes' `vary` option),
   * under every `keyPrefix` and backend of the app's cached routes, in every process sharing the
   * backend. `headers` name the variant whose entry is deleted at once to free its space (the
   * others stop being served). Reaches the plugin's backend (its `backend` option, else the default
   * cache) too, with no cached route resolved yet (a writer service, a call before `ready()`).
   *
   * Resolves `true` when this process deleted a stored entry of the URL: one made at a site this
   * process has seen (its own routes', or those of another app of this process). `false` says
   * nothing about other processes: their entries of the URL stop being served all the same (the
   * URL's generation is renewed in the backend), but this process cannot tell whether they had
   * one, so a writer service invalidating its readers' pages gets `false`.
   */
  invalidate(url: string, options?: { host?: string; headers?: IncomingHttpHeaders }): Promise<boolean>
  /**
   * Invalidates every response stored under `prefix` (`api` reaches `api:users`, not `apiv2`), in
   * the backends of the cached routes and the plugin's own (see {@link invalidate}).
   */
  invalidatePrefix(prefix: string): Promise<void>
  /**
   * Invalidates every response stored with one of these tags, in the backends of the cached routes
   * and the plugin's own (see {@link invalidate}).
   */
  invalidateTags(tags: readonly string[]): Promise<void>
  /**
   * The caches of the routes, one per `config.cache` (stats, events, `clear`, `invalidateKey`).
   * The object handed out for a route stays the same when the route's cache is made again at its
   * first request (an `onReady` hook changed its options): it reaches the cache in use.
   */
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

/**
 * A cached route's cache, made once every `onRoute` hook ran (when the app gets ready): a plugin
 * registered after this one may still change the route's `config.cache` (add a `vary`) or its
 * constraints. One per `onRoute` call: routes declared with one options object (a shared
 * constant, a prefixed plugin's `/` and its HEAD twin) are each resolved from their own.
 */
interface RouteCache {
  /** The route as `onRoute` hooks see it: its `config.cache` is read from here when final. */
  readonly route: RouteOptions
  /**
   * Its URL as announced to `onRoute` hooks: Fastify changes a prefixed plugin's `/` GET route's
   * to `/api/` afterwards, when it adds that spelling (announced as `/api`).
   */
  readonly announced: string
  cache: HttpCache<FastifyRequest> | undefined
  /** The route's identity (methods, URL, constraints, handler, hooks), taken when final. */
  site: () => string
  /** A request with a query string bypasses (the app parses queries itself, no `key`). */
  refuseOwnParser: boolean
  /** A request whose query a hook replaced or changed bypasses (no `key`). */
  refuseReplaced: boolean
  /**
   * Its `config.cache` was resolved again at its first request (an `onReady` hook registered
   * after this plugin's may have changed it); later changes are not seen.
   */
  settled: boolean
  /** The routes of its identity (itself, its HEAD twin): they share entries, resolved together. */
  group: RouteCache[]
  /** The options its cache was made from, as they were then (reused while they are the same). */
  options: Record<string, unknown> | undefined
  /** Its cache's name in `fastify.cache.routes`. */
  name: string | undefined
  /** The hook that answers its requests from the cache: its last `preHandler`. */
  lookup: preHandlerHookHandler | undefined
  /**
   * Fastify chooses it (or another route of its method and URL) by a request header, which a CDN
   * does not see: `cacheControl` sends it `private`. Decided when the app gets ready.
   */
  hiddenSelection: boolean
  /** Which requests are the route's own (not a copy's): see {@link markRoute}. */
  readonly mark: RouteMark
}

const register: FastifyPluginCallback<CachePluginOptions> = (fastify, options, done) => {
  let defaults: RouteCacheOptions
  let pluginBackend: CacheBackend | undefined
  let decorateAs: string
  try {
    ;({ defaults, backend: pluginBackend } = pluginDefaults(options))
    const name: unknown = options.decorateAs ?? 'cache'
    if (typeof name !== 'string' || name === '')
      throw new CacheConfigError('decorateAs', `expected a non-empty string, got ${JSON.stringify(name)}`)
    if (fastify.hasDecorator(name))
      throw new CacheConfigError(
        'decorateAs',
        `fastify.${name} is already decorated by another plugin (@fastify/caching decorates "cache"): choose another name`,
      )
    decorateAs = name
  } catch (error) {
    done(error as Error)
    return
  }
  const ownQueryParser = fastifyParsesQueriesItself(fastify)
  // The target each request was sent with and routed by, noted before any hook can rewrite it.
  noteFastifyTargets(fastify)
  const caches = new Map<string, HttpCache<FastifyRequest>>()
  // What `app.cache.routes` hands out: one object per name, whatever cache the route has now.
  const handedOut = new Map<string, HttpCache<FastifyRequest>>()
  const routeCaches: RouteCache[] = []
  // GET routes seen without `config.cache`, until the app is ready: a later `onRoute` hook that
  // sets one comes after the hooks the cache adds to a route (see the `onReady` hook).
  let uncached: { route: RouteOptions; announced: string }[] = []
  // The header that marks a refresh the plugin runs through `inject`: a name no client can guess.
  const refreshHeader = `x-cache-refresh-${randomUUID()}`
  const refreshes = new Map<string, Refresh>()
  const hostStrategy = hostStrategyWatch(fastify)

  fastify.addHook('onRoute', function (this: FastifyInstance, route) {
    hostStrategy.seen(route)
    // Fastify declares a GET route's HEAD route right after it built the GET route's context.
    if (route.method === 'HEAD') noteBuilt(route)
    // A copy of a cached route (`this.route({ ...route, constraints })` in a later plugin's
    // onRoute hook) holds the original's hooks: it is looked up by itself or not at all.
    if (!Object.hasOwn(route, CACHED_BY)) {
      dropCopiedHooks(route)
      disownCopiedMark(route)
    }
    if (!answersGet(route)) return
    const config = route.config?.cache
    if (config === undefined || config === false) {
      uncached.push({ route, announced: route.url })
      return
    }
    // Each route is cached by one cachePlugin: two lookups on one route (a plugin registered at
    // the root and again in a child context) answer from whichever has no `vary`, and each
    // plugin's `invalidate` reaches its own entries only.
    const owner = (route as CachedRouteOptions)[CACHED_BY]
    if (owner !== undefined)
      throw new CacheConfigError(
        'decorateAs',
        `route ${methodsOf(route)} ${route.url} is cached by the cachePlugin decorated as ${JSON.stringify(owner)} and by the one decorated as ${JSON.stringify(decorateAs)}: a route is cached by one cachePlugin only; remove one registration, or register them in sibling contexts`,
      )
    Object.defineProperty(route, CACHED_BY, { value: decorateAs, configurable: true })
    // Checked now too, so that a bad option fails where the route is declared; resolved again
    // once every onRoute hook ran (see the `onReady` hook).
    const known = { names: ROUTE_OPTION_NAMES, where: `config.cache of route ${route.url}` }
    const keyedNow =
      resolveHttpCacheOptions(routeCacheOptions(defaults, config, route.url), known).key !== undefined
    const routeCache: RouteCache = {
      route,
      // Before any later hook can copy it (see `markRoute`).
      mark: markRoute(route),
      announced: route.url,
      cache: undefined,
      site: unready,
      refuseOwnParser: false,
      refuseReplaced: false,
      settled: false,
      group: [],
      options: undefined,
      name: undefined,
      lookup: undefined,
      hiddenSelection: false,
    }
    routeCaches.push(routeCache)
    // First of the route's instance's `onRequest` hooks, whatever the app added before.
    noteFastifyTargets(this)
    // @fastify/compress adds `Vary: Accept-Encoding` only to the responses it compresses: the
    // cache's responses get it whatever their encoding, so that each encoding is a variant of its
    // own (which invalidating a URL reaches), and an identity response stored first is not
    // replayed to gzip-capable clients.
    const varyEncoding = this.hasReplyDecorator('compress')
    // A query a layer replaced is noted as the last `preValidation` hook left it (see the
    // `onReady` hook). Whether the route has a `key` is final when the app is ready; one given by
    // now spares its requests the note (should a later hook take it away, the query is compared
    // as it is when the cache looks up).
    const lookup = lookupHook(fastify, routeCache, settle, varyEncoding, refreshHeader, refreshes)
    // What the route's hooks show while it is declared: a plugin that wraps each hook of a route
    // in its onRoute hook (@fastify/otel) wraps this one, and the lookup itself is put last
    // after it (see `keepLast`). The wrapper, wherever it ends up, only passes the request on.
    const standIn: preHandlerHookHandler = function cacheLookupStandIn(_request, _reply, standInDone) {
      standInDone()
    }
    lookups.add(lookup)
    lookups.add(standIn)
    routeCache.lookup = lookup
    if (!keyedNow) keepLast(route, 'preValidation', noteFastifyQueryBeforeValidation)
    // Last before the handler: every hook of the route (a guard in onRequest, preValidation or
    // preHandler, at any level) ran for a hit as it did for the response stored.
    const declared = () => routeCache.mark.reads === undefined
    const hooksRead = () => noteHooksRead(routeCache.mark)
    keepLast(route, 'preHandler', lookup, standIn, declared, hooksRead)
    // A hit is answered by the handler's place, after every preHandler ran: a plugin that wraps
    // the route's hooks once declared puts a wrapped lookup first, and a guard it appends after
    // that would otherwise run for misses only.
    if (typeof route.handler === 'function') route.handler = answersHits(route.handler)
    // After the hook lists (see `noteHooksRead`): a spread of the route reads them, then its config.
    const configNow = Object.getOwnPropertyDescriptor(route, 'config')
    if (configNow !== undefined) {
      delete route.config
      Object.defineProperty(route, 'config', configNow)
    }
    // A later onRoute hook may delete those accessors and assign lists of its own (a guard, or a
    // query default, after what it read): once every onRoute hook ran, and before Fastify reads
    // the route's hooks, each is put back last over whatever list the route holds (after
    // markRoute's microtask).
    const accessors = {
      preHandler: Object.getOwnPropertyDescriptor(route, 'preHandler')?.get,
      preValidation: keyedNow ? undefined : Object.getOwnPropertyDescriptor(route, 'preValidation')?.get,
    }
    queueMicrotask(() => {
      if (Object.getOwnPropertyDescriptor(route, 'preHandler')?.get !== accessors.preHandler)
        keepLast(route, 'preHandler', lookup, standIn, declared, hooksRead)
      if (
        accessors.preValidation !== undefined &&
        Object.getOwnPropertyDescriptor(route, 'preValidation')?.get !== accessors.preValidation
      )
        keepLast(route, 'preValidation', noteFastifyQueryBeforeValidation)
    })
  })

  // Every `onRoute` hook ran: each cached route's `config.cache` is final (a tenant plugin
  // registered after this one may have added its header to `vary`).
  fastify.addHook('onReady', (hookDone) => {
    try {
      for (const { route, announced } of uncached) {
        const config = route.config?.cache
        if (config !== undefined && config !== false)
          throw new CacheConfigError(
            'config.cache',
            `route ${announced}: set by an onRoute hook that runs after cachePlugin's, which reads only the routes it saw cached; register the plugin that sets it before cachePlugin, or set config.cache on the route`,
          )
      }
      // Fastify chooses among the routes of one method and URL by their constraints: with one
      // chosen by a request header (version, a custom strategy), the others of the URL are chosen
      // when that header is absent or another value, which a CDN cannot see either.
      const chosenByHeader = new Set<string>()
      const hostIsTheRequestHost = !hostStrategy.custom()
      for (const seen of [...uncached, ...routeCaches])
        if (chosenByRequest(seen.route, hostIsTheRequestHost))
          for (const url of spellings(seen)) chosenByHeader.add(url)
      for (const routeCache of routeCaches)
        routeCache.hiddenSelection = spellings(routeCache).some((url) => chosenByHeader.has(url))
      uncached = []
      for (const { route, announced, mark } of routeCaches)
        if (mark.ambiguous)
          throw new CacheConfigError(
            'config.cache',
            `route ${methodsOf(route)} ${announced}: a copy of its options was declared while it was being declared (in the same tick, reading its config as Fastify does), so its requests cannot be told from the copy's; its requests pass through uncached. Declare the copy with a config object of its own, or after the route (from a plugin registered later, or once the route's declaration returned and a microtask ran)`,
          )
        else if (mark.lost)
          throw new CacheConfigError(
            'config.cache',
            `route ${methodsOf(route)} ${announced}: an onRoute hook replaced its config other than by assigning route.config (delete, Object.defineProperty), without what cachePlugin gave it, or frozen: its requests cannot be told from those of a copy of the route, which would answer from its entries. Assign the new config instead (route.config = { ...route.config, ... })`,
          )
        else if (mark.token === undefined)
          throw new CacheConfigError(
            'config.cache',
            `route ${methodsOf(route)} ${announced}: the cache could not tell which of the reads of its config was Fastify's build of the route (its hook lists replaced by delete and assign, and its URL changed, by onRoute hooks), so its requests cannot be told from a copy's and it would never be cached. Assign to route.preHandler instead of deleting it, or declare it with its HEAD route (exposeHeadRoute)`,
          )
      // Routes of one identity share entries (a HEAD route is answered from its GET's), so they
      // must tell clients apart alike: resolved together, now and at the first request of any.
      // A prefixed plugin's `/` GET route is built at `/api` and `/api/`, each HEAD route at one.
      const groups: RouteCache[][] = []
      const groupOf = new Map<string, RouteCache[]>()
      for (const routeCache of routeCaches) {
        // Constraints (a tenant or version strategy) a later hook set are part of the route.
        const descriptions = describeRoute(routeCache.route, routeCache.mark.urls)
        let group: RouteCache[] | undefined
        for (const description of descriptions) {
          const other = groupOf.get(description)
          if (other === undefined || other === group) continue
          if (group === undefined) group = other
          else {
            group.push(...other)
            groups.splice(groups.indexOf(other), 1)
            for (const [known, was] of groupOf) if (was === other) groupOf.set(known, group)
          }
        }
        if (group === undefined) groups.push((group = []))
        group.push(routeCache)
        for (const description of descriptions) groupOf.set(description, group)
      }
      const described = new Map<RouteCache[], string[]>()
      for (const [description, group] of groupOf)
        described.set(group, [...(described.get(group) ?? []), description])
      for (const group of groups) {
        const site = siteOf(fastify, (described.get(group) ?? []).sort().join('\n\n'))
        for (const routeCache of group) {
          routeCache.site = site
          routeCache.group = group
        }
      }
      for (const group of groups) resolveGroup(group, 'ready')
    } catch (error) {
      hookDone(error as Error)
      return
    }
    hookDone()
  })

  /**
   * Makes (or keeps) the caches of one identity's routes from their `config.cache` as it is now:
   * checked whole before any route's cache changes. Routes of one options object (a GET route and
   * its HEAD twin) share one cache. A route whose options are the same as when its cache was made
   * keeps it (its stats and listeners).
   */
  function resolveGroup(group: RouteCache[], when: 'ready' | 'request'): void {
    const planned: {
      routeCache: RouteCache
      cache?: HttpCache<FastifyRequest>
      options?: Record<string, unknown>
    }[] = []
    const byHolder = new Map<object, { cache: HttpCache<FastifyRequest>; options: Record<string, unknown> }>()
    let first: { routeCache: RouteCache; settings: HttpCacheSettings } | undefined
    for (const routeCache of group) {
      const { route } = routeCache
      const config = route.config?.cache
      // A later hook turned the route's caching off: its requests pass through.
      if (config === undefined || config === false) {
        planned.push({ routeCache })
        continue
      }
      // Fastify reads the route's hooks through the accessor `keepLast` defined, which a hook can
      // delete (then assign a list with its guard after the lookup): a hit would skip the guard.
      const handlers = route.preHandler as Function | Function[] | undefined
      const last = Array.isArray(handlers) ? handlers[handlers.length - 1] : handlers
      if (last !== routeCache.lookup) throw lookupNotLast(routeCache)
      // The app's object the route's own config was copied from (a HEAD route's is its GET's).
      const holder = (route.config === routeCache.mark.own ? routeCache.mark.holder : route.config) as object
      let made = byHolder.get(holder)
      if (made === undefined) {
        const known = { names: ROUTE_OPTION_NAMES, where: `config.cache of route ${route.url}` }
        const given = routeCacheOptions(defaults, config, route.url)
        const options = snapshotOf(given as Record<string, unknown>)
        const kept =
          routeCache.cache !== undefined &&
          routeCache.options !== undefined &&
          sameSnapshot(routeCache.options, options)
        let cache: HttpCache<FastifyRequest>
        if (kept) cache = routeCache.cache as HttpCache<FastifyRequest>
        else {
          const settings = resolveHttpCacheOptions(given, known)
          settings.hiddenSelection = routeCache.hiddenSelection
          // Re-made at the route's first request (an onReady hook changed its options): the
          // listeners and stats carry on, and the object `app.cache.routes` handed out reaches
          // this one (see `stableCache`).
          cache = new HttpCache<FastifyRequest>({}, settings, routeCache.cache)
        }
        made = { cache, options }
        byHolder.set(holder, made)
      }
      const settings = made.cache.settings
      // Likewise the query check of a route without a `key` (a hook deleting `preValidation`
      // once the cache had put it back last, from a later plugin or a deferred callback): a query
      // default a hook after it fills in from a header would be in no key. Without the check in
      // the list, the query is compared as it is when the cache looks up.
      const validators = toList(route.preValidation as Function | Function[] | undefined)
      if (
        settings.key === undefined &&
        validators.includes(noteFastifyQueryBeforeValidation) &&
        validators[validators.length - 1] !== noteFastifyQueryBeforeValidation
      )
        throw queryCheckNotLast(routeCache)
      if (first === undefined) first = { routeCache, settings }
      else if (!sameAudience(first.settings, settings))
        throw notOneAudience(first.routeCache, routeCache, when)
      planned.push({ routeCache, cache: made.cache, options: made.options })
    }
    const named = new Set<HttpCache<FastifyRequest>>()
    for (const { routeCache, cache, options } of planned) {
      routeCache.cache = cache
      routeCache.options = options
      if (cache === undefined) {
        if (routeCache.name !== undefined) {
          caches.delete(routeCache.name)
          handedOut.delete(routeCache.name)
        }
        routeCache.name = undefined
        continue
      }
      const keyed = cache.settings.key !== undefined
      // The app reads queries with its own parser (qs with `comma`, `allowDots`, …): which
      // query strings it reads as the same query cannot be told, so a query could be stored
      // under several keys that no invalidation of one spelling reaches together. A `key` of
      // the route's own decides. So is a layer that replaces `request.query` in a hook
      // (fastify-qs): noted as the last `preValidation` hook left it, since the route's
      // validator may hand Fastify a new object.
      routeCache.refuseOwnParser = ownQueryParser && !keyed
      routeCache.refuseReplaced = !keyed
      if (named.has(cache)) {
        routeCache.name = undefined
        continue
      }
      named.add(cache)
      const url = routeCache.route.url
      const name = (routeCache.name ??= `${url}${caches.has(url) ? ` #${caches.size}` : ''}`)
      caches.set(name, cache)
      if (!handedOut.has(name))
        handedOut.set(
          name,
          stableCache(() => caches.get(name) ?? cache),
        )
      // Apps sharing one server are told apart by their prefixes, known once the app started.
      noteFastifyAppPrefix(fastify, cache.settings.keyPrefix)
    }
  }

  /**
   * A route's first request: its identity's `config.cache` as the `onReady` hooks left it. A
   * `CacheConfigError` fails the request with a generic error: Fastify's default error handler
   * sends an error's message to the client, and this one describes the app's configuration. The
   * detailed one is logged, and is the generic one's `cause` (for an app's error handler).
   */
  function settle(routeCache: RouteCache): void {
    try {
      resolveGroup(routeCache.group, 'request')
    } catch (error) {
      fastify.log.error({ err: error }, `cachePlugin: route ${routeCache.announced} cannot be served`)
      throw new Error('Internal Server Error', { cause: error })
    }
    for (const member of routeCache.group) member.settled = true
  }

  /**
   * What invalidation reaches: the caches of the routes (each distinct keyPrefix, vary and
   * backend once), and every backend: the plugin's own (its `backend` option, else the default
   * cache), so that a writer service with no cached route, or a call before the app is ready,
   * reaches the entries its readers share; and, before the app is ready, the `backend` a route's
   * `config.cache` names. A default cache that cannot be built (no `@cache/memory`, no
   * `CACHE_BACKEND`) throws its typed error when there is no other backend to reach: the call
   * rejects rather than resolving having reached nothing.
   */
  const distinct = () => {
    const seen = new Map<string, HttpCache<FastifyRequest>>()
    const backends = new Set<CacheBackend>()
    for (const cache of caches.values()) {
      const s = cache.settings
      backends.add(s.backend ?? getBackend())
      seen.set(`${s.keyPrefix}\n${s.vary.join(',')}\n${backendId(s.backend)}`, cache)
    }
    for (const { cache, route } of routeCaches) {
      const config = route.config?.cache
      if (cache !== undefined || !isOptionsObject(config) || !('backend' in config)) continue
      const backend = optionValue(config, 'backend') as RouteCacheOptions['backend']
      if (backend !== undefined) backends.add(toBackend(backend))
    }
    if (pluginBackend !== undefined) backends.add(pluginBackend)
    else {
      try {
        backends.add(getBackend())
      } catch (error) {
        // Routes with backends of their own, and no default cache in this app: theirs are reached.
        if (!(error instanceof CacheMissingPackageError) || backends.size === 0) throw error
      }
    }
    return { caches: [...seen.values()], backends: [...backends] }
  }

  // An error on its way to an error handler (the handler threw or sent one, an onSend or
  // preSerialization hook threw): whatever the error handler answers, even a 2xx, is not the
  // route's response and is never stored. An instance hook, as the onRoute one: every route this
  // plugin caches has it, and no other plugin's onRoute hook can take it off a route.
  fastify.addHook('onError', (_request, reply, _error, hookDone) => {
    const miss = misses.get(reply.raw)
    if (miss !== undefined) {
      failed.add(reply.raw)
      miss.recorder.refuse(HANDLER_ERROR)
    }
    hookDone()
  })

  const api: FastifyResponseCache = {
    async invalidate(url, invalidateOptions = {}) {
      assertKnownOptions(invalidateOptions, INVALIDATE_NAMES, 'app.cache.invalidate()')
      const { caches: reached, backends } = distinct()
      const { host, headers } = invalidateOptions
      // A backend no resolved route caches in (a writer's, before ready): by the URL alone.
      const others = backends.filter((backend) => !reached.some((cache) => cache.backend() === backend))
      const results = await Promise.all([
        ...reached.map((cache) => cache.invalidate(url, invalidateOptions)),
        ...others.map((backend) =>
          invalidateResponse(url, {
            backend,
            ...(defaults.keyPrefix === undefined ? {} : { keyPrefix: defaults.keyPrefix }),
            ...(host === undefined ? {} : { host }),
            ...(headers === undefined ? {} : { headers }),
          }),
        ),
      ])
      return results.some(Boolean)
    },
    async invalidatePrefix(prefix) {
      await Promise.all(distinct().backends.map((backend) => invalidateResponsePrefix(prefix, { backend })))
    },
    async invalidateTags(tags) {
      await Promise.all(distinct().backends.map((backend) => invalidateTags([...tags], { backend })))
    },
    routes: handedOut,
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
const plugin: FastifyPluginCallback<CachePluginOptions> = fp(
  cachePlugin as FastifyPluginCallback<CachePluginOptions>,
  { fastify: '5.x', name: '@cache/fastify' },
)
export { plugin as cachePlugin }

// Named as exported: fastify-plugin returns this function itself.
function cachePlugin(
  fastify: FastifyInstance,
  options: CachePluginOptions,
  done: (error?: Error) => void,
): void {
  register(fastify, options, done)
}

/**
 * The object `app.cache.routes` hands out for a route's cache: what the app reads and calls on it
 * (`clear()`, `invalidate()`, `invalidateKey()`, `settings`, `stats`, `on()`) is the cache the
 * route uses now. A route's cache is made again at its first request when an `onReady` hook changed
 * its options (a `keyPrefix`, a backend): the object the app took after `ready()` then reaches the
 * entries stored under the new ones. Requests never go through it (the lookup holds the cache).
 */
function stableCache(current: () => HttpCache<FastifyRequest>): HttpCache<FastifyRequest> {
  return new Proxy(current(), {
    get(_first, name) {
      const cache = current()
      const value: unknown = Reflect.get(cache, name, cache)
      return typeof value === 'function' ? value.bind(cache) : value
    },
  })
}

/**
 * Checks the plugin's options now: a bad one, or a name that is not an option, throws a
 * `CacheConfigError` at registration. Each option is read by name (`name in options`), so that
 * one held by a getter, a non-enumerable property or a Proxy is not dropped.
 */
function pluginDefaults(options: CachePluginOptions): {
  defaults: RouteCacheOptions
  backend: CacheBackend | undefined
} {
  if (!isOptionsObject(options))
    throw new CacheConfigError('options', `expected an object, got ${String(options)}`)
  for (const name of settingNames(options)) if (!PLUGIN_OPTION_NAMES.has(name)) throw notAPluginOption(name)
  const defaults: Record<string, unknown> = {}
  for (const name of ROUTE_OPTION_NAMES) if (name in options) defaults[name] = optionValue(options, name)
  // Built once to check every option (ttl, keyPrefix, statuses, …) when the plugin registers.
  const checked = new HttpCache(defaults)
  return { defaults, backend: checked.settings.backend }
}

/**
 * The error for a plugin option name cachePlugin does not have. Ignoring it would drop what it
 * meant in silence (`appendKey`, `sessionId`: a per-user key, one user's page served to another),
 * so it is refused whatever it looks like, even when it is one of `@fastify/autoload`'s shared
 * `options` meant for other plugins: the message says how those reach other plugins only.
 */
function notAPluginOption(name: string): CacheConfigError {
  const near = nearestName(name, PLUGIN_OPTION_NAMES)
  return new CacheConfigError(
    name,
    `not an option of cachePlugin; ${near === undefined ? '' : `did you mean \`${near}\`? `}if it is one of @fastify/autoload's shared \`options\`, meant for other plugins, register cachePlugin from a file in plugins/ as fp(async (app) => app.register(cachePlugin, { ...its own options }))`,
  )
}

/**
 * A route's cache options: the plugin's `defaults`, each option its `config.cache` names
 * replacing one (read by name, as the plugin's). A name given with `undefined` is refused: a
 * helper passing an unset setting through (`{ ttl, vary: opts.vary }`) would otherwise erase the
 * plugin's `vary`, `key` or `bypass` for the route.
 */
function routeCacheOptions(
  defaults: RouteCacheOptions,
  config: RouteCacheConfig,
  url: string,
): RouteCacheOptions {
  if (config === true) return defaults
  if (typeof config === 'number' || typeof config === 'string') return { ...defaults, ttl: config }
  if (!isOptionsObject(config))
    throw new CacheConfigError(
      'config.cache',
      `route ${url}: expected true, a TTL or cache options, got ${JSON.stringify(config)}`,
    )
  const where = `config.cache of route ${url}`
  assertKnownOptions(config, ROUTE_OPTION_NAMES, where)
  const options: Record<string, unknown> = { ...defaults }
  for (const name of ROUTE_OPTION_NAMES) {
    if (!(name in config)) continue
    const value = optionValue(config, name)
    if (value === undefined)
      throw new CacheConfigError(
        name,
        `given as undefined in ${where}; leave the name out to keep the plugin's setting`,
      )
    options[name] = value
  }
  return options
}

/**
 * A route's options as they are now, to tell whether a hook changed them since: arrays and plain
 * objects (a `vary` list a hook pushes onto, `cacheControl`) are copied, other values kept as they are.
 */
function snapshotOf(value: Record<string, unknown>): Record<string, unknown> {
  const copy = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(copy) : isPlainObject(v) ? snapshotOf(v as Record<string, unknown>) : v
  const out: Record<string, unknown> = {}
  for (const name of Object.keys(value)) out[name] = copy(value[name])
  return out
}

function sameSnapshot(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true
  if (Array.isArray(a) && Array.isArray(b))
    return a.length === b.length && a.every((v, i) => sameSnapshot(v, b[i]))
  if (isPlainObject(a) && isPlainObject(b)) {
    const x = a as Record<string, unknown>
    const y = b as Record<string, unknown>
    const names = Object.keys(x)
    return names.length === Object.keys(y).length && names.every((n) => n in y && sameSnapshot(x[n], y[n]))
  }
  return false
}

function isPlainObject(value: unknown): boolean {
  if (value === null || typeof value !== 'object') return false
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

/** The settings that decide who may receive an entry: equal on routes sharing entries. */
function sameAudience(a: HttpCacheSettings, b: HttpCacheSettings): boolean {
  const vary = (s: HttpCacheSettings) =>
    s.vary
      .map((name) => name.toLowerCase())
      .sort()
      .join(',')
  return (
    vary(a) === vary(b) &&
    a.key === b.key &&
    a.bypass === b.bypass &&
    a.allowAuthorized === b.allowAuthorized &&
    a.allowCookies === b.allowCookies
  )
}

/**
 * Two routes of one identity (a GET route and its HEAD route) that `onRoute` hooks left with
 * different `vary`, `key`, `bypass`, `allowAuthorized` or `allowCookies`: one would answer from
 * the other's entries. Fastify announces a prefixed plugin's `/` GET route once, as the prefix
 * (`/api`), and serves `/api/` from the same options; its HEAD routes as `/api` and `/api/`
 * (with `ignoreTrailingSlash`, `/api` only). Routes are named by the URL hooks saw.
 */
function notOneAudience(first: RouteCache, second: RouteCache, when: 'ready' | 'request'): CacheConfigError {
  const named = ({ route, announced }: RouteCache) => `${methodsOf(route)} ${announced}`
  if (when === 'request')
    return new CacheConfigError(
      'config.cache',
      `routes ${named(first)} and ${named(second)} share their cached responses, but their options changed after the app got ready (an onReady hook registered after cachePlugin, or any hook, changed the config or config.cache of one and not of the other), leaving them different vary, key, bypass, allowAuthorized or allowCookies; change both the same way (a GET route and its HEAD route are two route objects: a hook replacing route.config must do it on both)`,
    )
  return new CacheConfigError(
    'config.cache',
    `routes ${named(first)} and ${named(second)} share their cached responses, but onRoute hooks left them different vary, key, bypass, allowAuthorized or allowCookies; give both the same (Fastify announces a prefixed plugin's '/' route to onRoute hooks as GET /api, which serves /api/ too, HEAD /api and HEAD /api/: a hook filtering by URL must match both /api and /api/)`,
  )
}

/**
 * A cached route whose `preHandler` a hook replaced (deleted the property the plugin defined, then
 * assigned a list) so that the cache's lookup is no longer last: a hook after it would run for
 * misses only, after a hit was answered.
 */
function lookupNotLast({ route, announced }: RouteCache): CacheConfigError {
  return new CacheConfigError(
    'preHandler',
    `route ${methodsOf(route)} ${announced}: a hook replaced its preHandler property (deleted it, or defined it anew), and its last preHandler is no longer the cache's lookup: a hook placed after the lookup runs after a hit was answered, so a guard there never protects a cached page. Assign to route.preHandler instead of deleting it (cachePlugin keeps its lookup last whatever list is assigned)`,
  )
}

/**
 * A cached route without a `key` whose `preValidation` a hook replaced (deleted the property the
 * plugin defined, then assigned a list) once the plugin had put its query check back last: a hook
 * after the check may change the query (a default from `Accept-Language`) unseen, and the page it
 * makes is stored under the URL without it.
 */
function queryCheckNotLast({ route, announced }: RouteCache): CacheConfigError {
  return new CacheConfigError(
    'preValidation',
    `route ${methodsOf(route)} ${announced}: a hook replaced its preValidation property (deleted it, or defined it anew) after the route was declared (from a plugin registered later, or a deferred callback), and its last preValidation is no longer the cache's query check: a query value a hook after it fills in (a default from a header) is in no key, so one client's page would be served to another. Assign to route.preValidation instead of deleting it, do it from the onRoute hook itself, or give the route a \`key\``,
  )
}

/**
 * The URLs a route answers as Fastify's router compares them for constraints: as announced to
 * `onRoute` hooks and as it is now (a prefixed plugin's '/' is announced as '/api' and becomes
 * '/api/'), each without its trailing slash (`ignoreTrailingSlash` makes '/api/' the same route).
 */
function spellings({ route, announced }: { route: RouteOptions; announced: string }): string[] {
  const bare = (url: string) => {
    // As the router matches them: a parameter by its place, not its name or pattern;
    // `ignoreDuplicateSlashes` makes `//items` `/items`. Coarser than the router, never finer.
    const path = url.replace(/\/{2,}/g, '/').replace(/:[^/]*/g, ':')
    return path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path
  }
  return [bare(announced), bare(route.url)]
}

/** Marks a route cachePlugin caches, with the `decorateAs` of the plugin (one per route). */
const CACHED_BY = Symbol.for('@cache/fastify.cachedBy')
type CachedRouteOptions = RouteOptions & { [CACHED_BY]?: string }

/** The site of a route whose cache is not made yet (never asked: its lookup passes through). */
const unready = () => ''

function methodsOf(route: RouteOptions): string {
  return toList(route.method).join(',')
}

function answersGet(route: RouteOptions): boolean {
  const methods = Array.isArray(route.method) ? route.method : [route.method]
  return methods.some((method) => method === 'GET' || method === 'HEAD')
}

/**
 * The route as the cache tells it from another one, whatever server it runs on, once for each URL
 * Fastify built it at (`urls`; a prefixed plugin's `/` at `/api` and `/api/`): the URL pattern,
 * its constraints (host, version), and the handler and hooks declared on it, each as
 * `name#<fingerprint of its source>`. Its methods are not: only its GET and HEAD requests are
 * looked up, and a HEAD route is answered from its GET route's entries (its method list is
 * `['GET', 'POST']`, its HEAD route's `HEAD`). Taken when the app gets ready, once every `onRoute`
 * hook ran (a later one may set a constraint).
 */
function describeRoute(route: RouteOptions, urls: readonly string[]): string[] {
  const functions = (value: unknown) =>
    toList(value as Function | Function[] | undefined)
      .map((fn) => (typeof fn === 'function' ? describeFunction(unwrapped(fn)) : '?'))
      .join(',')
  const rest = [
    describeConstraints(route.constraints, `${methodsOf(route)} ${route.url}`),
    functions(route.handler),
    ...ROUTE_HOOKS.map((hook) => `${hook}=${functions(route[hook])}`),
  ]
  // A HEAD route the app declared itself is answered from its own entries.
  const method = toList(route.method).includes('GET') || fastifyHeadRoutes.has(route) ? 'GET' : 'HEAD'
  return (urls.length === 0 ? [route.url] : urls).map((url) => [method, url, ...rest].join('\n'))
}

/**
 * Where the cache sits, as a function giving the site of a request: the server the app listens
 * at and the route. The server is its bound address and port (`0.0.0.0:3000` for every replica
 * of a service, which share entries) or Unix socket path: two apps of one process never share
 * entries, whatever `Host` a client sends. An app that does not listen (`inject()`) has an
 * identity of its own. Apps on one server (`serverFactory` returning the same server) are not
 * told apart here: they cache only under distinct `keyPrefix`es (see `fastifySharedServerBypass`).
 * The route is `description` (see {@link describeRoute}: of the routes sharing entries).
 */
function siteOf(fastify: FastifyInstance, description: string): () => string {
  const server = fastify.server
  const hash = (at: string) => createHash('sha256').update(`${at}\n${description}`).digest('hex').slice(0, 12)
  let listening: { at: string; site: string } | undefined
  let unlistened: string | undefined
  const site = () => {
    const address = server.listening ? server.address() : null
    if (address === null) return (unlistened ??= hash(`instance ${instanceOf(server)}`))
    const at = typeof address === 'string' ? address : `${address.address}:${address.port}`
    if (listening?.at !== at) listening = { at, site: hash(at) }
    return listening.site
  }
  return site
}

/**
 * A route's constraints as its description writes them: by content, the same in every process and
 * in every replica whatever order its routes are declared in. Strings, numbers, booleans, `null`,
 * a RegExp (its source and flags), and arrays and plain objects of those. Any other value (a
 * predicate function, a Symbol, a class instance, a value with its own `toJSON`) has no content
 * two processes agree on, nor one that tells two routes apart (`toJSON` may redact it): such a
 * route is a `CacheConfigError` when the app gets ready, rather than a route whose entries another
 * route of the same URL could be answered from.
 */
function describeConstraints(constraints: unknown, route: string): string {
  const describe = (value: unknown, path: string): unknown => {
    if (value instanceof RegExp && Object.getPrototypeOf(value) === RegExp.prototype)
      return { RegExp: String(value) }
    if (value === null || value === undefined) return value
    const type = typeof value
    if (type === 'string' || type === 'boolean') return value
    if (type === 'number') return Number.isFinite(value) ? value : String(value)
    if (Array.isArray(value) && !Object.hasOwn(value, 'toJSON'))
      return value.map((item, i) => describe(item, `${path}[${i}]`))
    if (type === 'object') {
      const proto = Object.getPrototypeOf(value)
      if ((proto === Object.prototype || proto === null) && !Object.hasOwn(value as object, 'toJSON')) {
        const out: Record<string, unknown> = {}
        for (const key of Object.keys(value as object).sort())
          out[key] = describe((value as Record<string, unknown>)[key], `${path}.${key}`)
        return out
      }
    }
    const what =
      type === 'function'
        ? 'a function'
        : type === 'symbol'
          ? 'a Symbol'
          : type === 'object'
            ? Object.hasOwn(value as object, 'toJSON') ||
              typeof (value as { toJSON?: unknown }).toJSON === 'function'
              ? 'a value with its own toJSON'
              : `an instance of ${(value as object).constructor?.name || 'a class'}`
            : `a ${type}`
    throw new CacheConfigError(
      'config.cache',
      `route ${route}: its constraint ${path} is ${what}, which the cache cannot describe by content, the same in every process: two routes of one URL told apart by such values could answer each other's requests from one entry. Give the constraint strategy plain values (strings, numbers, plain objects), or leave the route uncached`,
    )
  }
  return JSON.stringify(describe(constraints ?? {}, 'constraints'))
}

/**
 * Whether Fastify chooses the route by something of the request other than its host (the version
 * strategy reads `Accept-Version`, a custom one any header, a custom strategy named `host` maybe
 * `X-Forwarded-Host`): a CDN keys on the URL and the host, so `cacheControl` sends its responses
 * `private`, and those of the other routes of its URL (chosen when the header is absent or names
 * none of them). `host` is the request's host only when the router's is find-my-way's own.
 */
function chosenByRequest(route: RouteOptions, hostIsTheRequestHost: boolean): boolean {
  const constraints = route.constraints
  if (constraints === null || typeof constraints !== 'object') return false
  return Object.keys(constraints).some((name) => name !== 'host' || !hostIsTheRequestHost)
}

/**
 * Whether the app's router chooses routes by a `host` strategy of the app's own (given in
 * `routerOptions.constraints`, `constraints`, or to `addConstraintStrategy`) rather than
 * find-my-way's, which reads the `Host` header. The router is not reachable: Fastify's
 * `hasConstraintStrategy('host')` says yes for a strategy of the app's, and for find-my-way's once
 * a route uses it. So it is asked when the plugin registers and at each route declared (before
 * the router holds it) until a route uses `host`: a yes then is the app's strategy, or a route
 * declared where the plugin does not see it using find-my-way's (taken as the app's: `private`).
 */
function hostStrategyWatch(fastify: FastifyInstance): {
  seen: (route: RouteOptions) => void
  custom: () => boolean
} {
  const options = fastifyInstanceOptions(fastify) as
    | { constraints?: unknown; routerOptions?: { constraints?: unknown } }
    | undefined
  const given = options?.routerOptions?.constraints ?? options?.constraints
  // Options that cannot be read: the strategy cannot be told, taken as the app's.
  let custom =
    options === undefined ||
    (given !== null && typeof given === 'object' && Object.hasOwn(given, 'host')) ||
    fastify.hasConstraintStrategy('host')
  let used = false
  let previous: RouteOptions | undefined
  const usesHost = (route: RouteOptions | undefined) => {
    const constraints = route?.constraints as unknown
    return constraints !== null && typeof constraints === 'object' && Object.hasOwn(constraints, 'host')
  }
  const ask = () => {
    if (used || custom) return
    // The route seen before is in the router by now (or is being declared around this one).
    if (usesHost(previous)) used = true
    else custom = fastify.hasConstraintStrategy('host')
  }
  return {
    seen(route) {
      ask()
      previous = route
    },
    custom() {
      ask()
      return custom
    },
  }
}

/** The hooks a route declares that run before its handler (and so before the cache). */
const ROUTE_HOOKS = ['onRequest', 'preParsing', 'preValidation', 'preHandler'] as const

/** An identity per server of an app that does not listen. */
const instances = new WeakMap<object, string>()
function instanceOf(server: object): string {
  let id = instances.get(server)
  if (id === undefined) {
    id = randomUUID()
    instances.set(server, id)
  }
  return id
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

/**
 * Makes `hook` the route's last `preHandler` (or `preValidation`), and keeps it last whatever the
 * `onRoute` hooks of plugins registered after this one do to the list (assign a new one, push
 * onto it, replace it with a function): Fastify reads the route's hooks once every `onRoute` hook
 * ran, through the accessor, which puts `hook` back at the end. A guard another plugin appends
 * (`@fastify/autoload` loads `roles.js` after `cache.js`) so runs before every hit. Until
 * `declared()`, the list shows `standIn` in its place: what another hook made of it (a tracer's
 * wrapper) stays in the list, and `hook` alone runs last.
 */
function keepLast<H extends preHandlerHookHandler | preValidationHookHandler>(
  route: RouteOptions,
  name: 'preHandler' | 'preValidation',
  hook: H,
  standIn: H = hook,
  declared: () => boolean = () => true,
  onRead?: () => void,
): void {
  const ours = (fn: H) => fn === hook || fn === standIn
  // Another route's lookup (a list copied from it) never runs here.
  const others = (fn: H) => !ours(fn) && !lookups.has(fn)
  const last = () => (declared() ? hook : standIn)
  let list: H[] = [...toList(route[name] as H | H[] | undefined).filter(others), last()]
  Object.defineProperty(route, name, {
    configurable: true,
    enumerable: true,
    get() {
      onRead?.()
      // In place: a plugin may hold this array and push onto it.
      const now = last()
      if (list.findIndex(ours) !== list.length - 1 || list[list.length - 1] !== now) {
        for (let at = list.length - 1; at >= 0; at--) if (ours(list[at] as H)) list.splice(at, 1)
        list.push(now)
      }
      return list
    },
    set(value: H | H[] | undefined) {
      list = [...toList(value).filter(others), last()]
    },
  })
}

/** The lookup hooks of every cached route, to find them in a copy of the route's options. */
const lookups = new WeakSet<Function>()

/**
 * Takes the cache's hooks out of a route whose options were copied from a cached route (the
 * spread reads the lists of the cache's accessors): the original's lookup would answer the copy's
 * requests from the original's entries and store the copy's responses there. The copy gets hooks
 * of its own if it is cached itself. A new list: the copied one is the original's.
 */
function dropCopiedHooks(route: RouteOptions): void {
  const handlers = toList(route.preHandler as Function | Function[] | undefined)
  if (handlers.some((fn) => lookups.has(fn)))
    route.preHandler = handlers.filter((fn) => !lookups.has(fn)) as preHandlerHookHandler[]
  const validators = toList(route.preValidation as Function | Function[] | undefined)
  if (validators.includes(noteFastifyQueryBeforeValidation))
    route.preValidation = validators.filter(
      (fn) => fn !== noteFastifyQueryBeforeValidation,
    ) as preValidationHookHandler[]
}

/**
 * The symbol of a cached route's own `config`: a getter handing out a new token at every read.
 * Fastify builds the route's context (`request.routeOptions.config`) by spreading the route's
 * `config` once every `onRoute` hook ran, right after reading the route's hook lists (see
 * {@link noteHooksRead}): that read is the token its requests carry; whoever spreads the route's
 * `config` otherwise (a copy of the route declared by a hook, or in a context the cache never
 * sees, even in the same tick) carries another one.
 */
const ROUTE_MARK = Symbol('@cache/fastify.route')

/** The tokens a cached route's requests carry in their `config` (see {@link markRoute}). */
interface RouteMark {
  /** The token of the route's context, once the route's declaration is over. */
  token: object | undefined
  /** Of its second context: a prefixed plugin's `/`, served as `/api` and `/api/`. */
  prefixedToken: object | undefined
  /**
   * The tokens read while the route is declared, with the route's URL then, and whether the read
   * came as Fastify's build of the route's context does (see {@link noteHooksRead}).
   */
  reads: { token: object; url: string; built: boolean }[] | undefined
  /** The route's hook list read this many times in a row, with nothing read in between. */
  hookReads: number
  /** Its `config` was just read right after its hook list was read twice (Fastify's build). */
  configAfterHooks: boolean
  /** The tokens its HEAD route's declaration pointed at (see `noteBuilt`), when no read was `built`. */
  headToken: object | undefined
  headPrefixedToken: object | undefined
  /** Its URL when the cache first saw it. */
  readonly announced: string
  /**
   * For a route of a prefixed plugin, the URL Fastify builds a `/` route's second context at
   * (`/api/`): the prefix and a slash, whatever URL `onRoute` hooks gave the first one.
   */
  readonly prefixed: string | undefined
  /** The URLs its contexts were built at (from the reads that became its tokens). */
  urls: string[]
  /** The `config` a hook gave the route (the route's own is a copy of it): a HEAD twin's is its GET's. */
  holder: unknown
  /** The route's own `config`, while the route holds it. */
  own: object | undefined
  /** The route. */
  readonly route: RouteOptions
  /** Its `config` as the cache first saw it: Fastify's HEAD route of it is declared with the same. */
  readonly given: unknown
  /**
   * A hook deleted the route's `config` and put one that the route's requests cannot be told
   * by (without the token, or frozen with it): refused when the app gets ready.
   */
  lost?: true
  /**
   * More reads came as Fastify's build does than Fastify's builds of the route explain (a copy
   * of its options declared while it was being declared): no token, refused when the app gets ready.
   */
  ambiguous?: true
}

/**
 * The route's `preHandler` list was read. Fastify checks each route's hook lists right before it
 * builds the route's context, reading the list twice (`Array.isArray(opts[hook])`, then the list
 * or `typeof`), then `opts.constraints` (a plain value), then spreads `opts.config`. A copy's
 * spread (`{ ...route, config: { ...route.config } }`) reads the list once, then the route's
 * `config` (last of its keys) once by the spread and again for the copy's own: never twice then
 * once. Nothing of this runs per request.
 */
function noteHooksRead(mark: RouteMark): void {
  if (mark.reads === undefined) return
  mark.hookReads++
  mark.configAfterHooks = false
}

/** The tokens of the routes being declared, to take back the one a copy carries. */
const tokenOwners = new WeakMap<object, RouteMark>()

/** The marks of the cached routes being declared (until their microtask), latest last. */
const declaring: RouteMark[] = []

/**
 * Only when Fastify's build was not seen as such (see {@link noteHooksRead}; a hook replaced the
 * route's hook list). A HEAD route is being declared: when it is Fastify's own for the latest cached GET route of its
 * URL being declared (declared with the same `config` object, `exposeHeadRoute`), Fastify has just
 * built that route's context, and the last read of the GET route's mark is the token its requests
 * carry: a copy of the route declared after it, in the same tick, gets another one even when the
 * plugin never sees it. (For a prefixed plugin's `/`, the HEAD route of `/api/` follows the second
 * context.) Without a HEAD route (`exposeHeadRoute: false`), the microtask decides alone.
 */
/** HEAD routes Fastify declared for a cached GET route (`exposeHeadRoute`): they share its entries. */
const fastifyHeadRoutes = new WeakSet<RouteOptions>()

function noteBuilt(head: RouteOptions): void {
  for (let at = declaring.length - 1; at >= 0; at--) {
    const mark = declaring[at] as RouteMark
    // The HEAD route comes as the cache saw its GET route (a hook after the cache's that moved
    // the GET route to `/v1/api` has not moved it yet), or at the URL Fastify built it at.
    const urls = [mark.route.url, mark.announced, `${mark.announced}/`, mark.prefixed]
    if (!urls.includes(head.url) || mark.given !== head.config || !toList(mark.route.method).includes('GET'))
      continue
    // Fastify's own HEAD route of it (Fastify gives it an onSend hook of its own that drops the
    // body); a HEAD route the app declared, even with the GET route's handler and options, is a
    // route of its own.
    if (
      toList(head.onSend as Function | Function[] | undefined).some(
        (hook) => hook?.name === 'headRouteOnSendHandler',
      )
    )
      fastifyHeadRoutes.add(head)
    // Made at the URL the route has now: the read of the build that just ran.
    const last = mark.reads?.[mark.reads.length - 1]
    if (last !== undefined && last.url === mark.route.url) {
      if (mark.headToken === undefined) mark.headToken = last.token
      else if (last.token !== mark.headToken) mark.headPrefixedToken ??= last.token
    }
    return
  }
}

/**
 * Gives the route a `config` of its own, a copy of the one it has (the app's object, maybe shared
 * by several routes, is left as it is), with the {@link ROUTE_MARK} getter; a hook that assigns
 * another `config` gets one of its own too. The route's tokens are taken in a microtask, once
 * the declaration (every `onRoute` hook, then Fastify's contexts) is over: the read that came as
 * Fastify's build does, and for a prefixed plugin's `/` (announced as `/api`, built as `/api`
 * then `/api/`) both; more such reads than that leave it without a token (refused at ready). A copy the plugin sees gives back the token it took (see
 * `disownCopiedMark`). Nothing of this runs per request.
 */
function markRoute(route: RouteOptions): RouteMark {
  const announced = route.url
  // Fastify sets the prefix on the route's options before the `onRoute` hooks run.
  const prefix: unknown = (route as { prefix?: unknown }).prefix
  const mark: RouteMark = {
    token: undefined,
    prefixedToken: undefined,
    reads: [],
    hookReads: 0,
    configAfterHooks: false,
    headToken: undefined,
    headPrefixedToken: undefined,
    announced,
    prefixed: typeof prefix === 'string' && prefix !== '' ? `${prefix}/` : undefined,
    urls: [],
    holder: route.config,
    own: undefined,
    route,
    given: route.config,
  }
  declaring.push(mark)
  const read = () => {
    const token = {}
    if (mark.reads !== undefined) {
      mark.reads.push({ token, url: route.url, built: mark.configAfterHooks })
      mark.hookReads = 0
      mark.configAfterHooks = false
      tokenOwners.set(token, mark)
    }
    return token
  }
  mark.own = ownConfig(route.config, read)
  const getOwn = () => {
    if (mark.reads !== undefined) {
      mark.configAfterHooks = mark.hookReads >= 2
      mark.hookReads = 0
    }
    return mark.own
  }
  Object.defineProperty(route, 'config', {
    configurable: true,
    enumerable: true,
    get: getOwn,
    set(value: unknown) {
      mark.holder = value
      mark.own = ownConfig(value, read)
    },
  })
  queueMicrotask(() => {
    const reads = mark.reads ?? []
    mark.reads = undefined
    declaring.splice(declaring.indexOf(mark), 1)
    if (Object.getOwnPropertyDescriptor(route, 'config')?.get === getOwn) {
      // The reads that came as Fastify's build does: one, or for a prefixed plugin's `/` the
      // route's URL then its URL with a slash. Any other count: a copy read as Fastify does.
      const built = reads.filter((read) => read.built)
      if (built.length > 0) {
        const [first, second] = built as [(typeof reads)[0], (typeof reads)[0] | undefined]
        if (built.length === 1) mark.token = first.token
        else if (
          second !== undefined &&
          built.length === 2 &&
          second.url === mark.prefixed &&
          first.url !== second.url
        ) {
          mark.token = first.token
          mark.prefixedToken = second.token
        } else mark.ambiguous = true
        noteUrls(mark, reads)
        return
      }
      // Fastify's build not seen as such (a hook replaced the route's hook list): the reads its
      // HEAD routes pointed at (see `noteBuilt`), else the last read.
      mark.token = mark.headToken
      mark.prefixedToken = mark.headPrefixedToken
      const last = reads[reads.length - 1]
      // A prefixed plugin's `/`: Fastify built it at its URL (`/api`, or where a hook moved it),
      // then at `/api/`, from the route's options.
      if (last !== undefined && last.url === mark.prefixed && last.token !== mark.token) {
        mark.prefixedToken ??= last.token
        mark.token ??= (
          reads.findLast(({ url }) => url === announced) ?? reads.findLast(({ url }) => url !== last.url)
        )?.token
      } else mark.token ??= last?.token
      noteUrls(mark, reads)
      return
    }
    // A hook deleted (or redefined) the route's `config` and put another one: Fastify copied
    // the token that one holds, if a spread of the route's own gave it one, and so would every
    // later copy of it, which is given a getter of its own from now on.
    const config: unknown = route.config
    const held =
      config !== null && typeof config === 'object'
        ? Object.getOwnPropertyDescriptor(config, ROUTE_MARK)
        : undefined
    const token: unknown = held !== undefined && 'value' in held ? held.value : undefined
    if (token === null || typeof token !== 'object' || tokenOwners.get(token) !== mark) {
      mark.lost = true
      return
    }
    try {
      Object.defineProperty(config, ROUTE_MARK, { configurable: true, enumerable: true, get: () => ({}) })
      mark.token = token
      // Both contexts of a prefixed plugin's `/` copied the one config: at its URLs as announced and now.
      mark.urls = [...new Set([announced, route.url])]
    } catch {
      // Frozen: every copy of it would carry the route's token.
      mark.lost = true
    }
  })
  return mark
}

/** The URLs of the reads that became the route's tokens: where Fastify built its contexts. */
function noteUrls(mark: RouteMark, reads: readonly { token: object; url: string }[]): void {
  for (const token of [mark.token, mark.prefixedToken]) {
    const url = reads.find((read) => read.token === token)?.url
    if (url !== undefined && !mark.urls.includes(url)) mark.urls.push(url)
  }
}

/** A copy of `config` (every own property as it is, but a mark) with the route's mark getter. */
function ownConfig(config: unknown, read: () => object): Record<PropertyKey, unknown> | undefined {
  if (config === null || typeof config !== 'object') return config as undefined
  const descriptors: PropertyDescriptorMap = Object.getOwnPropertyDescriptors(config)
  delete descriptors[ROUTE_MARK]
  descriptors[ROUTE_MARK] = { configurable: true, enumerable: true, get: read }
  return Object.create(Object.getPrototypeOf(config), descriptors)
}

/**
 * A route declared with a cached route's `config` while that route is still being declared
 * (`app.route({ ...route, method: 'POST' })` right after it): Fastify's spread of the copy's
 * `config` would read the original's mark after Fastify's own, so the copy gets a `config` of
 * its own without it; a copy that spread it already gives back the token it took.
 */
function disownCopiedMark(route: RouteOptions): void {
  const config: unknown = route.config
  if (config === null || typeof config !== 'object') return
  const held = Object.getOwnPropertyDescriptor(config, ROUTE_MARK)
  if (held === undefined) return
  if (held.get !== undefined) {
    const descriptors: PropertyDescriptorMap = Object.getOwnPropertyDescriptors(config)
    delete descriptors[ROUTE_MARK]
    route.config = Object.create(Object.getPrototypeOf(config), descriptors)
    return
  }
  const token: unknown = held.value
  if (token === null || typeof token !== 'object') return
  const owner = tokenOwners.get(token)
  if (owner?.reads !== undefined) owner.reads = owner.reads.filter((read) => read.token !== token)
}

/**
 * The requests a lookup let through to the next hook (a miss, a bypass): a second lookup of one
 * (the route's lookup wrapped where it could not be told apart) passes through rather than
 * waiting on the first's miss and counting it again. A hit ends the hooks, and is not noted.
 */
const lookedUp = new WeakSet<FastifyRequest>()

/**
 * Fastify's symbol for a request's route context (`kRouteContext`), whose `config` is the one
 * `request.routeOptions.config` gives: read directly, a request's check allocates nothing
 * (`routeOptions` builds an object of twelve properties at each read). `null` when not found.
 */
let contextSymbol: symbol | null | undefined

/** The `config` of the route a request was routed to (Fastify's copy of the route's). */
function routeConfigOf(request: FastifyRequest): Record<PropertyKey, unknown> | undefined {
  contextSymbol ??=
    Object.getOwnPropertySymbols(request).find((symbol) => symbol.description === 'fastify.context') ?? null
  const context =
    contextSymbol === null
      ? undefined
      : (request as unknown as Record<symbol, { config?: unknown } | undefined>)[contextSymbol]
  const config = context?.config ?? request.routeOptions.config
  return config as Record<PropertyKey, unknown> | undefined
}

function lookupHook(
  fastify: FastifyInstance,
  routeCache: RouteCache,
  settle: (routeCache: RouteCache) => void,
  varyEncoding: boolean,
  refreshHeader: string,
  refreshes: Map<string, Refresh>,
) {
  const { mark } = routeCache
  return function cacheLookup(request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) {
    // A copy of the route (its hooks, this one among them) declared where the cache did not see
    // it, or this hook wrapped by a tracer where it could not be told from another: not this
    // route's request, nor the second lookup of one (which would wait on the first's miss).
    const token = routeConfigOf(request)?.[ROUTE_MARK]
    if (
      (token !== mark.token && token !== mark.prefixedToken) ||
      token === undefined ||
      lookedUp.has(request)
    ) {
      done()
      return
    }
    if (!routeCache.settled) {
      // A bad option an onReady hook set fails every request of the route, never served without it.
      try {
        settle(routeCache)
      } catch (error) {
        done(error as Error)
        return
      }
    }
    const cache = routeCache.cache
    // A later `onRoute` hook turned the route's caching off.
    if (cache === undefined) {
      done()
      return
    }
    const view = viewOf(request, routeCache.site(), refreshHeader, refreshes)
    // A parser of the app's own, for a request with a query string (`;` too: with
    // `useSemicolonDelimiter` the parser reads what follows it); a query a hook replaced or
    // changed, with a query string or without one (a default filled in from a header).
    if (
      (routeCache.refuseOwnParser && /[?;]/.test(view.url)) ||
      (routeCache.refuseReplaced && fastifyQueryReplaced(request))
    )
      view.bypass = 'querystring-parser'
    // Keyed on the target as sent: a request routed (`rewriteUrl`) or handled (a hook rewriting
    // `request.raw.url`) as another one must not be stored under it, nor answered from it.
    const rewritten = fastifyRewrite(request.raw)
    if (rewritten !== undefined) view.bypass = rewritten
    // HTTP/2 responses are not recorded (their bytes go through the stream, not the writes the
    // recorder follows): bypassed, and said so, rather than claimed stored and never kept.
    if (request.raw.httpVersionMajor >= 2) view.bypass = 'http2'
    // Apps sharing the server without prefixes of their own cannot be told apart.
    view.bypass ??= fastifySharedServerBypass(fastify, cache.settings.keyPrefix)
    const context: LookupContext = {
      verdict: () => (failed.has(reply.raw) ? HANDLER_ERROR : undefined),
      // The copy comes from the client's address over the client's protocol, so that the app
      // resolves it as the request it refreshes; another key is refused by the cache and counted.
      revalidate: (refresh) =>
        injectRefresh(fastify, request.raw, view.url, refresh, refreshes, refreshHeader),
    }
    let result: LookupResult | Promise<LookupResult>
    try {
      result = cache.lookup(view, context)
    } catch (error) {
      done(error as Error)
      return
    }
    if (result instanceof Promise)
      result.then((settled) => act(settled, request, reply, varyEncoding, done, routeCache), done)
    else act(result, request, reply, varyEncoding, done, routeCache)
  }
}

/** The miss each response being recorded answers, for the `onError` hook. */
const misses = new WeakMap<ServerResponse, MissResult>()
/** Responses of a miss that an error went through: an error handler makes them, never stored. */
const failed = new WeakSet<ServerResponse>()

/** Hits found by a request's lookup, answered by the route's handler (see {@link answersHits}). */
const hits = new WeakMap<FastifyRequest, LookupResult>()
/** Routes whose handler a hook replaced, found at a request (warned once). */
const handlerReplaced = new WeakSet<RouteCache>()
/** Misses found by a request's lookup, recorded from the route's handler (see {@link answersHits}). */
const pendingMisses = new WeakMap<FastifyRequest, { result: MissResult; varyEncoding: boolean }>()
/** The handler each {@link answersHits} wrapper stands for: the route's identity describes it. */
const handlers = new WeakMap<Function, Function>()

/**
 * The route's handler, answering a hit its lookup found once every preHandler ran (a guard
 * placed after a wrapped copy of the lookup refuses the request first); otherwise the handler.
 */
function answersHits(handler: RouteHandlerMethod): RouteHandlerMethod {
  const answering = function (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) {
    const hit = hits.get(request)
    if (hit === undefined) {
      const miss = pendingMisses.get(request)
      if (miss !== undefined) {
        // Recorded from here: the headers every preHandler set are this request's (a user's),
        // as they are on a hit.
        pendingMisses.delete(request)
        misses.set(reply.raw, miss.result)
        record(reply, miss.result, miss.varyEncoding)
        answerFromResult(reply.raw, miss.result)
      }
      return handler.call(this, request, reply)
    }
    hits.delete(request)
    reply.hijack()
    // Headers the hooks before set on the reply (CORS, security headers) go out as they would
    // without the cache; the stored ones replace those of the same name.
    for (const [name, value] of Object.entries(reply.getHeaders()))
      if (value !== undefined) reply.raw.setHeader(name, value)
    answerFromResult(reply.raw, hit)
    return undefined
  } as RouteHandlerMethod
  handlers.set(answering, handler)
  return answering
}

/** The handler a route was declared with, under the wrappers {@link answersHits} made. */
function unwrapped(fn: Function): Function {
  let inner = fn
  for (let next = handlers.get(inner); next !== undefined; next = handlers.get(inner)) inner = next
  return inner
}

function act(
  result: LookupResult,
  request: FastifyRequest,
  reply: FastifyReply,
  varyEncoding: boolean,
  done: HookHandlerDoneFunction,
  routeCache: RouteCache,
): void {
  lookedUp.add(request)
  if (result.kind === 'hit' || result.kind === 'not-modified') {
    hits.set(request, result)
    done()
    return
  }
  if (result.kind === 'miss') {
    pendingMisses.set(request, { result, varyEncoding })
    // A hook after the lookup answered (a guard), or the route's handler is not the cache's (a
    // hook replaced it): nothing to store, and the requests waiting on this miss go on.
    const abandoned = () => {
      if (!pendingMisses.delete(request)) return
      result.recorder.abort("the route's handler did not run")
      // A success no hook of the cache's saw: the route's handler is not the one the cache
      // wrapped. Said once per route: none of its responses can be stored.
      if (reply.raw.statusCode < 300 && !handlerReplaced.has(routeCache)) {
        handlerReplaced.add(routeCache)
        request.log.warn(
          `cachePlugin: route ${methodsOf(routeCache.route)} ${routeCache.announced} answered a request without the handler the cache wrapped (an onRoute hook replaced route.handler, or answers some requests itself without calling it): such responses are not cached`,
        )
      }
    }
    reply.raw.once('finish', abandoned).once('close', abandoned)
    done()
    return
  }
  answerFromResult(reply.raw, result)
  done()
}

/**
 * Records a miss's response. Headers the hooks before the cache set on the reply (a request id,
 * rate-limit counters) are this request's, not the response's: they are not stored, and every hit
 * sends its own. Fastify keeps them on the reply until it writes the head, so they are set on the
 * raw response first (where the recorder sees what was set before the cache), and left out of
 * the head Fastify writes unless a later hook or the handler changed them. With `varyEncoding`,
 * the response says `Vary: Accept-Encoding`.
 */
function record(reply: FastifyReply, miss: MissResult, varyEncoding: boolean): void {
  const res = reply.raw
  const earlier = reply.getHeaders()
  for (const [name, value] of Object.entries(earlier)) if (value !== undefined) res.setHeader(name, value)
  // Set by the handler or a later hook: its own, even at the value a hook before had set.
  const touched = trackFastifyReplyHeaders(reply)
  recordNodeResponse(res, miss, touched)
  const writeHead = res.writeHead
  res.writeHead = function (this: ServerResponse, code: number, ...rest: unknown[]) {
    const at = typeof rest[0] === 'string' ? 1 : 0
    const given = rest[at]
    if (given !== null && typeof given === 'object' && !Array.isArray(given)) {
      const kept: OutgoingHttpHeaders = {}
      for (const [name, value] of Object.entries(given as OutgoingHttpHeaders)) {
        const lower = name.toLowerCase()
        const before = earlier[lower]
        if (before === undefined || touched.has(lower) || String(before) !== String(value)) kept[name] = value
      }
      rest[at] = kept
    }
    if (varyEncoding) {
      const headers = rest[at] as OutgoingHttpHeaders | undefined
      const vary = headers?.vary ?? res.getHeader('vary')
      const list = vary === undefined ? '' : String(vary)
      if (!/(^|,)\s*(accept-encoding|\*)\s*(,|$)/i.test(list)) {
        const value = list === '' ? 'Accept-Encoding' : `${list}, Accept-Encoding`
        if (headers !== null && typeof headers === 'object' && !Array.isArray(headers)) headers.vary = value
        else res.setHeader('vary', value)
      }
    }
    return (writeHead as (...args: unknown[]) => ServerResponse).call(this, code, ...rest)
  } as ServerResponse['writeHead']
}

function viewOf(
  request: FastifyRequest,
  site: string,
  refreshHeader: string,
  refreshes: Map<string, Refresh>,
): HttpRequestView<FastifyRequest> {
  const taken = takeFastifyRefresh(request.raw, request.headers, refreshHeader, refreshes)
  const refresh = taken === false ? undefined : taken
  const host = request.host
  // Under `trustProxy` the host comes from `X-Forwarded-Host`, and the `Host` header the handler
  // can still read is another input; a hook that rewrote the `Host` header (a domain alias) makes
  // the request another one than a client of that host sends.
  const keyExtra = fastifyHostKeyPart(host, request.raw, request.headers)
  return {
    method: request.method,
    // The target as the client sent it; a rewritten one bypasses (see `fastifyRewrite`).
    url: fastifyTarget(request.raw)?.sent ?? request.url,
    headers: request.headers,
    // The credentials the client sent, whatever the hooks before the cache did to the headers.
    rawHeaders: request.raw.rawHeaders,
    // The credential and body lines as the server emitted the request (under `inject()`, as the
    // cache's first hook found them): a hook may strip a line from `rawHeaders` too.
    arrivedLines:
      fastifyArrivedLines(request.raw) ?? (refresh === undefined ? undefined : refreshArrivedLines(refresh)),
    protocol: request.protocol,
    host,
    ...(keyExtra === undefined ? {} : { keyExtra }),
    site,
    raw: request,
    ...(refresh === undefined ? {} : { refresh }),
    // The copy of a refresh that is over (abandoned while a slow hook ran): neither answered
    // from the stale entry (which would start another refresh) nor stored.
    ...(taken === false ? { bypass: 'refresh-over' } : {}),
  }
}
