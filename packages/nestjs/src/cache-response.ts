import { randomBytes } from 'node:crypto'
import { type IncomingMessage, ServerResponse } from 'node:http'
import {
  applyDecorators,
  type CallHandler,
  type ExecutionContext,
  Inject,
  Injectable,
  type NestInterceptor,
  Optional,
  SetMetadata,
  UseInterceptors,
} from '@nestjs/common'
import { ApplicationConfig, HttpAdapterHost, ModulesContainer } from '@nestjs/core'
import {
  type CacheBackend,
  CacheConfigError,
  CacheError,
  type Duration,
  type MinimalBackend,
} from '@cache/core'
import { optionNames, processLogger, readOptions } from '@cache/core/backend'
import {
  answerFromResult,
  arrivalOf,
  fastifyArrivedLines,
  fastifyHostKeyPart,
  fastifyParsesQueriesItself,
  fastifyQueryReplaced,
  fastifyRewrite,
  fastifyServerCallsAlone,
  fastifySharedServerBypass,
  fastifyHookNoted,
  fastifyTarget,
  HttpCache,
  hostKeyPart,
  HTTP_CACHE_OPTION_NAMES,
  type HttpCacheOptions,
  type KnownOptions,
  optionsArgument,
  type HttpRequestView,
  type LookupResult,
  takeFastifyRefresh,
  injectRefresh,
  noteFastifyArrivals,
  type Refresh,
  type RefreshEntry,
  recordNodeResponse,
  refreshArrivedLines,
  trackFastifyReplyHeaders,
  refreshInProcess,
  resolveHttpCacheOptions,
} from '@cache/http'
import { from, mergeMap, type Observable, of } from 'rxjs'
import { expressBypass, sentUrlOf, watchExpressApp } from './express-platform.js'
import { frontPassOf } from './front.js'
import { fastifyAppChosenByRequest } from './fastify-routes.js'
import { declare, siteOf } from './handler-sites.js'
import { noteFastifyApplication } from './route-handlers.js'
import { CACHE_BACKEND, CACHE_RESPONSE_OPTIONS } from './tokens.js'
import { registerHandlerBackend } from './invalidation-targets.js'
import { OuterInterceptorWatch } from './outer-interceptors.js'
import { handlerChosenByRequest } from './versioning.js'

/**
 * The options of {@link CacheResponse}: those of `@cache/http` (`ttl`, `tags`, `vary`, `key`,
 * `keyPrefix`, `staleWhileRevalidate`, `maxBodySize`, `allowAuthorized`, `allowCookies`,
 * `statusHeader`, `cacheControl`, …, each documented there with its default). `key`, `tags` and
 * `bypass` functions get the platform's request: Express's `Request` or Fastify's `FastifyRequest`.
 * `backend` defaults to the one {@link CacheModule} provides.
 */
export interface CacheResponseOptions extends HttpCacheOptions<any> {
  /**
   * Makes this handler's responses answerable by the front door of `CacheModule.forRoot({ front:
   * true })`, which replays fresh hits from an in-process backend before Nest runs: **for those
   * hits no middleware, guard, interceptor, pipe or exception filter runs**, nor Express or Fastify
   * (their hooks included). Only for handlers whose stored response is the whole answer, the same
   * for every client, at a URL no middleware rewrites for some requests (the front answers by the
   * URL as it arrived; on Fastify, `rewriteUrl` and route constraints other than the built-in `host` stop the
   * application at start-up). Not with `key` or `bypass` (functions of the platform's request,
   * which the front does not have): a `CacheConfigError`. Default: `false`.
   */
  frontSkipsAllMiddleware?: boolean
}

const KNOWN: KnownOptions = {
  names: optionNames<CacheResponseOptions>({ ...HTTP_CACHE_OPTION_NAMES, frontSkipsAllMiddleware: true }),
  where: '@CacheResponse()',
}

/** Marks the copy of a request that refreshes a stale entry; its value is a random id. */
const REFRESH_HEADER = 'x-cache-nestjs-refresh'
const refreshes = new Map<string, Refresh>()
/** The key of the request each refresh refreshes: its copy must be keyed the same, or stores nothing. */
const refreshKeys = new WeakMap<Refresh, string | undefined>()
/**
 * The front door's site and routed URL of each refresh started at one: its copy (handed to the
 * application, never through the front) stores there when it is routed and keyed as the request
 * it refreshes, or the front would go on answering from nothing and every stale hit run the handler.
 */
const refreshFronts = new WeakMap<Refresh, { site: string; url: string }>()
/** The caches whose refresh was keyed otherwise, logged once each. */
const refreshKeyLogged = new WeakSet<HttpCache>()
/** The caches whose refresh was answered before it reached them, logged once each. */
const refreshAnsweredLogged = new WeakSet<HttpCache>()

/** Requests a cache interceptor already took (`@CacheResponse` on a controller and on its method). */
const claimed = new WeakSet<IncomingMessage>()

/**
 * Caches the responses of a controller method, or of every method of a controller: a Nest
 * interceptor, so it runs where Nest runs interceptors — after middleware and guards (a request a
 * guard denies never reaches the cache, nor gets a stored response), before pipes and the handler
 * (pipes run on a miss only: what they check must be in the key, i.e. the URL or `vary`).
 *
 * Works on `@nestjs/platform-express` and `@nestjs/platform-fastify`, for handlers that return a
 * value and handlers that write with `@Res()`. Entries are per handler: the controller, the
 * method and the guards on both are part of where an entry was made, so two controllers answering
 * the same URL never share one. The safety rules are `@cache/http`'s: only `GET` (and `HEAD` from
 * it), no `Authorization`/`Cookie` requests, no `Set-Cookie`/`private`/`no-store`/`Vary: *`
 * responses, errors never stored.
 *
 * ```ts
 * @Get(':id')
 * @CacheResponse({ ttl: '1m', tags: ['products'] })
 * find(@Param('id') id: string) { … }
 * ```
 *
 * @param options the options, or a TTL alone (`60`, `'5m'`); checked now (`CacheConfigError`).
 *   One argument only: `@CacheResponse(60, { vary })` is refused (write
 *   `@CacheResponse({ ttl: 60, vary })`), as is `null`.
 */
export function CacheResponse(options?: CacheResponseOptions | Duration): ClassDecorator & MethodDecorator
export function CacheResponse(...args: unknown[]): ClassDecorator & MethodDecorator {
  // Read by name, once: a settings class's getters and methods, inherited values (Object.create)
  // and non-enumerable properties are options too; only this plain copy is used from here on
  // (spread or destructured, the given object would lose them, and bob be served alice's body).
  const options = readOptions(
    optionsArgument<CacheResponseOptions>(args, '@CacheResponse'),
    KNOWN.names,
    KNOWN.where,
  )
  // A bad option stops the application while its controllers load, naming the option.
  resolveHttpCacheOptions(options, KNOWN)
  checkFrontOption(options)
  const decorate = applyDecorators(
    SetMetadata(CACHE_RESPONSE_OPTIONS, options),
    UseInterceptors(CacheResponseInterceptor),
  ) as (target: object, key?: string | symbol, descriptor?: TypedPropertyDescriptor<unknown>) => void
  return ((target: object, key?: string | symbol, descriptor?: TypedPropertyDescriptor<unknown>) => {
    declare(target)
    registerHandlerBackend(options)
    return decorate(target, key, descriptor)
  }) as ClassDecorator & MethodDecorator
}

function checkFrontOption(options: CacheResponseOptions): void {
  const front = options.frontSkipsAllMiddleware
  if (front === undefined || front === false) return
  if (front !== true)
    throw new CacheConfigError('frontSkipsAllMiddleware', `expected a boolean, got ${String(front)}`)
  for (const name of ['key', 'bypass'] as const)
    if (options[name] !== undefined)
      throw new CacheConfigError(
        'frontSkipsAllMiddleware',
        `cannot be combined with ${name}: the front answers before the platform builds the request that ${name} is a function of`,
      )
}

/**
 * The response cache of one handler with `options`, writing to `backend` unless the options name
 * one; entries are marked for the front door when the handler is. The options are read by name
 * again: metadata set without `@CacheResponse` (`SetMetadata` beside the interceptor) may be a
 * settings class.
 *
 * @param hiddenSelection Nest's versioning picks the handler of the URL by the request (see
 *   `chosenByRequest`): `cacheControl` then sends its responses `private`.
 */
export function httpCacheFor(
  options: CacheResponseOptions,
  backend: CacheBackend | MinimalBackend | undefined,
  hiddenSelection: boolean,
): HttpCache {
  const { frontSkipsAllMiddleware, ...http } = readOptions(options, KNOWN.names, KNOWN.where)
  const settings = resolveHttpCacheOptions({ ...http, backend: http.backend ?? backend })
  settings.frontSkipsAllMiddleware = frontSkipsAllMiddleware === true
  settings.hiddenSelection = hiddenSelection
  return new HttpCache({}, settings)
}

/** The request and response of one platform, and how to answer on it without Nest. */
interface Platform {
  view: Omit<HttpRequestView, 'site'>
  /** The URL the platform routed the request by (after any rewrite by middleware or `rewriteUrl`). */
  routedUrl(): string
  /** Fastify: the app reads queries with a parser of its own (`querystringParser`). */
  parsesQueries?: boolean
  /**
   * Fastify: a hook replaced or changed `request.query` (fastify-qs, a default filled in), with
   * a query string or without one (see `fastifyQueryReplaced`).
   */
  queryReplaced?: boolean
  /**
   * Fastify: why a request cached under `keyPrefix` bypasses because of the apps sharing its
   * server (`site`), if so (see `fastifySharedServerBypass`).
   */
  sharedServer?(keyPrefix: string): string | undefined
  /**
   * Fastify: whether any route of the application is one Fastify chooses by the request besides
   * its URL and built-in host (see `fastifyAppChosenByRequest`).
   */
  chosenByRoute?(): boolean
  /** Fastify: whether the server calls the app alone (its front's entries are then its own). */
  servedAlone?(): boolean
  /** Fastify: refreshes a stale entry with a copy of the request through `inject()` (instead of Express's application). */
  revalidate?(refresh: Refresh): (() => void) | undefined | false
  /** The Node request and response underneath. */
  req: IncomingMessage
  res: ServerResponse
  /** After a replay: Nest's own sending of the handler's (absent) result becomes a no-op. */
  answered(): void
  /**
   * Before a lookup is answered: headers set for this request before the interceptor ran that live
   * outside the Node response (Fastify hooks' `reply.header()`) move onto it, so that a replay
   * sends them with the stored ones and a recording leaves them out. Returns what to run once
   * the recording is installed.
   */
  prepare?(): ((touched?: ReadonlySet<string>) => void) | undefined
  /**
   * On a miss, after `prepare`: starts noting the headers the handler sets or removes, when the
   * platform keeps them off the raw response until it writes the head (Fastify's reply).
   */
  trackHeaders?(): ReadonlySet<string>
}

/**
 * The interceptor behind {@link CacheResponse}: caches handlers that carry its metadata. Usable
 * on its own with `@UseInterceptors(CacheResponseInterceptor)` plus `SetMetadata`, or as
 * `APP_INTERCEPTOR` (handlers without `@CacheResponse` are left alone).
 */
export class CacheResponseInterceptor implements NestInterceptor {
  private readonly caches = new WeakMap<Function, WeakMap<Function, HttpCache>>()
  private readonly routeChosenCaches = new WeakMap<Function, WeakMap<Function, HttpCache>>()
  private unknownPlatformLogged = false

  constructor(
    private readonly backend?: CacheBackend,
    adapterHost?: HttpAdapterHost,
    modules?: ModulesContainer,
    /** Read at each handler's first request, when versioning is settled. */
    private readonly config?: ApplicationConfig,
  ) {
    // On Express, the URL each request was sent with is known from the application's first request on.
    const adapter = adapterHost?.httpAdapter
    if (adapter?.getType?.() === 'express') watchExpressApp(adapter.getInstance())
    // On Fastify, each request's target is noted before any hook of the app runs, with or without
    // CacheModule: Nest makes the interceptor before it registers the routes. The app is noted on
    // its server with its handlers' prefixes (apps sharing a server cache only under distinct ones).
    if (adapter?.getType?.() === 'fastify') noteFastifyApplication(adapter.getInstance(), modules)
  }

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (context.getType() !== 'http') return next.handle()
    const handler = context.getHandler()
    const owner = context.getClass()
    const options = (metadataOf(handler) ?? metadataOf(owner)) as CacheResponseOptions | undefined
    if (options === undefined) return next.handle()
    const http = context.switchToHttp()
    const platform = platformOf(http.getRequest(), http.getResponse())
    if (platform === undefined) {
      if (!this.unknownPlatformLogged) {
        this.unknownPlatformLogged = true
        processLogger().warn(
          `@cache/nestjs: ${owner.name}.${handler.name} runs on a platform other than Express or Fastify; its responses are not cached`,
        )
      }
      return next.handle()
    }
    if (claimed.has(platform.req)) return next.handle()
    claimed.add(platform.req)
    const cache = this.cacheFor(owner, handler, options, platform.chosenByRoute?.() === true)
    // On a server the app shares, or one that calls it through a listener of the user's, the
    // front may hand the request to another app: its entries are never made there.
    const front =
      options.frontSkipsAllMiddleware === true && platform.servedAlone?.() !== false
        ? frontSite(platform, cache, options.backend ?? this.backend)
        : undefined
    const view: HttpRequestView = {
      ...platform.view,
      site: front ?? siteOf(owner, handler, platform.req),
    }
    // Apps sharing the server without prefixes of their own cannot be told apart.
    if (platform.sharedServer !== undefined) view.bypass ??= platform.sharedServer(cache.settings.keyPrefix)
    const taken = takeFastifyRefresh(platform.req, platform.req.headers, REFRESH_HEADER, refreshes)
    // The copy of a refresh that is over (abandoned while a slow guard or middleware ran):
    // neither answered from the stale entry (which would start another refresh) nor stored.
    if (taken === false) view.bypass ??= 'refresh-over'
    else if (taken !== undefined) {
      view.refresh = taken
      // The copy of a refresh the front's site keyed: stored there when routed as its request was
      // (the key check below still holds it to the very key).
      const at = refreshFronts.get(taken)
      if (at !== undefined && front === undefined && platform.routedUrl() === at.url) view.site = at.site
      // An `inject()` copy: keyed on the credentials the request it refreshes was sent with.
      if (view.refresh !== undefined && view.arrivedLines === undefined)
        view.arrivedLines = refreshArrivedLines(view.refresh)
      // A copy the application resolves otherwise (another protocol, host or address) would be
      // stored under another key: the refresh fails, counted and emitted.
      if (view.refresh !== undefined && cache.keyFor(view) !== refreshKeys.get(view.refresh)) {
        view.bypass ??= 'refresh-key-changed'
        if (!refreshKeyLogged.has(cache)) {
          refreshKeyLogged.add(cache)
          processLogger().warn(
            `@cache/nestjs: ${owner.name}.${handler.name}: a stale-while-revalidate refresh resolved under another key than the entry it refreshes (another protocol, host or header as the application reads the copy); it is not stored, and the stale entry is served until it expires. Logged once per handler`,
          )
        }
      }
    }
    // Fastify with a query parser of the app's own: which query strings it reads as the same query
    // cannot be told, so one query could be stored under keys no invalidation reaches together.
    // A query a hook replaced or changed, also without a query string (a default from a header).
    if (
      cache.settings.key === undefined &&
      ((platform.parsesQueries === true && /[?;]/.test(view.url)) || platform.queryReplaced === true)
    )
      view.bypass ??= 'querystring-parser'
    const outer = new OuterInterceptorWatch(http.getResponse())
    const setBefore = outer.statusSetBefore(view.method, handler)
    if (setBefore !== undefined) view.bypass ??= setBefore
    const result = cache.lookup(view, {
      revalidate: (refresh) => {
        refreshKeys.set(refresh, cache.keyFor(view))
        if (front !== undefined) refreshFronts.set(refresh, { site: front, url: platform.routedUrl() })
        return platform.revalidate !== undefined
          ? platform.revalidate(refresh)
          : revalidate(platform.req, refresh, (status) => {
              if (refreshAnsweredLogged.has(cache)) return
              refreshAnsweredLogged.add(cache)
              processLogger().warn(
                `@cache/nestjs: ${owner.name}.${handler.name}: a stale-while-revalidate refresh was answered ${status} before it reached the cache (middleware or a guard before the interceptor, such as a rate limiter, answered it); it counts as a failed refresh, the stale entry stays, and the next stale hit tries again. Logged once per handler`,
              )
            })
      },
      verdict: outer.verdict,
    })
    return result instanceof Promise
      ? from(result).pipe(mergeMap((settled) => act(settled, platform, outer.around(next, settled))))
      : act(result, platform, outer.around(next, result))
  }

  /**
   * One cache per controller and method (a method inherited by two controllers gets two), and
   * another for an application whose Fastify routes are chosen by the request (`private` under
   * `cacheControl`; one interceptor class may serve two applications).
   */
  private cacheFor(
    owner: Function,
    handler: Function,
    options: CacheResponseOptions,
    chosenByRoute: boolean,
  ): HttpCache {
    const caches = chosenByRoute ? this.routeChosenCaches : this.caches
    let byHandler = caches.get(owner)
    if (byHandler === undefined) {
      byHandler = new WeakMap()
      caches.set(owner, byHandler)
    }
    let cache = byHandler.get(handler)
    if (cache === undefined) {
      cache = httpCacheFor(
        options,
        this.backend,
        chosenByRoute || handlerChosenByRequest(this.config, owner, handler),
      )
      byHandler.set(handler, cache)
    }
    return cache
  }
}
Injectable()(CacheResponseInterceptor)
Optional()(CacheResponseInterceptor, undefined as never, 0)
Inject(CACHE_BACKEND)(CacheResponseInterceptor, undefined as never, 0)
Optional()(CacheResponseInterceptor, undefined as never, 1)
Inject(HttpAdapterHost)(CacheResponseInterceptor, undefined as never, 1)
Optional()(CacheResponseInterceptor, undefined as never, 2)
Inject(ModulesContainer)(CacheResponseInterceptor, undefined as never, 2)
Optional()(CacheResponseInterceptor, undefined as never, 3)
Inject(ApplicationConfig)(CacheResponseInterceptor, undefined as never, 3)

function act(result: LookupResult, platform: Platform, next: CallHandler): Observable<unknown> {
  const installed = platform.prepare?.()
  if (result.kind === 'hit' || result.kind === 'not-modified') {
    answerFromResult(platform.res, result)
    platform.answered()
    // Nest hands the (absent) result to the response next; this one is complete already.
    return of(undefined)
  }
  answerFromResult(platform.res, result)
  if (result.kind === 'miss') {
    const touched = platform.trackHeaders?.()
    recordNodeResponse(platform.res, result, touched)
    installed?.(touched)
  }
  return next.handle()
}

function metadataOf(target: Function): unknown {
  const api = Reflect as unknown as { getMetadata?(key: unknown, target: object): unknown }
  return api.getMetadata?.(CACHE_RESPONSE_OPTIONS, target)
}

/** The `@CacheResponse` options on a handler or a controller. */
export function cacheOptionsOf(target: Function): CacheResponseOptions | undefined {
  return metadataOf(target) as CacheResponseOptions | undefined
}

/**
 * The front door's site for a request to a handler marked `frontSkipsAllMiddleware`, when the
 * front computed this very key for it: the request passed the front, the platform routed the URL
 * it arrived with, and nothing on the way changed what the key is made of (URL, host, `vary`
 * and versioning headers). Otherwise `undefined`: the entry is made at the handler's own site,
 * out of the front's reach.
 */
function frontSite(
  platform: Platform,
  cache: HttpCache,
  backend: CacheBackend | MinimalBackend | undefined,
): string | undefined {
  const pass = frontPassOf(platform.req)
  if (pass === undefined || pass.method !== platform.view.method || platform.routedUrl() !== pass.url)
    return undefined
  const group = pass.door.groupOf(cache.settings, backend)
  const key = group === -1 ? undefined : pass.keys[group]
  if (key === undefined) return undefined
  const site = pass.door.siteOf(platform.req, group)
  return cache.keyFor({ ...platform.view, site }) === key ? site : undefined
}

/** Express's request (platform-express) or Fastify's request and reply (platform-fastify). */
function platformOf(request: any, response: any): Platform | undefined {
  if (response instanceof ServerResponse) return expressPlatform(request, response)
  if (response?.raw instanceof ServerResponse && request?.raw !== undefined)
    return fastifyPlatform(request, response)
  return undefined
}

function expressPlatform(req: any, res: ServerResponse): Platform {
  watchExpressApp(req.app)
  const headers = (req as IncomingMessage).headers
  const bypass = expressBypass(req)
  // Express resolves the host and protocol with its `trust proxy` setting.
  const host: string | undefined = typeof req.host === 'string' ? req.host : headers.host
  return {
    view: {
      method: req.method,
      url: req.originalUrl ?? req.url,
      headers,
      // The credentials the client sent, whatever middleware or a guard did to the headers.
      rawHeaders: (req as IncomingMessage).rawHeaders,
      // The credential and body lines as the server emitted the request: a layer may strip a
      // line from `rawHeaders` too.
      arrivedLines: arrivalOf(req)?.lines,
      protocol: typeof req.protocol === 'string' ? req.protocol : 'http',
      host,
      // The Host the client sent too, when middleware rewrote the header (a domain alias).
      ...hostPart(host, req),
      ...(bypass === undefined ? {} : { bypass }),
      raw: req,
    },
    req,
    res,
    routedUrl: () => `${req.baseUrl ?? ''}${req.url}`,
    answered() {
      markAnswered(res, EXPRESS_SENDS)
    },
  }
}

function fastifyPlatform(request: any, reply: any): Platform {
  const raw = request.raw as IncomingMessage
  const headers = raw.headers
  // Fastify resolves the host and protocol with its `trustProxy` option.
  const host: string | undefined = typeof request.host === 'string' ? request.host : headers.host
  const server = request.server
  // An interceptor made outside Nest's injector (`new CacheResponseInterceptor()`) installed no
  // hook: the server notes the target of the requests that arrive from now on.
  noteFastifyArrivals(server?.server)
  // The target as sent, noted before any hook ran: a request that a server in front of Fastify
  // (`serverFactory`), `rewriteUrl` or a hook made another one is not keyed under it, nor one
  // whose target was not noted (`rewritten-url`).
  const noted = fastifyTarget(raw)
  const url: string = noted?.sent ?? request.url ?? raw.url
  const rewritten = fastifyRewrite(raw)
  const keyExtra = fastifyHostKeyPart(host, raw, request.headers ?? raw.headers)
  return {
    view: {
      method: request.method,
      url,
      ...(rewritten === undefined ? {} : { bypass: rewritten }),
      headers,
      rawHeaders: raw.rawHeaders,
      // As the server emitted the request, or under `inject()` as the cache's first hook found
      // them: middleware may strip a credential from `rawHeaders` too.
      arrivedLines: fastifyArrivedLines(raw),
      protocol: typeof request.protocol === 'string' ? request.protocol : 'http',
      host,
      // The Host the client sent too, when a hook rewrote the header (a domain alias).
      ...(keyExtra === undefined ? {} : { keyExtra }),
      raw: request,
    },
    req: raw,
    res: reply.raw,
    routedUrl: () => raw.url ?? '',
    // A parser of the app's own; a layer that replaced or changed `request.query` (fastify-qs).
    parsesQueries: server !== undefined && parsesQueries(server),
    queryReplaced: fastifyQueryReplaced(request),
    // Apps on one server (`serverFactory` returning a shared server) cache only under distinct prefixes.
    sharedServer: (keyPrefix) => fastifySharedServerBypass(server, keyPrefix),
    servedAlone: () => fastifyServerCallsAlone(server),
    chosenByRoute: () => server !== undefined && fastifyAppChosenByRequest(server),
    ...(typeof server?.inject === 'function'
      ? {
          revalidate: (refresh: Refresh) => {
            // No first hook of the cache on this route (an interceptor made with `new` outside
            // Nest's injector, after Fastify compiled its routes): the copy could not be known as
            // the refresh, so it would run the handler for nothing.
            if (!fastifyHookNoted(raw)) {
              refresh.fail(
                new CacheError(
                  `the refresh of ${refresh.key} was not run: the route has no hook of the cache to know its copy by (an interceptor made with \`new\` outside Nest's injector); the stale entry is served until it expires`,
                ),
              )
              return () => {}
            }
            return injectRefresh(server, raw, url, refresh, refreshes, REFRESH_HEADER)
          },
        }
      : {}),
    prepare: () => fastifyHookHeaders(reply),
    // Set by the handler (`@Header`, `reply.header`) or a later hook: its own, even at the value
    // a hook before the cache had set.
    trackHeaders: () => trackFastifyReplyHeaders(reply),
    answered() {
      // Fastify leaves the (already sent) response alone, and Nest's sending of the result does nothing.
      reply.hijack()
      // Assigned on the reply: a swapped prototype (as on Express) measured no faster here.
      for (const method of FASTIFY_SENDS) reply[method] = returnThis
    },
  }
}

/**
 * The `Host` header, in the key when the platform resolved another host (a trusted proxy's
 * `X-Forwarded-Host`): the handler can still read it; and the `Host` the client sent, when
 * middleware rewrote the header (see `hostKeyPart`).
 */
function hostPart(resolved: string | undefined, req: IncomingMessage): { keyExtra?: string } {
  const keyExtra = hostKeyPart(resolved, req)
  return keyExtra === undefined ? {} : { keyExtra }
}

/** What Nest, an outer interceptor or a filter may call to send a result on Express's response. */
const EXPRESS_SENDS = ['status', 'send', 'json', 'jsonp', 'render', 'redirect', 'sendFile', 'end']
/** The same on Fastify's reply. */
const FASTIFY_SENDS = ['send', 'status', 'code', 'header', 'headers', 'type']

function returnThis(this: unknown): unknown {
  return this
}

const answeredPrototypes = new WeakMap<object, object>()

/**
 * After a replay, Nest's sending of the handler's (absent) result must do nothing: the response
 * gets a prototype, made once per original prototype, whose sending methods return at once.
 * Assigning eight methods on each Express response instead cost about a fifth more CPU per hit
 * (341 against 431 µs per request, medians of 8 alternated runs of 15,000 hits, loaded machine).
 */
function markAnswered(target: object, methods: readonly string[]): void {
  const proto = Object.getPrototypeOf(target) as object
  let answered = answeredPrototypes.get(proto)
  if (answered === undefined) {
    const made = Object.create(proto) as Record<string, unknown>
    for (const method of methods) made[method] = returnThis
    answered = made
    answeredPrototypes.set(proto, answered)
  }
  Object.setPrototypeOf(target, answered)
}

/**
 * Headers on a Fastify reply when the interceptor runs were set for this request by hooks (a
 * request id, rate-limit counters, CORS) or by Nest (`@Header`): they go on the Node response now,
 * where a replay's `writeHead` adds the stored headers to them, and Fastify's `writeHead` of a
 * miss leaves out those it would send unchanged, so they are not recorded. What the client gets
 * (and what the cache decides on) still has them. Headers a layer set on the Node response itself
 * (a Nest middleware through middie, a hook's `reply.raw.setHeader`) stay there as Fastify leaves
 * them: a `Set-Cookie`, `private` or `Vary` of theirs decides what is stored.
 *
 * @fastify/compress adds `Vary: Accept-Encoding` only to the responses it compresses: an identity
 * response stored first would then be replayed to gzip clients, and a compressed one stored under
 * a key without the encoding would not be reached by URL invalidation. With the plugin, every
 * response says `Vary: Accept-Encoding`, so each encoding is a variant of the URL's entry, and
 * `invalidateResponse(url)` removes them all.
 */
function fastifyHookHeaders(reply: any): ((touched?: ReadonlySet<string>) => void) | undefined {
  if (typeof reply.getHeaders !== 'function') return undefined
  if (reply.server?.hasReplyDecorator?.('compress') === true) {
    const vary = reply.getHeader?.('vary') as string | string[] | number | undefined
    const names = (Array.isArray(vary) ? vary : vary === undefined ? [] : [String(vary)])
      .flatMap((v) => v.split(','))
      .map((v) => v.trim().toLowerCase())
    if (!names.includes('accept-encoding') && !names.includes('*'))
      reply.header(
        'vary',
        vary === undefined ? 'accept-encoding' : `${[vary].flat().join(', ')}, accept-encoding`,
      )
  }
  const raw = reply.raw as ServerResponse
  if (raw.headersSent) return undefined
  // Fastify's `getHeaders()` includes what is on the Node response already (a Nest middleware's
  // or a hook's `res.setHeader`): Fastify never puts those in its `writeHead` object, which
  // leaves them on the response. Such a header is not moved, and is left alone when missing there
  // (counted as removed, a session cookie or `private` was dropped and the response stored).
  const current = reply.getHeaders() as Record<string, string | string[] | number | undefined>
  const moved: Record<string, string> = {}
  let onRaw: Record<string, string> | undefined
  let underneath: Record<string, number | string | string[]> | undefined
  for (const [name, value] of Object.entries(current)) {
    if (value === undefined) continue
    const lower = name.toLowerCase()
    const had = raw.getHeader(lower)
    if (had !== undefined && String(had) === String(value)) {
      onRaw ??= {}
      onRaw[lower] = String(value)
      continue
    }
    // A hook's `reply.header()` over the raw value: the raw one goes out again if the reply's is removed.
    if (had !== undefined) (underneath ??= {})[lower] = had
    raw.setHeader(name, value)
    moved[lower] = String(value)
  }
  return (touched: ReadonlySet<string> = NO_NAMES) => {
    const recording = raw.writeHead
    raw.writeHead = function (this: ServerResponse, code: number, ...rest: unknown[]) {
      const at = typeof rest[0] === 'string' ? 1 : 0
      const given = rest[at]
      if (given !== null && typeof given === 'object' && !Array.isArray(given)) {
        const kept: Record<string, unknown> = {}
        const names = new Set<string>()
        for (const [name, value] of Object.entries(given)) {
          const lower = name.toLowerCase()
          names.add(lower)
          if (touched.has(lower) || (moved[lower] ?? onRaw?.[lower]) !== String(value)) kept[name] = value
        }
        // Fastify sends every header its reply holds: one missing was removed from the reply since.
        for (const name of Object.keys(moved)) {
          if (names.has(name)) continue
          const before = underneath?.[name]
          if (before === undefined) raw.removeHeader(name)
          else raw.setHeader(name, before)
        }
        rest[at] = kept
      }
      return (recording as (...args: unknown[]) => ServerResponse).call(this, code, ...rest)
    } as ServerResponse['writeHead']
  }
}

const NO_NAMES: ReadonlySet<string> = new Set()

const queryParsers = new WeakMap<object, boolean>()
function parsesQueries(instance: object): boolean {
  let own = queryParsers.get(instance)
  if (own === undefined) {
    own = fastifyParsesQueriesItself(instance)
    queryParsers.set(instance, own)
  }
  return own
}

/**
 * Refreshes a stale entry in this process: Nest's Express application handles a copy of the
 * request (same URL, headers and connection, so that it passes the same middleware, guards and
 * pipes as any request and resolves as the request it refreshes). Never over the network: under
 * `node:cluster` (pm2's cluster mode) a copy sent to the listening port reaches another worker,
 * which does not know the refresh. A copy answered before the interceptor took it (a rate
 * limiter's 429, an auth layer's 401) is a failed refresh at once, logged once per handler.
 */
function revalidate(
  req: IncomingMessage & { app?: unknown; originalUrl?: string },
  refresh: Refresh,
  logOnce: (status: number) => void,
): (() => void) | false {
  const app = rootApp(req.app)
  if (app === undefined) return false
  const id = randomBytes(16).toString('hex')
  refreshes.set(id, refresh)
  const stop = refreshInProcess(app, {
    req,
    url: sentUrlOf(req),
    refresh,
    mark: (copy) => {
      copy.headers[REFRESH_HEADER] = id
    },
    // The interceptor takes the copy's id out as it sees it.
    reached: () => !refreshes.has(id),
    answeredBefore: logOnce,
  })
  return () => {
    refreshes.delete(id)
    stop()
  }
}

/** The top-level Express application of a request (a refresh enters where the request entered). */
function rootApp(app: unknown): RefreshEntry | undefined {
  let current = app as { handle?: unknown; parent?: unknown } | undefined
  while (current?.parent !== undefined) current = current.parent as typeof current
  return typeof current?.handle === 'function' ? (current as unknown as RefreshEntry) : undefined
}
