import type { IncomingMessage, ServerResponse } from 'node:http'
import type { CacheBackend } from '@cache/core'
import { isGeneration, sameGenerations } from '@cache/core/backend'
import {
  answerFromResult,
  arrivalOf,
  HttpCache,
  type HttpRequestView,
  isStoredResponse,
  type LookupContext,
  type LookupResult,
  type MissResult,
  nodeRequestView,
  type ExpressQueryRequest,
  expressQueryParserBypass,
  expressQueryReplaced,
  expressArrivedAsRouted,
  expressRoutedAsSent,
  frontSeesAsSent,
  type Refresh,
  type RefreshEntry,
  recordNodeResponse,
  refreshInProcess,
  requestKey,
  responseCachingEnabled,
  hostKeyPart,
  splitAuthority,
  storedValue,
} from '@cache/http'
import {
  type CachePosition,
  cachesPassed,
  DispatchWatch,
  observeDispatch,
  setCachesPassed,
  sentUrl,
  unwatchDispatch,
  watchDispatch,
  isThenable,
} from './dispatch.js'
import type { Settings } from './options.js'
import { siteOf } from './site.js'
import { headRoutedApart } from './head-route.js'

type Request = IncomingMessage & {
  originalUrl?: string
  hostname?: string
  protocol?: string
  baseUrl?: string
  app?: any
}

/**
 * Runs the rest of the request: `next` as middleware, the handler as a wrapper. When the cache
 * runs the handler to store its response, it passes the watch of that request's dispatch.
 */
export type Run = (watch?: DispatchWatch) => unknown

/** An Express app as far as a refresh needs it: its request handler and, when mounted, its parent. */
interface ExpressApp {
  handle?: (req: unknown, res: unknown, done: (error?: unknown) => void) => void
  parent?: ExpressApp
}

/**
 * Marks the synthetic request of a stale-while-revalidate refresh with the refresh it runs. Every
 * cache it passes answers it fresh (no hit, no shared flight); only the one that started it
 * reports (see `Refresh` in @cache/http).
 */
const REVALIDATE = Symbol.for('@cache/express revalidate')
/** The engine that started each refresh under way. */
const refreshOwners = new WeakMap<Refresh, ResponseCache>()
/** The refreshes whose copy reached the engine that started them. */
const refreshesReached = new WeakSet<Refresh>()

/**
 * The caches a request passed, outermost first, and the dispatch each one watches while it runs
 * the rest of the request: a cache inside another one that reads its entries (same backend and
 * `keyPrefix`) stores only what the outer one could have stored, or the outer one would replay it
 * to requests that never reached what runs between them.
 */
type Passed = { engine: ResponseCache; watch?: DispatchWatch; site?: string }[]

/**
 * The Express side of `cacheResponse`: tells the framework-neutral cache of @cache/http how
 * Express resolved the request (protocol, host, the URL it routes, where the cache sits) and what
 * ran between the cache and the handler, replays its hits with one `writeHead` and one `end`, and
 * records what the handler sends on a miss.
 */
export class ResponseCache {
  readonly http: HttpCache<Request>

  constructor(readonly settings: Settings) {
    this.http = new HttpCache<Request>({}, settings)
  }

  get observer() {
    return this.http.observer
  }

  backend(): CacheBackend {
    return this.http.backend()
  }

  /** The key of a request, or `undefined` when it bypasses the cache. */
  keyFor(req: Request): string | undefined {
    return this.http.keyFor(this.view(req, undefined, undefined, undefined, false))
  }

  /** The site of the cache in the app (`''` for entries every site shares), or `undefined`. */
  private siteOf(
    req: Request,
    anchor: Function | undefined,
    identity: string | undefined,
    receiver?: unknown,
  ): string | undefined {
    // Entries replayed by `front(app)` skip every middleware by the user's choice: one for every site.
    if (this.settings.frontSkipsAllMiddleware) return ''
    return siteOf(req, anchor, identity, receiver)
  }

  /**
   * How Express resolved the request, read as the cache needs it: the URL Express routes (or
   * `rewritten-url`), the protocol and host it resolved (under `trust proxy`, the forwarded ones),
   * and where the cache sits, observed from Express's dispatch from then on.
   */
  private view(
    req: Request,
    anchor: Function | undefined,
    identity: string | undefined,
    receiver: unknown,
    /** A lookup observes the app's dispatch from now on; `keyFor` only reads. */
    lookup = true,
  ): HttpRequestView<Request> {
    return new ExpressView(this, req, anchor, identity, receiver, lookup)
  }

  /** The site of `req` for {@link ExpressView}: observed for a lookup, only read for `keyFor`. */
  siteFor(
    req: Request,
    anchor: Function | undefined,
    identity: string | undefined,
    receiver: unknown,
    lookup: boolean,
  ): string | undefined {
    // The site a request this engine handles was looked up at is kept with its record on the request.
    const self = this.passedBy(req)
    if (!lookup) return self?.site ?? this.siteOf(req, anchor, identity, receiver)
    // Observed from now on: later requests of this app say where the cache sits as they go.
    observeDispatch(req)
    const site = this.siteOf(req, anchor, identity, receiver)
    if (site !== undefined && self !== undefined) self.site = site
    return site
  }

  /**
   * Serves `req` from the cache, or calls `run` (the handler, or `next`) and stores its response.
   * `position` says whether the app answers after the cache (middleware) or the cache wraps the
   * handler itself: it decides what may run between the cache and the response.
   */
  handle(
    req: Request,
    res: ServerResponse,
    run: Run,
    position: CachePosition,
    anchor?: Function,
    identity?: string,
    /** The object a decorated method was called on: two instances are two handlers. */
    receiver?: unknown,
  ): unknown {
    // A request this engine already handles (the same cache mounted twice) runs through.
    const passed = cachesPassed<Passed[number]>(req)
    if (passed !== undefined) for (const entry of passed) if (entry.engine === this) return run()
    // The copy of a refresh this engine started reached it: the engine settles that refresh now.
    const refresh = (req as any)[REVALIDATE] as Refresh | undefined
    if (refresh !== undefined && refreshOwners.get(refresh) === this) refreshesReached.add(refresh)
    const self: Passed[number] = { engine: this, watch: undefined, site: undefined }
    if (passed === undefined) setCachesPassed(req, [self])
    else passed.push(self)
    const context = new ExpressLookup(this, req)
    const result = this.http.lookup(this.view(req, anchor, identity, receiver), context)
    return isThenable(result)
      ? result.then((settled) => this.act(req, res, run, position, settled, self, context))
      : this.act(req, res, run, position, result, self, context)
  }

  /** This engine's record on `req`, once it handles it. */
  private passedBy(req: Request): Passed[number] | undefined {
    const passed = cachesPassed<Passed[number]>(req)
    if (passed === undefined) return undefined
    for (const entry of passed) if (entry.engine === this) return entry
    return undefined
  }

  /** Answers a hit, or runs the rest of the request (recording it on a miss the cache records). */
  private act(
    req: Request,
    res: ServerResponse,
    run: Run,
    position: CachePosition,
    result: LookupResult,
    self: Passed[number],
    context: ExpressLookup,
  ): unknown {
    if (answerFromResult(res, result)) return undefined
    if (result.kind !== 'miss' || !result.recording) return run()
    context.key = result.key
    context.self = self
    return this.lead(req, res, run, position, result, self)
  }

  /**
   * The fast path of `cache.front(app)`: replays a fresh hit from an in-process backend before the
   * app runs, only for entries stored with `frontSkipsAllMiddleware`, and returns `false` for
   * everything else (the app then answers as usual, with its own `cacheResponse` middleware
   * deciding what to store). Requests whose key Express could resolve differently
   * (`X-Forwarded-Host` or `X-Forwarded-Proto` under `trust proxy`) are never answered here.
   */
  serveFresh(req: Request, res: ServerResponse, app?: unknown): boolean {
    const method = req.method
    if (method !== 'GET' && method !== 'HEAD') return false
    // A HEAD the app routes to a HEAD handler of its own: the app answers.
    if (method === 'HEAD' && headRoutedApart(app, req.url ?? '/')) return false
    const s = this.settings
    // `bypass` is a function of the request as the app sees it: the app answers.
    if (s.bypass !== undefined || !responseCachingEnabled(s.enabledFromEnv)) return false
    const headers = req.headers
    if (
      s.key !== undefined ||
      headers['x-forwarded-host'] !== undefined ||
      headers['x-forwarded-proto'] !== undefined ||
      hasBody(req) ||
      // A target or `Host` rewritten by a listener before the front: another request than the one sent.
      !frontSeesAsSent(req)
    )
      return false
    if (!s.allowAuthorized && headers.authorization !== undefined) return false
    if (!s.allowCookies && headers.cookie !== undefined) return false
    const backend = this.backend()
    if (backend.sync === undefined) return false
    let entry: unknown
    let versions: number[]
    let key: string | undefined
    try {
      const resolved = requestKey(nodeRequestView(req), s.keyPrefix, s.vary)
      if (resolved === undefined) return false
      key = resolved.key
      const sync = backend.sync
      entry = storedValue(sync, key)
      if (!isStoredResponse(entry) || entry.front !== true) return false
      const versionKeys = this.http.versionKeysOf(resolved.scopes)
      versions = new Array<number>(versionKeys.length)
      for (let i = 0; i < versionKeys.length; i++) {
        const k = versionKeys[i]!
        // A scope without a generation yet matches no entry: the app answers and creates it.
        const generation = storedValue(sync, k)
        if (!isGeneration(generation)) return false
        versions[i] = generation
      }
    } catch (error) {
      this.observer.error('get', error, key)
      return false
    }
    const now = s.now()
    if (!sameGenerations(entry.versions, versions) || now >= entry.staleAt) return false
    // The entry is fresh and current: the engine's own lookup replays it the same way.
    this.observer.hit(key)
    const view = nodeRequestView(req, { site: '' })
    const replay = this.http.replayEntry(view, key, entry, now)
    answerFromResult(res, replay)
    return true
  }

  /**
   * Runs the handler and records what it sends: the watch of the dispatch says what ran after
   * the cache, and refuses the response (releasing the requests waiting for it) at the first
   * function a hit would skip.
   */
  private lead(
    req: Request,
    res: ServerResponse,
    run: Run,
    position: CachePosition,
    miss: MissResult,
    self: Passed[number],
  ): unknown {
    const watch = new DispatchWatch(position, observeDispatch(req), this.settings.skippedOnHits, req, res)
    self.watch = watch
    // Every change to what ran after the cache only makes a verdict final: release at the first.
    watch.onChange = () => {
      const verdict = watch.verdict()
      if (verdict !== undefined) miss.recorder.refuse(verdict)
    }
    // The dispatch is watched until the response settles, then decided on.
    const recorder = miss.recorder
    recordNodeResponse(res, {
      ...miss,
      recorder: {
        head: (head) => recorder.head(head),
        write: (chunk, encoding) => recorder.write(chunk, encoding),
        end: (chunk, options) => recorder.end(chunk, options),
        refuse: (reason) => recorder.refuse(reason),
        // Decided once the promises of the functions after the cache settled: a rejection
        // Express catches after the whole response was sent still means not stored. Work after
        // sending that is not over within collapseTimeout is not waited for: not stored (the
        // requests for the key would otherwise each wait collapseTimeout on it, for ever).
        finish: () => {
          let decided = false
          const timer = setTimeout(() => {
            if (decided) return
            decided = true
            unwatchDispatch(req, watch)
            recorder.abort('its work after sending was not over within collapseTimeout')
          }, this.settings.collapseTimeoutMs)
          timer.unref?.()
          watch.whenSettled(() => {
            if (decided) return
            decided = true
            clearTimeout(timer)
            recorder.finish()
            // A stored response stays watched: a `next` called later still finds the entry.
            void recorder.outcome.then(({ stored }) => {
              if (stored) this.removeOnLateVerdict(req, watch, miss.key)
              else unwatchDispatch(req, watch)
            })
          })
        },
        abort: (reason) => {
          unwatchDispatch(req, watch)
          recorder.abort(reason)
        },
        outcome: recorder.outcome,
      },
    })
    watchDispatch(req, watch)
    let result: unknown
    try {
      result = run(watch)
    } catch (error) {
      watch.fail()
      throw error
    }
    if (isThenable(result)) {
      // `then` called once (another thenable's may run work again, or throw): what is watched is
      // the promise it gives, which settles as the handler's does.
      const settled = result.then(undefined, (error: unknown) => {
        watch.fail()
        throw error
      })
      watch.track(settled)
      return settled
    }
    return result
  }

  /**
   * A function after the cache may still call `next(error)` or `next()` once the response was sent
   * and stored (a callback-style write that fails afterwards, a deferred `next`): an error handler
   * or a later route then ran, which a hit would skip, also when `req.next` was called (the
   * router's: Express's final handler then got the request). The entry is deleted again (counted
   * in `stats.deletes`) at the first such call, and at once if one came while it was being stored.
   */
  private removeOnLateVerdict(req: Request, watch: DispatchWatch, key: string): void {
    const remove = () => {
      watch.onChange = () => {}
      unwatchDispatch(req, watch)
      void this.backend()
        .delete(key)
        .then(
          () => this.http.observer.delete(key),
          (error: unknown) => this.http.observer.error('delete', error, key),
        )
    }
    if (watch.verdict() !== undefined) {
      remove()
      return
    }
    watch.onChange = () => {
      if (watch.verdict() !== undefined) remove()
    }
  }

  /**
   * `nested-cache` when a cache before this one on the request reads the same entries (same
   * backend and `keyPrefix`) and could not have stored this response: it passed the request
   * through (for its own reasons: `Authorization`, a cookie, …), or something it watched ran
   * between it and this cache. Its hits would skip what this cache's entry was made behind.
   * Also when a cache after this one reads the same entries: the innermost one stores.
   */
  nestedRefusal(req: Request): string | undefined {
    const passed = cachesPassed<Passed[number]>(req)
    if (passed === undefined) return undefined
    let inner = false
    for (const other of passed) {
      if (other.engine === this) {
        inner = true
        continue
      }
      if (!this.sharesEntriesWith(other.engine)) continue
      // A cache after this one of the same entries stored the response at its own site, with its
      // own ttl: it answers these requests; this one stores nothing of its own.
      if (inner) return 'nested-cache'
      if (other.watch === undefined || other.watch.verdict() !== undefined) return 'nested-cache'
    }
    return undefined
  }

  private sharesEntriesWith(other: ResponseCache): boolean {
    if (other.settings.keyPrefix !== this.settings.keyPrefix) return false
    try {
      return other.backend() === this.backend()
    } catch {
      return true
    }
  }

  /**
   * Refreshes a stale entry in the background, in this process: the top-level app handles a copy
   * of the request (see `refreshInProcess` in @cache/http). It ends when the response was stored
   * or refused, the app gave up on it (`next()`, `next(error)`, a throw), the copy was answered
   * before it reached this cache (a rate limiter's 429), or after `revalidateTimeout`.
   */
  revalidate(req: Request, refresh: Refresh): (() => void) | false {
    const app = rootApp(req.app)
    if (app === undefined) return false
    refreshOwners.set(refresh, this)
    return refreshInProcess(app as RefreshEntry, {
      req,
      url: req.originalUrl ?? req.url ?? '/',
      refresh,
      mark: (copy) => {
        ;(copy as any)[REVALIDATE] = refresh
      },
      reached: () => refreshesReached.has(refresh),
    })
  }
}

/** What only Express can tell the neutral cache about one lookup (see `LookupContext`). */
class ExpressLookup implements LookupContext {
  /** The key of the miss whose response is recorded. */
  key: string | undefined
  /** This cache's record on the request, with the dispatch it watches. */
  self: Passed[number] | undefined

  constructor(
    private readonly engine: ResponseCache,
    private readonly req: Request,
  ) {}

  revalidate(refresh: Refresh): (() => void) | false {
    return this.engine.revalidate(this.req, refresh)
  }

  verdict(): string | undefined {
    return this.self?.watch?.verdict() ?? this.engine.nestedRefusal(this.req)
  }

  /**
   * Where the response was made, Express may see the request otherwise than where the cache
   * looked it up (a sub-app with its own `trust proxy`): stored only under the key it has there.
   */
  recheck(): string | undefined {
    let there: string | undefined
    try {
      there = this.engine.keyFor(this.req)
    } catch {
      there = undefined
    }
    return there === this.key ? undefined : 'key-changed'
  }
}

/**
 * How Express resolved a request, read as the cache needs it: the URL Express routes (or
 * `rewritten-url`), the protocol and host it resolved (under `trust proxy`, the forwarded ones),
 * and where the cache sits. Read lazily: only what a lookup reaches is computed.
 */
class ExpressView implements HttpRequestView<Request> {
  readonly headers: Request['headers']
  readonly refresh: Refresh | undefined
  private site_: string | undefined | null = null
  /** The raw host Express resolved (see {@link resolvedHost}), read once for the key's two parts. */
  private resolved_: string | undefined | null = null

  constructor(
    private readonly engine: ResponseCache,
    readonly raw: Request,
    private readonly anchor: Function | undefined,
    private readonly identity: string | undefined,
    private readonly receiver: unknown,
    private readonly lookup: boolean,
  ) {
    this.headers = raw.headers
    this.refresh = (raw as any)[REVALIDATE]
  }

  // Read again when the response is decided on: a method override behind the cache counts.
  get method(): string {
    return this.raw.method ?? 'GET'
  }

  get url(): string {
    return this.raw.originalUrl ?? this.raw.url ?? '/'
  }

  get protocol(): string {
    const req = this.raw
    // Read once: Express's getter asks the app for its `trust proxy` function on every read.
    const protocol = req.protocol
    return typeof protocol === 'string'
      ? protocol
      : (req.socket as { encrypted?: boolean } | undefined)?.encrypted
        ? 'https'
        : 'http'
  }

  get host(): string | undefined {
    return expressHost(this.raw, this.resolvedHost())
  }

  // Under `trust proxy` the `Host` header the handler can still read is another input.
  // The `Host` line the client sent too, when middleware before the cache rewrote the header.
  get keyExtra(): string | undefined {
    return hostKeyPart(this.resolvedHost(), this.raw)
  }

  private resolvedHost(): string | undefined {
    if (this.resolved_ === null) this.resolved_ = resolvedHost(this.raw)
    return this.resolved_
  }

  // The credentials the client sent, whatever middleware before the cache did to `req.headers`.
  get rawHeaders(): string[] | undefined {
    return this.raw.rawHeaders
  }

  // The credential and body lines as the server emitted the request: a layer may strip a line
  // from `req.rawHeaders` too.
  get arrivedLines(): readonly string[] | undefined {
    return arrivalOf(this.raw)?.lines
  }

  get bypass(): string | undefined {
    if (!isRoutedAsSent(this.raw)) return 'rewritten-url'
    // The app routes this HEAD to a HEAD handler of its own, not to the GET one the entry holds.
    if (this.raw.method === 'HEAD' && headRoutedApart(rootApp(this.raw.app), this.url)) return 'head-route'
    // Only before the handler: it may change `req.query` as it likes once the request is looked up.
    if (this.lookup && expressQueryReplaced(this.raw as ExpressQueryRequest)) return 'querystring-parser'
    return expressQueryParserBypass(this.raw as ExpressQueryRequest)
  }

  get site(): string | undefined {
    if (this.site_ === null)
      this.site_ = this.engine.siteFor(this.raw, this.anchor, this.identity, this.receiver, this.lookup)
    return this.site_
  }
}

/**
 * The `host[:port]` Express resolved for the handler, or `undefined` when Express resolves none
 * or another one than the raw header it read (`X-Forwarded-Host: ,x` under trust proxy).
 */
function expressHost(req: Request, raw: string | undefined): string | undefined {
  if ('hostname' in req) {
    const authority = splitAuthority(raw)
    // Express's own reading of the host must be exactly ours.
    if (authority === undefined || req.hostname !== authority.host) return undefined
  }
  return raw
}

/**
 * The raw `host[:port]` Express reads `req.hostname` from, by Express's own rule: the first
 * `X-Forwarded-Host` entry when the app trusts the peer, else `Host`.
 */
function resolvedHost(req: Request): string | undefined {
  const headers = req.headers
  let value = headers['x-forwarded-host'] as string | undefined
  // Without the header the peer's trust decides nothing: the app's function is not asked.
  if (!value) return headers.host || undefined
  const trust = req.app?.get?.('trust proxy fn')
  if (typeof trust !== 'function' || !trust(req.socket?.remoteAddress, 0)) {
    value = headers.host
  } else if (value.includes(',')) {
    value = value.slice(0, value.indexOf(',')).trimEnd()
  }
  return value || undefined
}

/**
 * Whether Express routes `req` on the URL it was sent with (`originalUrl`, which the key names):
 * `@cache/http`'s rules, with the target as the first router of the request started and as the
 * server noted it when it arrived, before any listener (see `noteArrivals`).
 */
export function isRoutedAsSent(req: Request): boolean {
  return expressRoutedAsSent(req, sentUrl(req)) && expressArrivedAsRouted(req)
}

/** A request that announces a body (`Content-Length` above 0, or `Transfer-Encoding`). */
function hasBody(req: IncomingMessage): boolean {
  const headers = req.headers
  if (headers['transfer-encoding'] !== undefined) return true
  const length = headers['content-length']
  return length !== undefined && length !== '0'
}

/** The top-level app of a request: a refresh must enter where the original request entered. */
function rootApp(app: unknown): ExpressApp | undefined {
  let current = app as ExpressApp | undefined
  while (current?.parent !== undefined) current = current.parent
  return typeof current?.handle === 'function' ? current : undefined
}
