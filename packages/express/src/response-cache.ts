import { randomBytes } from 'node:crypto'
import { IncomingMessage, type OutgoingHttpHeaders, ServerResponse } from 'node:http'
import { Duplex } from 'node:stream'
import {
  type CacheBackend,
  CacheError,
  CacheObserver,
  currentGenerations,
  currentGenerationsSync,
  type Duration,
  getBackend,
  isGeneration,
  processLogger,
  sameGenerations,
  tagVersionKey,
} from '@cache/core'
import { cacheControlValue, offerCacheControl, ttlFromResponse } from './cache-control.js'
import { type CapturedResponse, captureResponse } from './capture.js'
import {
  type CachePosition,
  DispatchWatch,
  observeDispatch,
  unwatchDispatch,
  watchDispatch,
} from './dispatch.js'
import { Flight, type Shared } from './flight.js'
import { type Settings, urlVersionKey } from './options.js'
import {
  isRoutedAsSent,
  isSafeCustomKey,
  type RequestKey,
  requestKey,
  siteKey,
  variantKey,
} from './request-key.js'
import { siteOf } from './site.js'
import {
  bodyEtag,
  etagMatches,
  isStoredResponse,
  isVaryRecord,
  NOT_MODIFIED_HEADERS,
  type StoredResponse,
  storedHeaders,
  unstorableReason,
  type VaryRecord,
  varyNames,
} from './stored-response.js'
import { responseCachingEnabled } from './switch.js'

type Request = IncomingMessage & { originalUrl?: string; hostname?: string; app?: unknown }

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
 * Marks the synthetic request of a stale-while-revalidate refresh: the cache that started it, and
 * how it reports the outcome (an error when the refreshed response was not stored). Every cache
 * it passes answers it fresh (no hit, no shared flight); only the one that started it reports.
 */
const REVALIDATE = Symbol.for('@cache/express revalidate')
type RevalidateReport = (error?: unknown) => void
type Refresh = { engine: ResponseCache; report: RevalidateReport }

/**
 * The caches a request passed, outermost first, and the dispatch each one watches while it runs
 * the rest of the request: a cache inside another one that reads its entries (same backend and
 * `keyPrefix`) stores only what the outer one could have stored, or the outer one would replay it
 * to requests that never reached what runs between them.
 */
const CACHES = Symbol('@cache/express caches passed')
type Passed = { engine: ResponseCache; watch?: DispatchWatch }[]

/** Request headers a refresh leaves out: it must get the whole, unconditional response. */
const CONDITIONAL_HEADERS = [
  'if-none-match',
  'if-modified-since',
  'if-match',
  'if-unmodified-since',
  'if-range',
  'range',
]

/**
 * The engine behind `cacheResponse`: looks a request up, replays a hit with one `writeHead` and
 * one `end`, or runs the handler once per key (single-flight) and stores what it sent.
 */
export class ResponseCache {
  readonly observer = new CacheObserver('http')
  /** The flight of each key (or variant key) whose first response is under way. */
  private readonly inflight = new Map<string, Flight>()
  /** Responses stored so far: a read that overlapped one reads again before it runs the handler. */
  private stores = 0
  /** Flight keys with a stale-while-revalidate refresh under way. */
  private readonly refreshing = new Set<string>()
  /** Requests this engine already handles: a second pass (the same cache mounted twice) runs through. */
  private readonly handled = new WeakSet<IncomingMessage>()
  /** A `bypass` option that threw was logged (once per cache; every throw is counted). */
  private bypassErrorLogged = false
  /** The site each request this engine handles was looked up at. */
  private readonly sites = new WeakMap<IncomingMessage, string>()

  constructor(readonly settings: Settings) {}

  backend(): CacheBackend {
    return this.settings.backend ?? getBackend()
  }

  /** The key of a request, or `undefined` when it bypasses the cache (see {@link resolveKey}). */
  keyFor(req: Request): string | undefined {
    const resolved = this.resolveKey(req)
    if ('bypass' in resolved) return undefined
    const site = this.sites.get(req) ?? this.siteOf(req, undefined, undefined)
    return site === undefined ? undefined : siteKey(resolved.key, site)
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
    if (this.handled.has(req)) return run()
    this.handled.add(req)
    ;(((req as any)[CACHES] ??= []) as Passed).push({ engine: this })
    const method = req.method
    if (method !== 'GET' && method !== 'HEAD') return this.bypass(req, res, run, 'method', 'method')
    const skipped = this.skipReason(req)
    if (skipped !== undefined) return this.bypass(req, res, run, 'bypass', skipped)
    const s = this.settings
    // A GET with a body ("fat GET"): a body parser could make the response depend on what is not keyed.
    if (hasBody(req)) return this.bypass(req, res, run, 'request', 'body')
    if (!s.allowAuthorized && req.headers.authorization !== undefined)
      return this.bypass(req, res, run, 'request', 'authorization')
    if (!s.allowCookies && req.headers.cookie !== undefined)
      return this.bypass(req, res, run, 'request', 'cookie')
    let key: string
    let versionKeys: string[]
    try {
      const resolved = this.resolveKey(req)
      if ('bypass' in resolved) return this.bypass(req, res, run, 'request', resolved.bypass)
      // Observed from now on: later requests of this app say where the cache sits as they go.
      observeDispatch(req)
      const site = this.siteOf(req, anchor, identity, receiver)
      // Where the cache sits cannot be told: no entry may be replayed here, nor made.
      if (site === undefined) return this.bypass(req, res, run, 'request', 'site')
      this.sites.set(req, site)
      key = siteKey(resolved.key, site)
      // The URL's generation is its scope's: every spelling of it, at every site.
      versionKeys = [...s.prefixVersionKeys, urlVersionKey(resolved.scope)]
      if (s.tags) for (const tag of s.tags(req)) versionKeys.push(tagVersionKey(tag))
    } catch (error) {
      this.observer.error('key', error)
      return this.bypass(req, res, run, 'request', 'key-error')
    }
    return this.lookup(req, res, run, position, key, versionKeys, [])
  }

  /**
   * The fast path of `cache.front(app)`: replays a fresh hit from an in-process backend before the
   * app runs, only for entries stored with `frontSkipsAllMiddleware`, and returns `false` for
   * everything else (the app then answers as usual, with its own `cacheResponse` middleware
   * deciding what to store). Requests whose key Express could resolve differently
   * (`X-Forwarded-Host` or `X-Forwarded-Proto` under `trust proxy`) are never answered here.
   */
  serveFresh(req: Request, res: ServerResponse): boolean {
    const method = req.method
    if (method !== 'GET' && method !== 'HEAD') return false
    const s = this.settings
    // `bypass` is a function of the request as the app sees it: the app answers.
    if (s.bypass !== undefined || !responseCachingEnabled(s.enabledFromEnv)) return false
    const headers = req.headers
    if (
      s.key !== undefined ||
      headers['x-forwarded-host'] !== undefined ||
      headers['x-forwarded-proto'] !== undefined ||
      hasBody(req)
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
      const resolved = requestKey(req, s.keyPrefix, s.vary)
      if (resolved === undefined) return false
      key = resolved.key
      entry = backend.sync.getEntry(key)?.value
      if (!isStoredResponse(entry) || entry.front !== true) return false
      versions = []
      for (const k of [...s.prefixVersionKeys, urlVersionKey(resolved.scope)]) {
        // A scope without a generation yet matches no entry: the app answers and creates it.
        const generation = backend.sync.getEntry(k)?.value
        if (!isGeneration(generation)) return false
        versions.push(generation)
      }
    } catch (error) {
      this.observer.error('get', error, key)
      return false
    }
    const now = s.now()
    if (!sameGenerations(entry.versions, versions) || now >= entry.staleAt) return false
    this.observer.hit(key)
    this.replay(req, res, entry, now, 'hit')
    return true
  }

  /**
   * How long a generation created on a read lives: the URL's as long as its entries (a lost
   * generation only turns entries into misses); prefixes and tags until renewed.
   */
  private generationTtls(versionKeys: readonly string[]): (Duration | undefined)[] {
    const s = this.settings
    // Prefix generations never expire (whatever the backend's default TTL); the URL's lives with its entry.
    const ttls = new Array<Duration | undefined>(versionKeys.length).fill(Number.POSITIVE_INFINITY)
    ttls[s.prefixVersionKeys.length] = (s.ttlMs + (s.swrMs ?? 0)) / 1000
    return ttls
  }

  /**
   * The key, or why the request bypasses the cache: `rewritten-url` when Express routes another URL
   * than the one the request was sent with (middleware before the cache rewrote `req.url`), with
   * the built-in key and a custom one alike.
   */
  private resolveKey(req: Request): RequestKey | { bypass: string } {
    const s = this.settings
    if (!isRoutedAsSent(req)) return { bypass: 'rewritten-url' }
    if (s.key) {
      const custom = s.key(req)
      if (!isSafeCustomKey(custom)) return { bypass: 'key' }
      // A custom key is its own invalidation scope (`invalidateKey`).
      const full = `${s.keyPrefix}:${custom}`
      return { key: full, scope: full }
    }
    return requestKey(req, s.keyPrefix, s.vary) ?? { bypass: 'url' }
  }

  /** Reads the entry and its generations; `waited`: the flights this request already waited for. */
  private lookup(
    req: Request,
    res: ServerResponse,
    run: Run,
    position: CachePosition,
    key: string,
    versionKeys: string[],
    waited: readonly Flight[],
  ): unknown {
    const backend = this.backend()
    if (!backend.sync) return this.lookupAsync(req, res, run, position, backend, key, versionKeys, waited)
    let first: unknown
    let versions: number[]
    try {
      first = backend.sync.getEntry(key)?.value
      versions = currentGenerationsSync(backend.sync, versionKeys, this.generationTtls(versionKeys))
    } catch (error) {
      return this.lookupFailed(res, run, error, key)
    }
    if (isVaryRecord(first)) {
      let variant: unknown
      try {
        variant = backend.sync.getEntry(variantKey(key, first.id, req.headers, first.vary))?.value
      } catch (error) {
        return this.lookupFailed(res, run, error, key)
      }
      return this.decide(req, res, run, position, key, versionKeys, versions, variant, first, waited)
    }
    return this.decide(req, res, run, position, key, versionKeys, versions, first, undefined, waited)
  }

  private async lookupAsync(
    req: Request,
    res: ServerResponse,
    run: Run,
    position: CachePosition,
    backend: CacheBackend,
    key: string,
    versionKeys: string[],
    waited: readonly Flight[],
    again = true,
  ): Promise<unknown> {
    let first: unknown
    let versions: number[]
    let record: VaryRecord | undefined
    const storesBefore = this.stores
    try {
      const values = await backend.getMany([key, ...versionKeys])
      versions = await currentGenerations(
        backend,
        versionKeys,
        values.slice(1),
        this.generationTtls(versionKeys),
      )
      first = values[0]
      if (isVaryRecord(first)) {
        record = first
        first = await backend.get(variantKey(key, record.id, req.headers, record.vary))
      }
    } catch (error) {
      return this.lookupFailed(res, run, error, key)
    }
    // A response stored (and its flight ended) while this read was on its way may be the one it
    // missed: read once more rather than run the handler again.
    if (
      again &&
      this.stores !== storesBefore &&
      !(isStoredResponse(first) && sameGenerations(first.versions, versions))
    )
      return this.lookupAsync(req, res, run, position, backend, key, versionKeys, waited, false)
    return this.decide(req, res, run, position, key, versionKeys, versions, first, record, waited)
  }

  private decide(
    req: Request,
    res: ServerResponse,
    run: Run,
    position: CachePosition,
    key: string,
    versionKeys: string[],
    versions: number[],
    found: unknown,
    record: VaryRecord | undefined,
    waited: readonly Flight[],
  ): unknown {
    const s = this.settings
    // A refresh (of this cache or of another one it passes) asks for a fresh response: no hit.
    const revalidating = isRefresh(req)
    const now = s.now()
    if (!revalidating && isStoredResponse(found) && sameGenerations(found.versions, versions)) {
      if (now < found.staleAt) {
        this.observer.hit(key)
        this.replay(req, res, found, now, 'hit')
        return undefined
      }
      if (s.swrMs !== undefined && now < found.staleAt + s.swrMs) {
        this.observer.hit(key)
        this.replay(req, res, found, now, 'stale')
        this.revalidate(
          req,
          record === undefined ? key : variantKey(key, record.id, req.headers, record.vary),
        )
        return undefined
      }
    }
    let missKind = record === undefined ? 'uri-miss' : 'vary-miss'
    if (req.method === 'HEAD') {
      // A HEAD response carries no body to store: answer it, and let a GET fill the cache.
      this.observer.miss(key)
      this.setStatus(res, `fwd=${missKind}`, 'MISS')
      return run()
    }
    // A known variant has its own flight, so concurrent misses of two encodings do not wait on each other.
    let flightKey = record === undefined ? key : variantKey(key, record.id, req.headers, record.vary)
    for (let hop = 0; hop < 2 && !revalidating; hop++) {
      const flight = this.inflight.get(flightKey)
      if (flight === undefined) break
      const shared = flight.result
      // What a concurrent request shares is replayed only while fresh and of the current generations.
      if (
        shared !== undefined &&
        now < shared.entry.staleAt &&
        sameGenerations(shared.entry.versions, versions)
      ) {
        if (sameVariant(req, shared)) {
          this.observer.hit(key)
          this.replay(req, res, shared.entry, now, waited.length > 0 ? 'collapsed' : 'hit')
          return undefined
        }
        // Same URL, another variant (e.g. another Accept-Encoding): its own flight.
        record = shared.record!
        flightKey = variantKey(key, record.id, req.headers, record.vary)
        missKind = 'vary-miss'
        continue
      }
      // Wait for a first response (of the URL, then of its variant) once each, bounded; then look up again.
      if (flight.pending && !waited.includes(flight) && waited.length < 2) {
        const next = [...waited, flight]
        return this.waitFor(flight, () => this.lookup(req, res, run, position, key, versionKeys, next))
      }
      break
    }
    this.observer.miss(key)
    const scope = versionKeys[s.prefixVersionKeys.length]!
    return this.lead(req, res, run, position, key, scope, flightKey, versions, versionKeys, record, missKind)
  }

  private async waitFor(flight: Flight, retry: () => unknown): Promise<unknown> {
    await flight.wait(this.settings.collapseTimeoutMs)
    return retry()
  }

  /**
   * Runs the handler and captures what it sends. Concurrent requests for the key wait for it
   * (bounded; a background refresh makes nobody wait) and replay its response once it ended
   * complete and storable; it is stored once it finished. Anything that makes it unstorable (an
   * error, a function after the cache, a body over the size limit, a closed connection, an
   * invalidation) releases the waiting requests at once.
   */
  private lead(
    req: Request,
    res: ServerResponse,
    run: Run,
    position: CachePosition,
    key: string,
    scope: string,
    flightKey: string,
    versions: number[],
    versionKeys: string[],
    record: VaryRecord | undefined,
    missKind: string,
  ): unknown {
    const s = this.settings
    const report = this.refreshReport(req)
    // Invalidation reaches a flight through the generation key of its URL's scope.
    const flight = new Flight(s.keyPrefix, scope)
    if (!isRefresh(req)) this.inflight.set(flightKey, flight)
    const forget = () => {
      if (this.inflight.get(flightKey) === flight) this.inflight.delete(flightKey)
    }
    const release = () => {
      flight.withdraw()
      forget()
    }
    const watch = new DispatchWatch(position, observeDispatch(req), s.skippedOnHits, req)
    const passed = (req as any)[CACHES] as Passed | undefined
    const self = passed?.find((p) => p.engine === this)
    if (self !== undefined) self.watch = watch
    // Every change to what ran after the cache only makes a verdict final: release at the first.
    watch.onChange = () => {
      if (watch.verdict() !== undefined) release()
    }
    let ready: Shared | undefined
    let offered: string | undefined
    const refused = (reason: string) =>
      report?.(new CacheError(`the refreshed response for ${key} was not stored: ${reason}`))
    this.setStatus(res, `fwd=${missKind}`, 'MISS')
    captureResponse(res, s.maxBodySize, {
      beforeHeaders: (out, body, given) => {
        // What is known before the headers leave; the decision is made again once the response
        // ended and finished.
        const headers = { ...out.getHeaders(), ...given }
        const reason = this.refusal(req, out.statusCode, out.statusCode, headers, watch, key)
        if (reason !== undefined) {
          release()
          this.setStatus(out, `fwd=${missKind}; detail=${reason}`, 'MISS')
          return
        }
        if (body === undefined) {
          // Streamed: stored once it ends complete, unless its declared length is already too large.
          const tooLarge = Number(headers['content-length']) > s.maxBodySize
          this.setStatus(out, `fwd=${missKind}; ${tooLarge ? 'detail=too-large' : 'stored'}`, 'MISS')
          if (!tooLarge) offered = this.offerCacheControl(req, out, this.entryTtlMs(headers))
          return
        }
        if (s.etag && headers.etag === undefined) out.setHeader('etag', bodyEtag(body))
        this.setStatus(out, `fwd=${missKind}; stored`, 'MISS')
        offered = this.offerCacheControl(req, out, this.entryTtlMs(headers))
      },
      tooLarge: release,
      // Nothing is known of the response that will replace it yet: no claim until its headers.
      headersRefused: () => {
        if (s.statusHeader !== false && !res.headersSent) res.removeHeader(s.statusHeader)
      },
      ended: (full) => {
        // The cache's own Cache-Control is not the handler's: not stored, not a TTL.
        const captured = withoutOwnCacheControl(full, offered)
        const reason = flight.invalidated ? 'invalidated' : this.unstorable(req, captured, watch, key)
        if (reason !== undefined) {
          release()
          refused(reason)
          return
        }
        const entry = this.toEntry(req, captured, versions, versionKeys)
        const vary = varyNames(captured.final.headers)
        let varyRecord: VaryRecord | undefined
        if (vary.length > 0) {
          varyRecord =
            record !== undefined && sameNames(record.vary, vary)
              ? record
              : { vary, id: randomBytes(6).toString('base64url') }
        }
        ready = { entry, record: varyRecord, headers: req.headers }
        flight.share(ready)
      },
      settled: (finished) => {
        unwatchDispatch(req, watch)
        const over = () => {
          flight.settle()
          forget()
        }
        const reason = !finished
          ? 'it did not finish'
          : ready === undefined
            ? 'it was not storable'
            : flight.invalidated
              ? 'invalidated'
              : (watch.verdict() ??
                this.nestedRefusal(req) ??
                (s.now() >= ready.entry.staleAt ? 'expired before it finished' : undefined))
        if (reason !== undefined || ready === undefined) {
          release()
          over()
          refused(reason ?? 'it was not storable')
          return
        }
        // Waiting requests keep replaying the shared entry until the backend has it too.
        void this.store(key, ready.entry, ready.record, req).finally(() => {
          this.stores++
          over()
        })
        report?.()
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
      return result.then(undefined, (error: unknown) => {
        watch.fail()
        throw error
      })
    }
    return result
  }

  /** Why a captured response must not be stored (nor shared with waiting requests), or `undefined`. */
  private unstorable(
    req: Request,
    captured: CapturedResponse,
    watch: DispatchWatch,
    key: string,
  ): string | undefined {
    if (captured.incomplete !== undefined) return captured.incomplete
    if (captured.body === undefined) return 'too-large'
    return this.refusal(req, captured.final.status, captured.status, captured.final.headers, watch, key)
  }

  /** Why a response with these statuses and headers must not be stored, or `undefined`. */
  private refusal(
    req: Request,
    finalStatus: number,
    status: number,
    headers: OutgoingHttpHeaders,
    watch: DispatchWatch,
    key: string,
  ): string | undefined {
    const s = this.settings
    // Middleware behind the cache turned the request into another method (a method override).
    if (req.method !== 'GET') return 'method'
    const verdict = watch.verdict() ?? this.nestedRefusal(req)
    if (verdict !== undefined) return verdict
    if (!s.storable(finalStatus) || !s.storable(status)) return 'status'
    const reason = unstorableReason(headers)
    if (reason !== undefined) return reason
    if (s.ttlFromResponse !== undefined) {
      const ttl = ttlFromResponse(headers, s.ttlFromResponse)
      if (typeof ttl === 'string') return ttl
    }
    // Where the response was made, Express may see the request otherwise than where the cache
    // looked it up (a sub-app with its own `trust proxy`): it is stored only under the key it has there.
    let there: string | undefined
    try {
      there = this.keyFor(req)
    } catch {
      there = undefined
    }
    return there === key ? undefined : 'key-changed'
  }

  /**
   * `nested-cache` when a cache before this one on the request reads the same entries (same
   * backend and `keyPrefix`) and could not have stored this response: it passed the request
   * through (for its own reasons: `Authorization`, a cookie, …), or something it watched ran
   * between it and this cache. Its hits would skip what this cache's entry was made behind.
   * Also when a cache after this one reads the same entries: the innermost one stores.
   */
  private nestedRefusal(req: Request): string | undefined {
    const passed = (req as any)[CACHES] as Passed | undefined
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

  private toEntry(
    req: Request,
    captured: CapturedResponse,
    versions: number[],
    versionKeys: string[],
  ): StoredResponse {
    const s = this.settings
    const body = captured.body!
    const now = s.now()
    const given = captured.headers.etag ?? captured.final.headers.etag
    const entry: StoredResponse = {
      status: captured.status,
      headers: storedHeaders(captured.headers),
      body,
      storedAt: now,
      etag: given !== undefined ? String(given) : s.etag ? bodyEtag(body) : '',
      versions,
      staleAt: now + this.entryTtlMs(captured.final.headers),
      versionKeys,
      url: requestUrl(req),
    }
    if (s.tags) {
      try {
        entry.tags = [...s.tags(req)]
      } catch {
        // The tags were read when the request was looked up; the index only shows them.
      }
    }
    if (s.frontSkipsAllMiddleware) entry.front = true
    return entry
  }

  /** How long a response with these final headers stays fresh, in ms. */
  private entryTtlMs(headers: OutgoingHttpHeaders): number {
    const s = this.settings
    if (s.ttlFromResponse === undefined) return s.ttlMs
    const ttl = ttlFromResponse(headers, s.ttlFromResponse)
    return typeof ttl === 'number' ? ttl : s.ttlMs
  }

  /**
   * Why the request skips the cache before any lookup: caching switched off (`setResponseCaching`,
   * `CACHE_HTTP`), or the `bypass` option. A `bypass` that throws is a bypass: counted, emitted,
   * and logged once for this cache.
   */
  private skipReason(req: Request): string | undefined {
    const s = this.settings
    if (!responseCachingEnabled(s.enabledFromEnv)) return 'disabled'
    if (s.bypass === undefined) return undefined
    try {
      return s.bypass(req) ? 'bypass' : undefined
    } catch (error) {
      this.observer.error('bypass', error)
      if (!this.bypassErrorLogged) {
        this.bypassErrorLogged = true
        processLogger().warn(
          `[@cache] cacheResponse: the bypass option threw, so the request bypassed the cache (counted in stats.errors and emitted as 'error' events; logged once): ${
            (error as Error)?.message ?? String(error)
          }`,
        )
      }
      return 'bypass-error'
    }
  }

  /**
   * Sets the `cacheControl` option's header on a response the cache stores or replays, when the
   * option is set (see {@link offerCacheControl}); returns the value set.
   */
  private offerCacheControl(req: Request, res: ServerResponse, ttlMs: number): string | undefined {
    const s = this.settings
    if (s.cacheControl === undefined) return undefined
    // A downstream cache keys by URL and the response's own Vary: it cannot see what else the key holds.
    const shared =
      s.vary.length === 0 &&
      s.key === undefined &&
      req.headers.authorization === undefined &&
      req.headers.cookie === undefined
    const value = cacheControlValue(s.cacheControl, ttlMs, s.swrMs, shared)
    return offerCacheControl(res, value) ? value : undefined
  }

  private async store(
    key: string,
    entry: StoredResponse,
    record: VaryRecord | undefined,
    req: Request,
  ): Promise<void> {
    const s = this.settings
    const ttl = (entry.staleAt - entry.storedAt + (s.swrMs ?? 0)) / 1000
    try {
      const backend = this.backend()
      if (record === undefined) {
        await backend.set(key, entry, ttl)
      } else {
        await backend.setMany([
          { key, value: record, ttl },
          { key: variantKey(key, record.id, req.headers, record.vary), value: entry, ttl },
        ])
      }
      this.observer.set(key)
    } catch (error) {
      this.observer.error('set', error, key)
    }
  }

  /** One `writeHead` and one `end` of the stored Buffer; `304` when `If-None-Match` matches. */
  private replay(
    req: Request,
    res: ServerResponse,
    entry: StoredResponse,
    now: number,
    kind: 'hit' | 'stale' | 'collapsed',
  ): void {
    const s = this.settings
    const headers = entry.headers.slice()
    const age = now > entry.storedAt ? Math.floor((now - entry.storedAt) / 1000) : 0
    headers.push('age', String(age))
    if (entry.etag !== '') headers.push('etag', entry.etag)
    if (s.statusHeader === 'cache-status') {
      const detail =
        kind === 'collapsed'
          ? 'fwd=uri-miss; collapsed'
          : `hit; ttl=${Math.floor((entry.staleAt - now) / 1000)}`
      headers.push('cache-status', `${s.cacheName}; ${detail}`)
    } else if (s.statusHeader === 'x-cache') {
      headers.push('x-cache', kind === 'stale' ? 'STALE' : 'HIT')
    }
    // Not counted down: with `Age`, a downstream cache's freshness is max-age − Age (RFC 9111 §4.2.3).
    if (s.cacheControl !== undefined && !hasHeader(entry.headers, 'cache-control'))
      this.offerCacheControl(req, res, entry.staleAt - entry.storedAt)
    if (etagMatches(req.headers['if-none-match'] as string | undefined, entry.etag)) {
      const kept: (string | string[])[] = []
      for (let i = 0; i < headers.length; i += 2) {
        const name = headers[i] as string
        if (NOT_MODIFIED_HEADERS.has(name) || name === 'age' || name === 'cache-status' || name === 'x-cache')
          kept.push(name, headers[i + 1]!)
      }
      res.writeHead(304, kept as string[])
      res.end()
      return
    }
    headers.push('content-length', String(entry.body.length))
    res.writeHead(entry.status, headers as string[])
    res.end(req.method === 'HEAD' ? undefined : entry.body)
  }

  /**
   * Refreshes a stale entry in the background: the app handles a copy of the request (same URL,
   * headers and connection properties, no conditional headers) written to a socket that discards
   * what it is sent. Nobody waits for it. It ends when the response finished, the app gave up on
   * it (`next()`, `next(error)`, a throw) or after `revalidateTimeout`; anything but a stored
   * response is counted and emitted as a `revalidate` error, and the stale entry stays.
   */
  private revalidate(req: Request, flightKey: string): void {
    const app = rootApp(req.app)
    if (app === undefined || this.inflight.has(flightKey) || this.refreshing.has(flightKey)) return
    this.refreshing.add(flightKey)
    const socket = new DiscardingSocket(req.socket)
    const copy = new IncomingMessage(socket as never) as Request
    copy.method = 'GET'
    copy.url = req.originalUrl ?? req.url ?? '/'
    copy.headers = { ...req.headers }
    copy.rawHeaders = []
    for (const name of CONDITIONAL_HEADERS) delete copy.headers[name]
    copy.httpVersionMajor = req.httpVersionMajor
    copy.httpVersionMinor = req.httpVersionMinor
    copy.httpVersion = req.httpVersion
    copy.complete = true
    copy.push(null)
    const response = new ServerResponse(copy)
    response.assignSocket(socket as never)
    let done = false
    const timer = setTimeout(
      () =>
        finish(
          new CacheError(
            `the refresh of ${flightKey} took longer than revalidateTimeout (${this.settings.revalidateTimeoutMs} ms)`,
          ),
        ),
      this.settings.revalidateTimeoutMs,
    )
    timer.unref?.()
    const finish: RevalidateReport = (error) => {
      if (done) return
      done = true
      clearTimeout(timer)
      this.refreshing.delete(flightKey)
      if (error !== undefined) this.observer.error('revalidate', error, flightKey)
      // Stops a handler still writing (a stream, a timer) from holding anything.
      socket.destroy()
    }
    ;(copy as any)[REVALIDATE] = { engine: this, report: finish } satisfies Refresh
    try {
      app.handle!(copy, response, (error?: unknown) =>
        finish(
          error ?? new CacheError(`the refresh of ${flightKey} got no response (the app called next())`),
        ),
      )
    } catch (error) {
      finish(error)
    }
  }

  /** How a refresh this cache started reports its outcome, when `req` is one. */
  private refreshReport(req: Request): RevalidateReport | undefined {
    const refresh = (req as any)[REVALIDATE] as Refresh | undefined
    return refresh?.engine === this ? refresh.report : undefined
  }

  private lookupFailed(res: ServerResponse, run: () => unknown, error: unknown, key: string): unknown {
    // A backend that is down makes the cache a pass-through: counted, never the request's failure.
    this.observer.error('get', error, key)
    this.setStatus(res, 'fwd=uri-miss; detail=error', 'MISS')
    return run()
  }

  private bypass(
    req: Request,
    res: ServerResponse,
    run: () => unknown,
    fwd: string,
    detail: string,
  ): unknown {
    this.setStatus(res, fwd === 'method' ? 'fwd=method' : `fwd=${fwd}; detail=${detail}`, 'BYPASS')
    // A background refresh that the cache does not handle stores nothing: it is over now, the app
    // may still answer it.
    this.refreshReport(req)?.(
      new CacheError(`the refresh of ${req.originalUrl ?? req.url} bypassed the cache (${detail})`),
    )
    return run()
  }

  private setStatus(res: ServerResponse, cacheStatus: string, xCache: string): void {
    const s = this.settings
    if (s.statusHeader === false || res.headersSent) return
    if (s.statusHeader === 'cache-status') res.setHeader('cache-status', `${s.cacheName}; ${cacheStatus}`)
    else res.setHeader('x-cache', xCache)
  }
}

/**
 * The socket of a background refresh: accepts and discards every write at once, so a handler
 * that streams (`sendFile`, a pipe) is never held by backpressure; carries the connection
 * properties Express reads (`encrypted` for `req.protocol`, `remoteAddress` for `trust proxy`)
 * and the port the original request reached (part of its site).
 */
class DiscardingSocket extends Duplex {
  readonly remoteAddress: string | undefined
  readonly remotePort: number | undefined
  readonly localAddress: string | undefined
  readonly localPort: number | undefined
  /** The server the original request came through: a refresh enters the app it calls. */
  readonly server: unknown
  readonly encrypted: boolean | undefined

  constructor(from: IncomingMessage['socket']) {
    super({
      read() {},
      write(_chunk, _encoding, callback) {
        callback()
      },
      writableHighWaterMark: Number.MAX_SAFE_INTEGER,
    })
    this.remoteAddress = from?.remoteAddress
    this.remotePort = from?.remotePort
    this.localAddress = from?.localAddress
    this.localPort = from?.localPort
    this.server = (from as { server?: unknown } | null | undefined)?.server
    if ((from as { encrypted?: boolean } | undefined)?.encrypted) this.encrypted = true
  }

  setTimeout(): this {
    return this
  }

  setNoDelay(): this {
    return this
  }

  setKeepAlive(): this {
    return this
  }
}

function isRefresh(req: IncomingMessage): boolean {
  return (req as any)[REVALIDATE] !== undefined
}

/** The top-level app of a request: a refresh must enter where the original request entered. */
function rootApp(app: unknown): ExpressApp | undefined {
  let current = app as ExpressApp | undefined
  while (current?.parent !== undefined) current = current.parent
  return typeof current?.handle === 'function' ? current : undefined
}

/** A request that announces a body (`Content-Length` above 0, or `Transfer-Encoding`). */
function hasBody(req: IncomingMessage): boolean {
  const headers = req.headers
  if (headers['transfer-encoding'] !== undefined) return true
  const length = headers['content-length']
  return length !== undefined && length !== '0'
}

/** The absolute URL of a request, as the index shows it. */
function requestUrl(req: Request): string {
  const protocol = (req as { protocol?: string }).protocol ?? 'http'
  return `${protocol}://${req.headers.host ?? ''}${req.originalUrl ?? req.url ?? '/'}`
}

/** Whether a flat `[name, value, …]` list has a header. */
function hasHeader(headers: readonly (string | string[])[], name: string): boolean {
  for (let i = 0; i < headers.length; i += 2) if (headers[i] === name) return true
  return false
}

/** A captured response without the `Cache-Control` the cache set on it (`offered`). */
function withoutOwnCacheControl(captured: CapturedResponse, offered: string | undefined): CapturedResponse {
  if (offered === undefined) return captured
  const strip = (headers: OutgoingHttpHeaders) => {
    if (headers['cache-control'] !== offered) return headers
    const { 'cache-control': _, ...rest } = headers
    return rest
  }
  return {
    ...captured,
    headers: strip(captured.headers),
    final: { ...captured.final, headers: strip(captured.final.headers) },
  }
}

function sameNames(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((name, i) => name === b[i])
}

/** Whether a waiting request asks for the variant a concurrent response was made for. */
function sameVariant(req: IncomingMessage, shared: Shared): boolean {
  const record = shared.record
  return record === undefined || record.vary.every((name) => req.headers[name] === shared.headers[name])
}

function isThenable(value: unknown): value is Promise<unknown> {
  return typeof (value as Promise<unknown> | undefined)?.then === 'function'
}
