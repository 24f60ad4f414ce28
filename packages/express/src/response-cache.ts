import { randomBytes } from 'node:crypto'
import { IncomingMessage, ServerResponse } from 'node:http'
import { Duplex } from 'node:stream'
import { type CacheBackend, CacheError, CacheObserver, getBackend, tagVersionKey } from '@cache/core'
import { type CapturedResponse, captureResponse } from './capture.js'
import type { Settings } from './options.js'
import { requestKey, variantKey } from './request-key.js'
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

type Request = IncomingMessage & { originalUrl?: string; hostname?: string; app?: unknown }

/** The part of an Express request that tells which route answered, and through which layers. */
type ExpressRequest = IncomingMessage & { route?: { stack?: { handle?: unknown; method?: string }[] } }

/** The route Express was dispatching when the cache ran (none: app-level), and the cache's function. */
interface Position {
  route: ExpressRequest['route']
  self: Function
}

/** An Express app as far as a refresh needs it: its request handler and, when mounted, its parent. */
interface ExpressApp {
  handle?: (req: unknown, res: unknown, done: (error?: unknown) => void) => void
  parent?: ExpressApp
}

/** What concurrent requests for one key wait for: the leader's response and the headers it varied on. */
interface Flight {
  entry: StoredResponse
  /** Set when the response varies on request headers. */
  record: VaryRecord | undefined
  headers: IncomingMessage['headers']
}

/**
 * Marks the synthetic request of a stale-while-revalidate refresh; its value reports the outcome
 * (an error when the refreshed response was not stored).
 */
const REVALIDATE = Symbol.for('@cache/express revalidate')
type RevalidateReport = (error?: unknown) => void

/**
 * The engine behind `cacheResponse`: looks a request up, replays a hit with one `writeHead` and
 * one `end`, or runs the handler once per key (single-flight) and stores what it sent.
 */
export class ResponseCache {
  readonly observer = new CacheObserver('http')
  private readonly inflight = new Map<string, Promise<Flight | undefined>>()
  /** Flights whose response already ended complete, while it is being stored: served as hits. */
  private readonly ready = new WeakMap<Promise<Flight | undefined>, Flight>()
  /** Flight keys with a stale-while-revalidate refresh under way. */
  private readonly refreshing = new Set<string>()
  /** Requests this engine already handles: a second pass (the same cache mounted twice) runs through. */
  private readonly handled = new WeakSet<IncomingMessage>()
  /** Per request: where the cache sat among Express's layers, to find middleware that ran after it. */
  private readonly positions = new WeakMap<IncomingMessage, Position>()

  constructor(readonly settings: Settings) {}

  backend(): CacheBackend {
    return this.settings.backend ?? getBackend()
  }

  /** The key of a request, or `undefined` when its host is malformed. */
  keyFor(req: Request): string | undefined {
    const s = this.settings
    if (s.key) return `${s.keyPrefix}:${s.key(req)}`
    return requestKey(req, s.keyPrefix, s.vary)
  }

  /**
   * Serves `req` from the cache, or calls `run` (the handler, or `next`) and stores its response.
   * `self` is the function Express called (the middleware or the wrapped handler), used to find
   * route middleware that runs after the cache.
   */
  handle(req: Request, res: ServerResponse, run: () => unknown, self?: Function): unknown {
    if (this.handled.has(req)) return run()
    this.handled.add(req)
    if (self !== undefined) this.positions.set(req, { route: (req as ExpressRequest).route, self })
    const method = req.method
    if (method !== 'GET' && method !== 'HEAD') return this.bypass(res, run, 'method', 'method')
    const s = this.settings
    // A GET with a body ("fat GET"): a body parser could make the response depend on what is not keyed.
    if (hasBody(req)) return this.bypass(res, run, 'request', 'body')
    if (!s.allowAuthorized && req.headers.authorization !== undefined)
      return this.bypass(res, run, 'request', 'authorization')
    if (!s.allowCookies && req.headers.cookie !== undefined) return this.bypass(res, run, 'request', 'cookie')
    let key: string | undefined
    let versionKeys: string[]
    try {
      key = this.keyFor(req)
      versionKeys = s.tags ? [...s.prefixVersionKeys, ...s.tags(req).map(tagVersionKey)] : s.prefixVersionKeys
    } catch (error) {
      this.observer.error('key', error)
      return this.bypass(res, run, 'request', 'key-error')
    }
    if (key === undefined) return this.bypass(res, run, 'request', 'host')
    const pending = this.inflight.get(key)
    if (pending !== undefined && method === 'GET' && !isRevalidation(req)) {
      return this.follow(req, res, run, key, pending)
    }
    const backend = this.backend()
    if (backend.sync) {
      let values: unknown[]
      try {
        values = [backend.sync.getEntry(key)?.value]
        for (const k of versionKeys) values.push(backend.sync.getEntry(k)?.value)
      } catch (error) {
        return this.lookupFailed(res, run, error, key)
      }
      const first = values[0]
      const versions = versionsOf(values)
      if (isVaryRecord(first)) {
        let variant: unknown
        try {
          variant = backend.sync.getEntry(variantKey(key, first.id, req.headers, first.vary))?.value
        } catch (error) {
          return this.lookupFailed(res, run, error, key)
        }
        return this.decide(req, res, run, key, versions, variant, first)
      }
      return this.decide(req, res, run, key, versions, first, undefined)
    }
    return this.lookupAsync(req, res, run, backend, key, versionKeys)
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
      key = requestKey(req, s.keyPrefix, s.vary)
      if (key === undefined) return false
      entry = backend.sync.getEntry(key)?.value
      if (!isStoredResponse(entry) || entry.front !== true) return false
      const values: unknown[] = [entry]
      for (const k of s.prefixVersionKeys) values.push(backend.sync.getEntry(k)?.value)
      versions = versionsOf(values)
    } catch (error) {
      this.observer.error('get', error, key)
      return false
    }
    const now = s.now()
    if (!sameVersions(entry.versions, versions) || now >= entry.staleAt) return false
    this.observer.hit(key)
    this.replay(req, res, entry, now, 'hit')
    return true
  }

  private async lookupAsync(
    req: Request,
    res: ServerResponse,
    run: () => unknown,
    backend: CacheBackend,
    key: string,
    versionKeys: string[],
  ): Promise<unknown> {
    let first: unknown
    let versions: number[]
    let record: VaryRecord | undefined
    try {
      const values = await backend.getMany([key, ...versionKeys])
      versions = versionsOf(values)
      first = values[0]
      if (isVaryRecord(first)) {
        record = first
        first = await backend.get(variantKey(key, record.id, req.headers, record.vary))
      }
    } catch (error) {
      return this.lookupFailed(res, run, error, key)
    }
    return this.decide(req, res, run, key, versions, first, record)
  }

  private decide(
    req: Request,
    res: ServerResponse,
    run: () => unknown,
    key: string,
    versions: number[],
    found: unknown,
    record: VaryRecord | undefined,
  ): unknown {
    const s = this.settings
    const revalidating = isRevalidation(req)
    if (!revalidating && isStoredResponse(found) && sameVersions(found.versions, versions)) {
      const now = s.now()
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
    this.observer.miss(key)
    const missKind = record === undefined ? 'uri-miss' : 'vary-miss'
    if (req.method === 'HEAD') {
      // A HEAD response carries no body to store: answer it, and let a GET fill the cache.
      this.setStatus(res, `fwd=${missKind}`, 'MISS')
      return run()
    }
    // A known variant has its own flight, so concurrent misses of two encodings do not wait on each other.
    const flightKey = record === undefined ? key : variantKey(key, record.id, req.headers, record.vary)
    const pending = this.inflight.get(flightKey)
    if (pending !== undefined && !revalidating) return this.follow(req, res, run, key, pending)
    return this.lead(req, res, run, key, flightKey, versions, record, missKind)
  }

  /**
   * Runs the handler and captures what it sends. Concurrent requests for the key wait for it (a
   * background refresh makes nobody wait) and get its response once it ended complete and
   * storable; it is stored once it finished.
   */
  private lead(
    req: Request,
    res: ServerResponse,
    run: () => unknown,
    key: string,
    flightKey: string,
    versions: number[],
    record: VaryRecord | undefined,
    missKind: string,
  ): unknown {
    const s = this.settings
    const report = (req as any)[REVALIDATE] as RevalidateReport | undefined
    let settle!: (flight: Flight | undefined) => void
    const flight = new Promise<Flight | undefined>((resolve) => {
      settle = resolve
    })
    if (report === undefined) this.inflight.set(flightKey, flight)
    const release = () => {
      if (this.inflight.get(flightKey) === flight) this.inflight.delete(flightKey)
    }
    let ready: { entry: StoredResponse; record: VaryRecord | undefined } | undefined
    this.setStatus(res, `fwd=${missKind}`, 'MISS')
    captureResponse(res, s.maxBodySize, {
      beforeHeaders: (out, body) => {
        // For this client only: the real decision is made once the headers went out.
        if (body === undefined || !s.storable(out.statusCode)) return
        if (unstorableReason(out.getHeaders()) !== undefined) return
        if (s.etag && out.getHeader('etag') === undefined) out.setHeader('etag', bodyEtag(body))
        this.setStatus(out, `fwd=${missKind}; stored`, 'MISS')
      },
      ended: (captured) => {
        const reason = this.unstorable(req, captured)
        if (reason !== undefined) {
          settle(undefined)
          release()
          report?.(new CacheError(`the refreshed response for ${key} was not stored: ${reason}`))
          return
        }
        const entry = this.toEntry(captured, versions)
        const vary = varyNames(captured.final.headers)
        let varyRecord: VaryRecord | undefined
        if (vary.length > 0) {
          varyRecord =
            record !== undefined && sameNames(record.vary, vary)
              ? record
              : { vary, id: randomBytes(6).toString('base64url') }
        }
        ready = { entry, record: varyRecord }
        const done = { entry, record: varyRecord, headers: req.headers }
        this.ready.set(flight, done)
        settle(done)
      },
      settled: (finished) => {
        settle(undefined)
        if (!finished || ready === undefined) {
          release()
          if (!finished) report?.(new CacheError(`the refreshed response for ${key} did not finish`))
          return
        }
        // Followers keep replaying the in-memory entry until the backend has it too.
        void this.store(key, ready.entry, ready.record, req).finally(release)
        report?.()
      },
    })
    return run()
  }

  /** Waits for the request already running for the same key, then replays its response. */
  private async follow(
    req: Request,
    res: ServerResponse,
    run: () => unknown,
    key: string,
    pending: Promise<Flight | undefined>,
  ): Promise<unknown> {
    const done = this.ready.get(pending)
    const flight = done ?? (await pending)
    if (flight === undefined) {
      // The leader's response was not storable (an error, Set-Cookie, too large): no collapsing.
      this.setStatus(res, 'fwd=uri-miss', 'MISS')
      return run()
    }
    const record = flight.record
    if (record === undefined || record.vary.every((name) => req.headers[name] === flight.headers[name])) {
      this.observer.hit(key)
      // A response that already ended is a hit from memory; one waited for is collapsed.
      this.replay(req, res, flight.entry, this.settings.now(), done === undefined ? 'collapsed' : 'hit')
      return undefined
    }
    // Same URL, another variant (e.g. another Accept-Encoding): its own flight.
    const flightKey = variantKey(key, record.id, req.headers, record.vary)
    const other = this.inflight.get(flightKey)
    if (other !== undefined) return this.follow(req, res, run, key, other)
    return this.lead(req, res, run, key, flightKey, flight.entry.versions, record, 'vary-miss')
  }

  /** Why a captured response must not be stored (nor replayed to followers), or `undefined`. */
  private unstorable(req: Request, captured: CapturedResponse): string | undefined {
    const s = this.settings
    if (captured.incomplete !== undefined) return captured.incomplete
    if (captured.body === undefined) return 'too-large'
    // Middleware behind the cache turned the request into another method (a method override).
    if (req.method !== 'GET') return 'method'
    const position = this.positions.get(req)
    if (position !== undefined && routeMiddlewareAfter(req as ExpressRequest, position))
      return 'route-middleware'
    if (!s.storable(captured.final.status) || !s.storable(captured.status)) return 'status'
    return unstorableReason(captured.final.headers)
  }

  private toEntry(captured: CapturedResponse, versions: number[]): StoredResponse {
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
      staleAt: now + s.ttlMs,
    }
    if (s.frontSkipsAllMiddleware) entry.front = true
    return entry
  }

  private async store(
    key: string,
    entry: StoredResponse,
    record: VaryRecord | undefined,
    req: Request,
  ): Promise<void> {
    const s = this.settings
    const ttl = (s.ttlMs + (s.swrMs ?? 0)) / 1000
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
    delete copy.headers['if-none-match']
    delete copy.headers['if-modified-since']
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
    ;(copy as any)[REVALIDATE] = finish
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

  private lookupFailed(res: ServerResponse, run: () => unknown, error: unknown, key: string): unknown {
    // A backend that is down makes the cache a pass-through: counted, never the request's failure.
    this.observer.error('get', error, key)
    this.setStatus(res, 'fwd=uri-miss; detail=error', 'MISS')
    return run()
  }

  private bypass(res: ServerResponse, run: () => unknown, fwd: string, detail: string): unknown {
    this.setStatus(res, fwd === 'method' ? 'fwd=method' : `fwd=${fwd}; detail=${detail}`, 'BYPASS')
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
 * properties Express reads (`encrypted` for `req.protocol`, `remoteAddress` for `trust proxy`).
 */
class DiscardingSocket extends Duplex {
  readonly remoteAddress: string | undefined
  readonly remotePort: number | undefined
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

/**
 * Whether the route that answered ran middleware after the cache: a guard there would be skipped
 * by every hit. As app-level middleware the cache precedes every layer of the route, so a route
 * with more than its handler counts; on a route, any layer between the cache and the last one.
 */
function routeMiddlewareAfter(req: ExpressRequest, position: Position): boolean {
  const all = req.route?.stack
  if (!Array.isArray(all)) return false
  // The layers that run for a GET (`app.all` adds one per method).
  const stack = all.filter((layer) => layer.method === undefined || layer.method === 'get')
  if (position.route === undefined) return stack.length > 1
  if (req.route !== position.route) return true
  const index = stack.findIndex((layer) => layer.handle === position.self)
  return index !== -1 && stack.length - index > 2
}

function isRevalidation(req: IncomingMessage): boolean {
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

function versionsOf(values: readonly unknown[]): number[] {
  const out = new Array<number>(values.length - 1)
  for (let i = 1; i < values.length; i++) {
    const v = values[i]
    out[i - 1] = typeof v === 'number' ? v : 0
  }
  return out
}

function sameVersions(stored: readonly number[] | undefined, current: readonly number[]): boolean {
  if (stored === undefined || stored.length !== current.length) return false
  for (let i = 0; i < current.length; i++) if (stored[i] !== current[i]) return false
  return true
}

function sameNames(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((name, i) => name === b[i])
}
