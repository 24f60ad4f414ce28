import { randomBytes } from 'node:crypto'
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http'
import {
  type CacheBackend,
  CacheError,
  type CacheEvent,
  type CacheEventName,
  type CacheStats,
  type Duration,
  getBackend,
} from '@cache/core'
import {
  assertKnownOptions,
  CacheObserver,
  currentGenerations,
  currentGenerationsSync,
  registerInvalidationTarget,
  processLogger,
  renewGenerations,
  sameGenerations,
  optionNames,
  tagVersionKey,
} from '@cache/core/backend'
import { cacheControlValue, ttlFromResponse } from './cache-control.js'
import { credentialHeaders } from './credentials.js'
import { Flight, type Shared } from './flight.js'
import { removeResponses, withSeenExtras } from './invalidate.js'
import {
  type HttpCacheOptions,
  type HttpCacheSettings,
  isUrlVersionKey,
  prefixVersionKey,
  resolveHttpCacheOptions,
  urlVersionKey,
} from './options.js'
import {
  isSafeCustomKey,
  type RequestKey,
  requestKey,
  sameVariantValues,
  siteKey,
  urlKeys,
  variantKey,
} from './request-key.js'
import { type ResponseIndexEntry, type ResponseIndexOptions, responseIndex } from './response-index.js'
import { noteKeyExtra, noteSite } from './sites.js'
import {
  bodyEtag,
  etagMatches,
  isStoredResponse,
  isVaryRecord,
  NOT_MODIFIED_HEADERS,
  receivedAge,
  setsCookie,
  type StoredResponse,
  storedHeaders,
  unstorableReason,
  type VaryRecord,
  varyNames,
} from './stored-response.js'
import { responseCachingEnabled } from './switch.js'

/** Synchronous access to an in-process backend. */
type SyncAccess = NonNullable<CacheBackend['sync']>
import type {
  BypassResult,
  HeadAdvice,
  HeaderList,
  HttpRequestView,
  LookupContext,
  LookupResult,
  MissResult,
  Refresh,
  ResponseHead,
  ResponseRecorder,
} from './view.js'

const INVALIDATE_NAMES = optionNames<{ host?: string; headers?: IncomingHttpHeaders }>({
  host: true,
  headers: true,
})

/**
 * The framework-neutral response cache: one per cached route, middleware or plugin registration.
 * An adapter asks {@link lookup} for each request and acts on the result: replays a hit, answers
 * `304`, or runs the handler and feeds its response to the miss's recorder; everything else (the
 * key, storability, variants, `ETag`, `Age`, `Cache-Status`, single-flight, stale-while-revalidate,
 * generations for invalidation, byte limits) is decided here.
 */
export class HttpCache<Raw = any> {
  readonly observer: CacheObserver
  readonly settings: HttpCacheSettings
  /** The flight of each key (or variant key) whose first response is under way. */
  private readonly inflight = new Map<string, Flight>()
  /** Responses stored so far: a read that overlapped one reads again before it runs the handler. */
  private stores = 0
  /** Flight keys with a stale-while-revalidate refresh under way. */
  private readonly refreshing = new Set<string>()
  /** A `bypass` option that threw was logged (once per cache; every throw is counted). */
  private bypassErrorLogged = false
  /**
   * The generation keys of a request's scopes (prefixes first), by its scopes array, which
   * `requestKey` hands out once per URL; never changed once made.
   */
  private readonly scopeVersionKeys = new WeakMap<readonly string[], string[]>()
  /** The lifetimes of generations created on a read, by generation keys array (see above). */
  private readonly versionTtls = new WeakMap<readonly string[], (Duration | undefined)[]>()
  /** The generations last read on an in-process backend, by generation keys array (see above). */
  private readonly knownGenerations = new WeakMap<
    readonly string[],
    { sync: SyncAccess; version: number; generations: number[] }
  >()

  /**
   * @param options the cache's options, or a TTL alone (`60`, `'5m'`); checked now
   *   (`CacheConfigError` naming a bad one).
   * @param settings options an adapter already resolved with {@link resolveHttpCacheOptions}
   *   (used instead of `options`).
   * @param replaces a cache this one takes the place of (an adapter re-making a route's cache
   *   with options a hook changed): its stats and listeners carry on here, so that what the app
   *   attached to the old one keeps seeing the route's hits and misses. Default: none.
   */
  constructor(
    options: HttpCacheOptions<Raw> | Duration = {},
    settings?: HttpCacheSettings,
    replaces?: HttpCache<Raw>,
  ) {
    this.observer = replaces?.observer ?? new CacheObserver('http')
    this.settings = settings ?? resolveHttpCacheOptions(options)
    // invalidateTags() and invalidateResponse…() without a backend reach this cache's entries too.
    if (this.settings.backend !== undefined) registerInvalidationTarget(this.settings.backend)
  }

  /** Where responses are stored: the `backend` option, else the default cache at this moment. */
  backend(): CacheBackend {
    return this.settings.backend ?? getBackend()
  }

  /** Hits, misses, sets and backend errors of this cache. */
  get stats(): CacheStats {
    return this.observer.stats
  }

  on(event: CacheEventName, listener: (event: CacheEvent) => void): void {
    this.observer.on(event, listener)
  }

  off(event: CacheEventName, listener: (event: CacheEvent) => void): void {
    this.observer.off(event, listener)
  }

  /**
   * The backend key of a request, or `undefined` when it bypasses the cache on its credentials,
   * URL, host, custom key or site (the adapter's {@link HttpRequestView.bypass} included).
   */
  keyFor(view: HttpRequestView<Raw>): string | undefined {
    if (view.bypass !== undefined) return undefined
    const s = this.settings
    const keyed = credentialHeaders(
      view.headers,
      view.rawHeaders,
      s.allowAuthorized,
      s.allowCookies,
      view.arrivedLines,
    )
    if (typeof keyed === 'string') return undefined
    if (keyed !== view.headers) view = withHeaders(view, keyed)
    const resolved = this.resolveKey(view)
    if ('bypass' in resolved) return undefined
    const site = view.site
    return site === undefined ? undefined : siteKey(resolved.key, site)
  }

  /**
   * Decides what to do with a request: a `hit` or `not-modified` to send as it is, a `miss` whose
   * recorder the adapter feeds with the response its handler sends, or a `bypass`. Synchronous
   * when the backend reads synchronously (in-process) and no concurrent miss is waited for.
   * Never rejects: a backend that fails makes the request a miss (counted, emitted).
   */
  lookup(view: HttpRequestView<Raw>, context: LookupContext = {}): LookupResult | Promise<LookupResult> {
    const method = view.method
    if (method !== 'GET' && method !== 'HEAD') return this.bypass(view, 'method', 'method')
    const skipped = this.skipReason(view)
    if (skipped !== undefined) return this.bypass(view, 'bypass', skipped)
    const s = this.settings
    const headers = view.headers
    // A GET with a body ("fat GET"): a body parser could make the response depend on what is not keyed.
    // The lines noted as the request arrived too: a layer may delete them once it read the body.
    const arrived = view.arrivedLines
    if (hasBody(headers) || (arrived !== undefined && linesAnnounceBody(arrived)))
      return this.bypass(view, 'request', 'body')
    const keyed = credentialHeaders(headers, view.rawHeaders, s.allowAuthorized, s.allowCookies, arrived)
    if (typeof keyed === 'string') return this.bypass(view, 'request', keyed)
    if (keyed !== headers) view = withHeaders(view, keyed)
    let key: string
    let versionKeys: string[]
    try {
      const refused = view.bypass
      if (refused !== undefined) return this.bypass(view, 'request', refused)
      const resolved = this.resolveKey(view)
      if ('bypass' in resolved) return this.bypass(view, 'request', resolved.bypass)
      const site = view.site
      // Where the cache sits cannot be told: no entry may be replayed here, nor made.
      if (site === undefined) return this.bypass(view, 'request', 'site')
      noteSite(site)
      const extra = s.key === undefined ? view.keyExtra : undefined
      if (extra !== undefined) noteKeyExtra(extra)
      key = siteKey(resolved.key, site)
      // The URL's generations are its scopes': every spelling of it, at every site.
      versionKeys = this.versionKeysOf(resolved.scopes)
      if (s.tags) {
        versionKeys = versionKeys.slice()
        for (const tag of s.tags(view.raw)) versionKeys.push(tagVersionKey(tag))
      }
    } catch (error) {
      this.observer.error('key', error)
      return this.bypass(view, 'request', 'key-error')
    }
    return this.read(view, context, key, versionKeys, [])
  }

  /**
   * Removes the stored response for a URL (`https://host/path?query`, or a path with `host`),
   * with every variant its responses made with `Vary`, over http and https, at every site this
   * process has seen, and renews the URL's generation so that no process serves it again.
   * Every value of the headers of the `vary` option is reached; `headers` give the values whose
   * entry is deleted at once to free its space. `true` if an entry was there.
   */
  async invalidate(
    url: string,
    options: { host?: string; headers?: IncomingHttpHeaders } = {},
  ): Promise<boolean> {
    assertKnownOptions(options, INVALIDATE_NAMES, 'invalidate()')
    const s = this.settings
    const { keys, scopes } = urlKeys(url, s.keyPrefix, { ...options, vary: s.vary })
    const generations = scopes.map(urlVersionKey)
    // Before anything is awaited: a response in flight now is neither stored nor shared.
    Flight.invalidate({ keys: generations })
    return removeResponses(this.backend(), withSeenExtras(keys), generations)
  }

  /** Removes the stored response for a key built by the `key` option (without `keyPrefix`). */
  async invalidateKey(key: string): Promise<boolean> {
    const s = this.settings
    const full = `${s.keyPrefix}:${key}`
    const generations = [urlVersionKey(full)]
    // A built-in key given here (`https://host/path`): its URL's scope, which its entries read.
    if (s.key === undefined && /^https?:\/\/[^\n]*$/i.test(key)) {
      try {
        generations.push(...urlKeys(key, s.keyPrefix).scopes.map(urlVersionKey))
      } catch {
        // Not a URL the built-in key could have come from: the key's own generation is enough.
      }
    }
    Flight.invalidate({ keys: generations })
    return removeResponses(this.backend(), [full], generations)
  }

  /** Invalidates every response stored under this `keyPrefix`, in every process sharing the backend. */
  async clear(): Promise<void> {
    const prefix = this.settings.keyPrefix
    Flight.invalidate({ prefix })
    await renewGenerations(this.backend(), [prefixVersionKey(prefix)])
  }

  /**
   * The responses stored under this cache's `keyPrefix` that are still served (see
   * {@link responseIndex}): a scan of the backend's keys, for debugging.
   */
  responseIndex(options?: ResponseIndexOptions): AsyncIterableIterator<ResponseIndexEntry> {
    return responseIndex(this, options)
  }

  /**
   * The `hit` (or `not-modified`) result of an entry an adapter read itself, fresh and of the
   * current generations (a front door answering from an in-process backend before the app runs).
   */
  replayEntry(
    view: HttpRequestView<Raw>,
    key: string,
    entry: StoredResponse,
    now = this.settings.now(),
  ): LookupResult {
    return this.replay(view, key, entry, now, 'fresh')
  }

  /**
   * The key, or why the request bypasses the cache: the custom `key` option (its own
   * invalidation scope), else the built-in key of the view.
   */
  private resolveKey(view: HttpRequestView<Raw>): RequestKey | { bypass: string } {
    const s = this.settings
    if (s.key) {
      const custom = s.key(view.raw)
      if (!isSafeCustomKey(custom)) return { bypass: 'key' }
      // A custom key is its own invalidation scope (`invalidateKey`).
      const full = `${s.keyPrefix}:${custom}`
      return { key: full, scopes: [full] }
    }
    return requestKey(view, s.keyPrefix, s.vary) ?? { bypass: 'url' }
  }

  /**
   * How long a generation created on a read lives: the URL's as long as its entries (a lost
   * generation only turns entries into misses); prefixes and tags until renewed.
   */
  private generationTtls(versionKeys: readonly string[]): (Duration | undefined)[] {
    let ttls = this.versionTtls.get(versionKeys)
    if (ttls === undefined) {
      const s = this.settings
      const urlTtl = (s.ttlMs + (s.swrMs ?? 0)) / 1000
      ttls = versionKeys.map((key) => (isUrlVersionKey(key) ? urlTtl : Number.POSITIVE_INFINITY))
      this.versionTtls.set(versionKeys, ttls)
    }
    return ttls
  }

  /**
   * The generation keys of the prefixes and of a URL's scopes (made once per scopes array, which
   * `requestKey` hands out once per URL): also what an adapter's front path checks.
   */
  versionKeysOf(scopes: readonly string[]): string[] {
    let keys = this.scopeVersionKeys.get(scopes)
    if (keys === undefined) {
      // Frozen: entries and flights hold it too.
      keys = Object.freeze([...this.settings.prefixVersionKeys, ...scopes.map(urlVersionKey)]) as string[]
      this.scopeVersionKeys.set(scopes, keys)
    }
    return keys
  }

  /** Reads the entry and its generations; `waited`: the flights this request already waited for. */
  private read(
    view: HttpRequestView<Raw>,
    context: LookupContext,
    key: string,
    versionKeys: string[],
    waited: readonly Flight[],
  ): LookupResult | Promise<LookupResult> {
    const backend = this.backend()
    if (!backend.sync) return this.readAsync(view, context, backend, key, versionKeys, waited)
    let first: unknown
    let versions: number[]
    try {
      first = storedValue(backend.sync, key)
      versions = this.generationsSync(backend.sync, versionKeys)
    } catch (error) {
      return this.readFailed(error, key)
    }
    if (isVaryRecord(first)) {
      let variant: unknown
      try {
        variant = storedValue(backend.sync, variantKey(key, first.id, view.headers, first.vary))
      } catch (error) {
        return this.readFailed(error, key)
      }
      return this.decide(view, context, key, versionKeys, versions, variant, first, waited)
    }
    return this.decide(view, context, key, versionKeys, versions, first, undefined, waited)
  }

  /**
   * The current generations of a URL on an in-process backend. Read again only when the backend
   * says one of @cache's own keys may have changed since the last read (`internalVersion`): every
   * invalidation and `clear()` is such a change, so a hit reads one key, its entry. A generation
   * expired or evicted without a write is still the last one written: entries under it were
   * stored after the last invalidation, and those under older ones still do not match it.
   * Kept per generation keys array (one per URL; not a request's own array with its tags).
   */
  private generationsSync(sync: SyncAccess, versionKeys: string[]): number[] {
    const version = sync.internalVersion?.()
    if (version === undefined)
      return currentGenerationsSync(sync, versionKeys, this.generationTtls(versionKeys))
    const known = this.knownGenerations.get(versionKeys)
    if (known !== undefined && known.sync === sync && known.version === version) return known.generations
    const generations = currentGenerationsSync(sync, versionKeys, this.generationTtls(versionKeys))
    // Kept only for the URL's own (frozen) array; read after the generations: creating one is a change.
    if (Object.isFrozen(versionKeys))
      this.knownGenerations.set(versionKeys, {
        sync,
        version: sync.internalVersion!(),
        generations: Object.freeze(generations) as number[],
      })
    return generations
  }

  private async readAsync(
    view: HttpRequestView<Raw>,
    context: LookupContext,
    backend: CacheBackend,
    key: string,
    versionKeys: string[],
    waited: readonly Flight[],
    again = true,
  ): Promise<LookupResult> {
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
        first = await backend.get(variantKey(key, record.id, view.headers, record.vary))
      }
    } catch (error) {
      return this.readFailed(error, key)
    }
    // A response stored (and its flight ended) while this read was on its way may be the one it
    // missed: read once more rather than run the handler again.
    if (
      again &&
      this.stores !== storesBefore &&
      !(isStoredResponse(first) && sameGenerations(first.versions, versions))
    )
      return this.readAsync(view, context, backend, key, versionKeys, waited, false)
    return this.decide(view, context, key, versionKeys, versions, first, record, waited)
  }

  private decide(
    view: HttpRequestView<Raw>,
    context: LookupContext,
    key: string,
    versionKeys: string[],
    versions: number[],
    found: unknown,
    record: VaryRecord | undefined,
    waited: readonly Flight[],
  ): LookupResult | Promise<LookupResult> {
    const s = this.settings
    // A refresh (of this cache or of another one it passes) asks for a fresh response: no hit.
    const revalidating = view.refresh !== undefined
    const now = s.now()
    // Why a stale entry is refreshed by the request itself rather than served (see `backgroundRefresh`).
    let refreshedIn: string | undefined
    if (!revalidating && isStoredResponse(found) && sameGenerations(found.versions, versions)) {
      if (now < found.staleAt) {
        this.observer.hit(key)
        return this.replay(view, key, found, now, 'fresh')
      }
      if (s.swrMs !== undefined && now < found.staleAt + s.swrMs) {
        // A copy run in the background would not be the request (see `backgroundRefresh`), or
        // the adapter could not start one: the request itself refreshes the entry, as a miss.
        if (
          context.backgroundRefresh?.() === false ||
          !this.revalidate(
            view,
            context,
            record === undefined ? key : variantKey(key, record.id, view.headers, record.vary),
          )
        )
          refreshedIn = REFRESH_IN_REQUEST
        else {
          this.observer.hit(key)
          return this.replay(view, key, found, now, 'stale')
        }
      }
    }
    let missKind = refreshedIn !== undefined ? 'stale' : record === undefined ? 'uri-miss' : 'vary-miss'
    if (view.method === 'HEAD') {
      // A HEAD response carries no body to store: answer it, and let a GET fill the cache. A stale
      // entry it could not refresh in the background stays stale (`fwd=stale`, no
      // `detail=refresh-in-request`: nothing is refreshed).
      this.observer.miss(key)
      return {
        kind: 'miss',
        recorder: NOT_RECORDED,
        recording: false,
        set: this.status(`fwd=${missKind}`, 'MISS'),
        key,
      }
    }
    // A known variant has its own flight, so concurrent misses of two encodings do not wait on each other.
    let flightKey = record === undefined ? key : variantKey(key, record.id, view.headers, record.vary)
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
        if (sameVariant(view.headers, shared)) {
          this.observer.hit(key)
          return this.replay(view, key, shared.entry, now, waited.length > 0 ? 'collapsed' : 'fresh')
        }
        // Same URL, another variant (e.g. another Accept-Encoding): its own flight.
        record = shared.record!
        flightKey = variantKey(key, record.id, view.headers, record.vary)
        if (refreshedIn === undefined) missKind = 'vary-miss'
        continue
      }
      // Wait for a first response (of the URL, then of its variant) once each, bounded; then look up again.
      // In all at most collapseTimeout: a request that waited for a first response that never
      // came does not wait again for another waiting request that took over.
      if (flight.pending && !waited.includes(flight) && waited.length < 2) {
        const now = performance.now()
        const deadline = waitDeadlines.get(view) ?? now + s.collapseTimeoutMs
        waitDeadlines.set(view, deadline)
        if (deadline > now) {
          const next = [...waited, flight]
          return flight.wait(deadline - now).then(() => this.read(view, context, key, versionKeys, next))
        }
      }
      break
    }
    // A refresh's copy that the app resolved otherwise than the request it refreshes (another
    // protocol, host or URL) would be stored under another key and leave the stale entry as it
    // is: refused, counted and emitted as a failed refresh.
    const refresh = view.refresh
    if (refresh instanceof RefreshRun && refresh.engine === this && refresh.key !== flightKey)
      return this.bypass(view, 'request', 'refresh-key-changed')
    this.observer.miss(key)
    return this.lead(view, context, key, flightKey, versions, versionKeys, record, missKind, refreshedIn)
  }

  /**
   * The miss that runs the handler: concurrent requests for the key wait for it (bounded; a
   * background refresh makes nobody wait) and replay its response once it is decided on: it
   * ended complete and storable, finished, and what ran after the cache settled; it is stored
   * then. Anything that makes it unstorable releases the waiting requests at once.
   */
  private lead(
    view: HttpRequestView<Raw>,
    context: LookupContext,
    key: string,
    flightKey: string,
    versions: number[],
    versionKeys: string[],
    record: VaryRecord | undefined,
    missKind: string,
    /** Why this miss refreshes a stale entry rather than serving it, told after `stored`. */
    refreshedIn?: string,
  ): MissResult {
    const s = this.settings
    const why = detailOf(refreshedIn)
    const refresh =
      view.refresh instanceof RefreshRun && view.refresh.engine === this ? view.refresh : undefined
    if (refresh !== undefined) refresh.recording = true
    // Invalidation reaches a flight through the generation keys of its URL's scopes, and of its tags.
    const flight = new Flight(
      s.keyPrefix,
      versionKeys.filter(isUrlVersionKey),
      s.tags === undefined ? undefined : versionKeys.filter((versionKey) => !isUrlVersionKey(versionKey)),
    )
    if (view.refresh === undefined) this.inflight.set(flightKey, flight)
    const forget = () => {
      if (this.inflight.get(flightKey) === flight) this.inflight.delete(flightKey)
    }
    const release = () => {
      flight.withdraw()
      forget()
    }
    const recorder = new Recording(s.maxBodySize)
    let ready: Shared | undefined
    let offered: string | undefined
    let settled = false
    let resolveOutcome!: (outcome: { stored: boolean; reason?: string }) => void
    const outcome = new Promise<{ stored: boolean; reason?: string }>((resolve) => {
      resolveOutcome = resolve
    })
    const settle = (given: string | undefined, detail?: string) => {
      if (settled) return
      settled = true
      // A refresh already over (given up after revalidateTimeout, counted as failed) stores
      // nothing when its handler ends later: a newer refresh may have stored since.
      const reason = given === undefined && refresh?.done === true ? 'abandoned' : given
      const over = () => {
        flight.settle()
        forget()
      }
      if (reason !== undefined || ready === undefined) {
        release()
        over()
        const why = reason ?? 'it was not storable'
        // The recorder's own reason (`not-storable: set-cookie set after the cache`) says more.
        const told = detail !== undefined && detail !== why ? `${why} (${detail})` : why
        refresh?.finish(new CacheError(`the refreshed response for ${key} was not stored: ${told}`))
        resolveOutcome({ stored: false, reason: detail ?? why })
        return
      }
      // Shared with waiting requests only now that it is decided on (it finished, and what ran
      // after the cache is over: an async handler's work after sending may still have failed);
      // they keep replaying it until the backend has it too.
      const entry = ready
      flight.share(entry)
      void this.store(key, entry.entry, entry.record, view.headers)
        .finally(() => {
          this.stores++
          over()
        })
        .then(
          () => resolveOutcome({ stored: true }),
          () => resolveOutcome({ stored: false, reason: 'set' }),
        )
      refresh?.finish()
    }

    recorder.onHead = (head) => {
      const own = head.own ?? head
      const headers = head.headers
      const advice: HeadAdvice = { set: [], storable: false }
      const reason = this.refusal(view, context, head.status, own.status, headers, 'head')
      if (reason !== undefined) {
        release()
        advice.set = this.status(`fwd=${missKind}; detail=${reason}`, 'MISS')
        return advice
      }
      if (head.body === undefined) {
        // Streamed: stored once it ends complete, unless its declared length is already too large.
        const tooLarge = Number(headers['content-length']) > s.maxBodySize
        advice.set = this.status(`fwd=${missKind}; ${tooLarge ? 'detail=too-large' : `stored${why}`}`, 'MISS')
        if (tooLarge) {
          release()
          return advice
        }
      } else {
        if (s.etag && headers.etag === undefined)
          advice.set.push([
            'etag',
            bodyEtag(Buffer.from(head.body.buffer, head.body.byteOffset, head.body.byteLength)),
          ])
        advice.set.push(...this.status(`fwd=${missKind}; stored${why}`, 'MISS'))
      }
      offered = this.offerValue(
        view,
        headers,
        this.entryTtlMs(headers),
        receivedAge(headers.age ?? own.headers.age),
      )
      if (offered !== undefined) advice.cacheControl = offered
      advice.storable = true
      return advice
    }
    recorder.onTooLarge = release
    recorder.onRefuse = release
    recorder.onEnd = (ended) => {
      // The cache's own Cache-Control is not the handler's: not stored, not a TTL.
      const captured = withoutOwnCacheControl(ended, offered)
      const reason = flight.invalidated ? 'invalidated' : this.unstorable(view, context, captured)
      if (reason !== undefined) {
        release()
        return reason
      }
      const entry = this.toEntry(view, captured, versions, versionKeys)
      const vary = varyNames(captured.final.headers)
      // A refresh stands in for the variant it refreshes: without a name that variant was keyed
      // on (a `Vary` a layer adds where the adapter cannot see it), it would answer every variant.
      if (view.refresh !== undefined && record !== undefined) {
        const missing = record.vary.filter((name) => !vary.includes(name))
        if (missing.length > 0) {
          release()
          return `not-storable: no Vary: ${missing.join(', ')} as the entry it refreshes had`
        }
      }
      let varyRecord: VaryRecord | undefined
      if (vary.length > 0) {
        varyRecord =
          record !== undefined && sameNames(record.vary, vary)
            ? record
            : { vary, id: randomBytes(6).toString('base64url') }
      }
      ready = { entry, record: varyRecord, headers: view.headers }
      return undefined
    }
    recorder.onSettle = (finished, detail) => {
      const reason = !finished
        ? 'it did not finish'
        : ready === undefined
          ? 'it was not storable'
          : flight.invalidated
            ? 'invalidated'
            : (context.verdict?.('finish') ??
              (s.now() >= ready.entry.staleAt ? 'expired before it finished' : undefined))
      settle(reason, detail)
    }
    recorder.outcome = outcome
    return { kind: 'miss', recorder, recording: true, set: this.status(`fwd=${missKind}${why}`, 'MISS'), key }
  }

  /** Why a recorded response must not be stored (nor shared with waiting requests), or `undefined`. */
  private unstorable(
    view: HttpRequestView<Raw>,
    context: LookupContext,
    captured: Ended,
  ): string | undefined {
    if (captured.incomplete !== undefined) return captured.incomplete
    if (captured.body === undefined) return 'too-large'
    return this.refusal(view, context, captured.final.status, captured.status, captured.final.headers, 'end')
  }

  /** Why a response with these statuses and headers must not be stored, or `undefined`. */
  private refusal(
    view: HttpRequestView<Raw>,
    context: LookupContext,
    finalStatus: number,
    status: number,
    headers: OutgoingHttpHeaders,
    stage: 'head' | 'end',
  ): string | undefined {
    const s = this.settings
    // What runs after the cache turned the request into another method (a method override).
    if (view.method !== 'GET') return 'method'
    const verdict = context.verdict?.(stage)
    if (verdict !== undefined) return verdict
    if (!s.storable(finalStatus) || !s.storable(status)) return 'status'
    const reason = unstorableReason(headers)
    if (reason !== undefined) return reason
    if (s.ttlFromResponse !== undefined) {
      const ttl = ttlFromResponse(headers, s.ttlFromResponse)
      if (typeof ttl === 'string') return ttl
    }
    return context.recheck?.()
  }

  private toEntry(
    view: HttpRequestView<Raw>,
    captured: Ended,
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
      // The URL it answers: under `trust proxy`, the forwarded host, which invalidation names.
      url: `${view.protocol}://${view.host ?? view.headers.host ?? ''}${view.url}`,
    }
    if (s.tags) {
      try {
        entry.tags = [...s.tags(view.raw)]
      } catch {
        // The tags were read when the request was looked up; the index only shows them.
      }
    }
    if (s.frontSkipsAllMiddleware) entry.front = true
    const age = receivedAge(captured.final.headers.age ?? captured.headers.age)
    if (age > 0) entry.initialAge = age
    const removed = removedHeaders(captured.earlier, captured.final.headers)
    if (removed.length > 0) entry.removed = removed
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
  private skipReason(view: HttpRequestView<Raw>): string | undefined {
    const s = this.settings
    if (!responseCachingEnabled(s.enabledFromEnv)) return 'disabled'
    if (s.bypass === undefined) return undefined
    try {
      return s.bypass(view.raw) ? 'bypass' : undefined
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
   * The `cacheControl` option's header for a response the cache stores or replays, when the
   * option is set and the response may be kept by a shared cache (no `Cache-Control` of its own,
   * no `Set-Cookie`, no `Vary: *`).
   */
  private offerValue(
    view: HttpRequestView<Raw>,
    headers: OutgoingHttpHeaders | undefined,
    ttlMs: number,
    receivedAge: number,
  ): string | undefined {
    const s = this.settings
    if (s.cacheControl === undefined) return undefined
    if (headers !== undefined && !sharable(headers)) return undefined
    // A downstream cache keys by URL and the response's own Vary: it cannot see what else the key
    // holds, nor what else chose the response.
    const shared =
      !s.hiddenSelection &&
      s.vary.length === 0 &&
      s.key === undefined &&
      view.headers.authorization === undefined &&
      view.headers.cookie === undefined
    return cacheControlValue(s.cacheControl, ttlMs, s.swrMs, shared, receivedAge)
  }

  private async store(
    key: string,
    entry: StoredResponse,
    record: VaryRecord | undefined,
    headers: IncomingHttpHeaders,
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
          { key: variantKey(key, record.id, headers, record.vary), value: entry, ttl },
        ])
      }
      this.observer.set(key)
    } catch (error) {
      this.observer.error('set', error, key)
      throw error
    }
  }

  /** The headers and body of a replay; `304` when `If-None-Match` matches. */
  private replay(
    view: HttpRequestView<Raw>,
    key: string,
    entry: StoredResponse,
    now: number,
    freshness: 'fresh' | 'stale' | 'collapsed',
  ): LookupResult {
    const s = this.settings
    const headers = entry.headers.slice()
    const age =
      (entry.initialAge ?? 0) + (now > entry.storedAt ? Math.floor((now - entry.storedAt) / 1000) : 0)
    headers.push('age', String(age))
    if (entry.etag !== '') headers.push('etag', entry.etag)
    if (s.statusHeader === 'cache-status') {
      const detail =
        freshness === 'collapsed'
          ? 'fwd=uri-miss; collapsed'
          : `hit; ttl=${Math.floor((entry.staleAt - now) / 1000)}`
      headers.push('cache-status', `${s.cacheName}; ${detail}`)
    } else if (s.statusHeader === 'x-cache') {
      headers.push('x-cache', freshness === 'stale' ? 'STALE' : 'HIT')
    }
    // Not counted down: with `Age`, a downstream cache's freshness is max-age − Age (RFC 9111 §4.2.3).
    const cacheControl =
      s.cacheControl !== undefined && !hasHeader(entry.headers, 'cache-control')
        ? this.offerValue(view, undefined, entry.staleAt - entry.storedAt, entry.initialAge ?? 0)
        : undefined
    if (etagMatches(view.headers['if-none-match'] as string | undefined, entry.etag)) {
      const kept: HeaderList = []
      for (let i = 0; i < headers.length; i += 2) {
        const name = headers[i] as string
        if (NOT_MODIFIED_HEADERS.has(name) || name === 'age' || name === 'cache-status' || name === 'x-cache')
          kept.push(name, headers[i + 1]!)
      }
      return { kind: 'not-modified', status: 304, headers: kept, cacheControl, key, ...removal(entry) }
    }
    headers.push('content-length', String(entry.body.length))
    return {
      kind: 'hit',
      freshness,
      status: entry.status,
      headers,
      body: entry.body,
      headOnly: view.method === 'HEAD',
      cacheControl,
      key,
      ...removal(entry),
    }
  }

  /**
   * Refreshes a stale entry in the background through the adapter's `revalidate`: nobody waits
   * for it. It ends when the refreshed response was stored or refused, the adapter gave up on it,
   * or after `revalidateTimeout`; anything but a stored response is counted and emitted as a
   * `revalidate` error, and the stale entry stays. `false` when the adapter could not start a
   * copy (the request refreshes the entry itself); `true` otherwise, a refresh already under way
   * or none possible (no `revalidate`) included.
   */
  private revalidate(_view: HttpRequestView<Raw>, context: LookupContext, flightKey: string): boolean {
    if (context.revalidate === undefined || this.inflight.has(flightKey) || this.refreshing.has(flightKey))
      return true
    this.refreshing.add(flightKey)
    const run = new RefreshRun(this, flightKey, (error) => {
      this.refreshing.delete(flightKey)
      if (error !== undefined) this.observer.error('revalidate', error, flightKey)
    })
    const timer = setTimeout(
      () =>
        run.finish(
          new CacheError(
            `the refresh of ${flightKey} took longer than revalidateTimeout (${this.settings.revalidateTimeoutMs} ms)`,
          ),
        ),
      this.settings.revalidateTimeoutMs,
    )
    timer.unref?.()
    run.timer = timer
    try {
      const stop = context.revalidate(run)
      // No copy could be started: over, without an error; the request refreshes the entry.
      if (stop === false) {
        run.finish()
        return false
      }
      run.stop = stop
    } catch (error) {
      run.finish(error)
    }
    if (run.done) run.stop?.()
    return true
  }

  private readFailed(error: unknown, key: string): MissResult {
    // A backend that is down makes the cache a pass-through: counted, never the request's failure.
    this.observer.error('get', error, key)
    return {
      kind: 'miss',
      recorder: NOT_RECORDED,
      recording: false,
      set: this.status('fwd=uri-miss; detail=error', 'MISS'),
      key,
    }
  }

  private bypass(view: HttpRequestView<Raw>, fwd: string, detail: string): BypassResult {
    // A background refresh that the cache does not handle stores nothing: it is over now, the app
    // may still answer it.
    const refresh = view.refresh
    if (refresh instanceof RefreshRun && refresh.engine === this)
      refresh.finish(new CacheError(`the refresh of ${view.url} bypassed the cache (${detail})`))
    return {
      kind: 'bypass',
      reason: detail,
      set: this.status(fwd === 'method' ? 'fwd=method' : `fwd=${fwd}; detail=${detail}`, 'BYPASS'),
    }
  }

  /** The status header (`Cache-Status` or `X-Cache`) of a miss or bypass, or none. */
  private status(cacheStatus: string, xCache: string): [string, string][] {
    const s = this.settings
    if (s.statusHeader === 'cache-status') return [['cache-status', `${s.cacheName}; ${cacheStatus}`]]
    if (s.statusHeader === 'x-cache') return [['x-cache', xCache]]
    return []
  }
}

/**
 * The `Cache-Status` detail of a stale entry within `staleWhileRevalidate` that the request
 * refreshes itself, as a miss, because the adapter cannot refresh it faithfully in the background
 * (see `LookupContext.backgroundRefresh`).
 */
const REFRESH_IN_REQUEST = 'refresh-in-request'

/** `; detail=…` for a status line, or nothing. */
function detailOf(detail: string | undefined): string {
  return detail === undefined ? '' : `; detail=${detail}`
}

/** When a request's waits for concurrent first responses are over (see `collapseTimeout`). */
const waitDeadlines = new WeakMap<object, number>()

/** A background refresh this cache started (see {@link LookupContext.revalidate}). */
class RefreshRun implements Refresh {
  done = false
  /** Set once this cache records the refresh's response (see {@link Refresh.recording}). */
  recording = false
  timer: ReturnType<typeof setTimeout> | undefined
  stop: (() => void) | undefined

  constructor(
    readonly engine: HttpCache,
    readonly key: string,
    private readonly over: (error?: unknown) => void,
  ) {}

  fail(error: unknown): void {
    this.finish(error ?? new CacheError(`the refresh of ${this.key} failed`))
  }

  finish(error?: unknown): void {
    if (this.done) return
    this.done = true
    clearTimeout(this.timer)
    this.over(error)
    // Stops a handler still writing (a stream, a timer) from holding anything.
    this.stop?.()
  }
}

/** A response as recorded: what a replay carries, what the client got, and the body. */
interface Ended {
  status: number
  headers: OutgoingHttpHeaders
  final: { status: number; headers: OutgoingHttpHeaders }
  body: Buffer | undefined
  incomplete: string | undefined
  /** The names of the headers the layers before the cache set (see {@link ResponseHead.own}). */
  earlier: readonly string[]
}

/** The recorder of one miss: collects the body (a copy of each chunk) and reports to its cache. */
class Recording implements ResponseRecorder {
  onHead: (head: ResponseHead) => HeadAdvice = () => ({ set: [], storable: false })
  onTooLarge: () => void = () => {}
  onRefuse: () => void = () => {}
  onEnd: (ended: Ended) => string | undefined = () => undefined
  onSettle: (finished: boolean, reason?: string) => void = () => {}
  outcome!: Promise<{ stored: boolean; reason?: string }>
  private head_: ResponseHead | undefined
  private readonly chunks: Buffer[] = []
  private size = 0
  private tooLarge = false
  private ended = false
  private finished = false
  private settled = false
  /** Why the ended response is not stored (refused at `end`), reported when it settles. */
  private refused: string | undefined

  constructor(private readonly maxBodySize: number) {}

  head(head: ResponseHead): HeadAdvice {
    this.head_ = head
    // A body already over the limit is not the cache's: it is treated as streamed.
    return this.onHead(this.tooLarge && head.body !== undefined ? { ...head, body: undefined } : head)
  }

  write(chunk: Uint8Array | string, encoding?: BufferEncoding): void {
    if (!this.ended) this.collect(chunk, encoding)
  }

  end(
    chunk?: Uint8Array | string,
    options: { encoding?: BufferEncoding; incomplete?: string; head?: ResponseHead } = {},
  ): void {
    if (this.ended || this.settled) return
    this.ended = true
    if (chunk !== undefined) this.collect(chunk, options.encoding)
    const body = this.tooLarge
      ? undefined
      : this.chunks.length === 1
        ? this.chunks[0]
        : Buffer.concat(this.chunks, this.size)
    const seen = this.head_
    const last = options.head ?? seen
    const own = last?.own ?? seen?.own ?? seen
    let incomplete = options.incomplete
    // Headers that went out without passing the recorder: what was sent is unknown.
    if (incomplete === undefined && (seen === undefined || last === undefined)) incomplete = 'headers-unseen'
    if (incomplete === undefined) {
      // The length the handler set, and the one the client was told: both must be the bytes sent.
      for (const declared of [own!.headers['content-length'], last!.headers['content-length']]) {
        if (declared !== undefined && Number(declared) !== this.size) {
          incomplete = 'content-length'
          break
        }
      }
    }
    this.refused = this.onEnd({
      status: own?.status ?? last?.status ?? 0,
      headers: own?.headers ?? {},
      final: { status: last?.status ?? 0, headers: last?.headers ?? {} },
      body,
      incomplete,
      earlier: (last?.own ?? seen?.own)?.earlier ?? [],
    })
    if (this.finished) this.settle(true)
  }

  refuse(_reason: string): void {
    this.onRefuse()
  }

  finish(): void {
    if (this.finished || this.settled) return
    this.finished = true
    if (this.ended) this.settle(true)
  }

  abort(reason: string): void {
    if (!this.ended) this.refused = reason
    this.settle(false, reason)
  }

  private settle(finished: boolean, reason?: string): void {
    if (this.settled) return
    this.settled = true
    this.onSettle(finished, finished ? this.refused : (reason ?? this.refused))
  }

  private collect(chunk: Uint8Array | string, encoding: BufferEncoding | undefined): void {
    if (this.tooLarge) return
    // Always a copy: a handler may reuse or fill its buffer once it is written.
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk, encoding ?? 'utf8') : Buffer.from(chunk)
    this.size += bytes.length
    if (this.size > this.maxBodySize) {
      this.tooLarge = true
      this.chunks.length = 0
      this.onTooLarge()
    } else {
      this.chunks.push(bytes)
    }
  }
}

/** The recorder of a response the cache does not store (a `HEAD` miss, a failed read). */
const NOT_RECORDED: ResponseRecorder = {
  head: () => ({ set: [], storable: false }),
  write: () => {},
  end: () => {},
  finish: () => {},
  abort: () => {},
  refuse: () => {},
  outcome: Promise.resolve({ stored: false, reason: 'not-recorded' }),
}

/** A request that announces a body (`Content-Length` above 0, or `Transfer-Encoding`). */
function hasBody(headers: IncomingHttpHeaders): boolean {
  if (headers['transfer-encoding'] !== undefined) return true
  const length = headers['content-length']
  return length !== undefined && length !== '0'
}

/** Whether header lines (name, value, …) announce a body: `Transfer-Encoding`, or a `Content-Length` above 0. */
function linesAnnounceBody(lines: readonly string[]): boolean {
  for (let i = 0; i + 1 < lines.length; i += 2) {
    const name = lines[i]!
    if (name.length === 17 && name.toLowerCase() === 'transfer-encoding') return true
    if (name.length === 14 && name.toLowerCase() === 'content-length' && lines[i + 1]!.trim() !== '0')
      return true
  }
  return false
}

/** Whether a flat `[name, value, …]` list has a header. */
function hasHeader(headers: readonly (string | string[])[], name: string): boolean {
  for (let i = 0; i < headers.length; i += 2) if (headers[i] === name) return true
  return false
}

/** A response a shared cache may keep: no `Set-Cookie`, no `Vary: *`. */
function sharable(headers: OutgoingHttpHeaders): boolean {
  if (headers['cache-control'] !== undefined || setsCookie(headers['set-cookie'])) return false
  const vary = headers.vary
  return vary === undefined || !String(vary).includes('*')
}

/**
 * The names of `earlier` (headers the layers before the cache set) that the client did not
 * receive, lower case, once each: what a replay removes from those the layers set again.
 */
function removedHeaders(earlier: readonly string[], final: OutgoingHttpHeaders): string[] {
  const names = new Set<string>()
  for (const name of earlier) {
    const lower = String(name).toLowerCase()
    if (final[lower] === undefined) names.add(lower)
  }
  return [...names]
}

/** The `remove` of a replay of `entry`: none for an entry that removed nothing (or stored before). */
function removal(entry: StoredResponse): { remove?: readonly string[] } {
  const removed = entry.removed
  return Array.isArray(removed) && removed.length > 0 ? { remove: removed.map(String) } : {}
}

/** A recorded response without the `Cache-Control` the cache set on it (`offered`). */
function withoutOwnCacheControl(captured: Ended, offered: string | undefined): Ended {
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
function sameVariant(headers: IncomingHttpHeaders, shared: Shared): boolean {
  const record = shared.record
  return record === undefined || sameVariantValues(headers, shared.headers, record.vary)
}

/**
 * The view with other headers to key on (see {@link credentialHeaders}); everything else is read
 * from the adapter's view itself, its getters included.
 */
function withHeaders<Raw>(view: HttpRequestView<Raw>, headers: IncomingHttpHeaders): HttpRequestView<Raw> {
  return Object.create(view, { headers: { value: headers, enumerable: true } }) as HttpRequestView<Raw>
}

/** The value under `key` alone: the backend's `get` when it has one, which builds no entry. */
export function storedValue(sync: SyncAccess, key: string): unknown {
  return sync.get === undefined ? sync.getEntry(key)?.value : sync.get(key)
}
