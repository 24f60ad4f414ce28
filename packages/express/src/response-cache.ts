import { randomBytes } from 'node:crypto'
import { IncomingMessage, ServerResponse } from 'node:http'
import { Socket } from 'node:net'
import { type CacheBackend, CacheObserver, getBackend, tagVersionKey } from '@cache/core'
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

/** What concurrent requests for one key wait for: the leader's response and the headers it varied on. */
interface Flight {
  entry: StoredResponse
  /** Set when the response varies on request headers. */
  record: VaryRecord | undefined
  headers: IncomingMessage['headers']
}

/** Marks the synthetic request of a stale-while-revalidate refresh. */
const REVALIDATE = Symbol('@cache/express revalidate')

/**
 * The engine behind `cacheResponse`: looks a request up, replays a hit with one `writeHead` and
 * one `end`, or runs the handler once per key (single-flight) and stores what it sent.
 */
export class ResponseCache {
  readonly observer = new CacheObserver('http')
  private readonly inflight = new Map<string, Promise<Flight | undefined>>()
  /** Flight keys with a stale-while-revalidate refresh under way. */
  private readonly refreshing = new Set<string>()

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

  /** Serves `req` from the cache, or calls `run` (the handler, or `next`) and stores its response. */
  handle(req: Request, res: ServerResponse, run: () => unknown): unknown {
    const method = req.method
    if (method !== 'GET' && method !== 'HEAD') return this.bypass(res, run, 'method', 'method')
    const s = this.settings
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
    if (pending !== undefined && method === 'GET' && !(req as any)[REVALIDATE]) {
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
   * The fast path of {@link cacheFront}: replays a fresh hit from an in-process backend before the
   * app runs, and returns `false` for everything else (the app then answers as usual, with its
   * own `cacheResponse` middleware deciding what to store). Requests whose key Express could
   * resolve differently (`X-Forwarded-Host` under `trust proxy`) are never answered here.
   */
  serveFresh(req: Request, res: ServerResponse): boolean {
    const method = req.method
    if (method !== 'GET' && method !== 'HEAD') return false
    const s = this.settings
    const headers = req.headers
    if (s.key !== undefined || headers['x-forwarded-host'] !== undefined) return false
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
      if (!isStoredResponse(entry)) return false
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
    const revalidating = (req as any)[REVALIDATE] !== undefined
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

  /** Runs the handler, captures what it sends and stores it; concurrent requests wait for it. */
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
    let settle!: (flight: Flight | undefined) => void
    const flight = new Promise<Flight | undefined>((resolve) => {
      settle = resolve
    })
    this.inflight.set(flightKey, flight)
    const finish = (stored: Promise<unknown> | undefined) => {
      ;(req as any)[REVALIDATE]?.()
      if (stored === undefined) {
        if (this.inflight.get(flightKey) === flight) this.inflight.delete(flightKey)
        return
      }
      // Keep followers on the in-memory result until the backend has it too.
      void stored.finally(() => this.inflight.get(flightKey) === flight && this.inflight.delete(flightKey))
    }
    this.setStatus(res, `fwd=${missKind}`, 'MISS')
    captureResponse(
      res,
      s.maxBodySize,
      (captured) => {
        const entry = this.toEntry(captured, versions)
        if (entry === undefined) {
          settle(undefined)
          return finish(undefined)
        }
        if (!res.headersSent) {
          if (entry.etag !== '' && res.getHeader('etag') === undefined) res.setHeader('etag', entry.etag)
          this.setStatus(res, `fwd=${missKind}; stored`, 'MISS')
        }
        const vary = varyNames(captured.headers)
        let varyRecord: VaryRecord | undefined
        if (vary.length > 0) {
          varyRecord =
            record !== undefined && sameNames(record.vary, vary)
              ? record
              : { vary, id: randomBytes(6).toString('base64url') }
        }
        settle({ entry, record: varyRecord, headers: req.headers })
        finish(this.store(key, entry, varyRecord, req))
      },
      () => {
        settle(undefined)
        finish(undefined)
      },
    )
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
    const flight = await pending
    if (flight === undefined) {
      // The leader's response was not storable (an error, Set-Cookie, too large): no collapsing.
      this.setStatus(res, 'fwd=uri-miss', 'MISS')
      return run()
    }
    const record = flight.record
    if (record === undefined || record.vary.every((name) => req.headers[name] === flight.headers[name])) {
      this.observer.hit(key)
      this.replay(req, res, flight.entry, this.settings.now(), 'collapsed')
      return undefined
    }
    // Same URL, another variant (e.g. another Accept-Encoding): its own flight.
    const flightKey = variantKey(key, record.id, req.headers, record.vary)
    const other = this.inflight.get(flightKey)
    if (other !== undefined) return this.follow(req, res, run, key, other)
    return this.lead(req, res, run, key, flightKey, flight.entry.versions, record, 'vary-miss')
  }

  private toEntry(captured: CapturedResponse, versions: number[]): StoredResponse | undefined {
    const s = this.settings
    if (captured.body === undefined || !s.storable(captured.status)) return undefined
    if (unstorableReason(captured.headers) !== undefined) return undefined
    const now = s.now()
    const given = captured.headers.etag
    return {
      status: captured.status,
      headers: storedHeaders(captured.headers),
      body: captured.body,
      storedAt: now,
      etag: given !== undefined ? String(given) : s.etag ? bodyEtag(captured.body) : '',
      versions,
      staleAt: now + s.ttlMs,
    }
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

  /** Refreshes a stale entry in the background by running the app again for a copy of the request. */
  private revalidate(req: Request, flightKey: string): void {
    const app = req.app as { handle?: (req: unknown, res: unknown, done: (error?: unknown) => void) => void }
    if (this.inflight.has(flightKey) || this.refreshing.has(flightKey) || typeof app?.handle !== 'function')
      return
    this.refreshing.add(flightKey)
    const done = () => this.refreshing.delete(flightKey)
    const copy = new IncomingMessage(new Socket()) as Request
    copy.method = 'GET'
    copy.url = req.originalUrl ?? req.url ?? '/'
    copy.headers = { ...req.headers }
    delete copy.headers['if-none-match']
    delete copy.headers['if-modified-since']
    copy.httpVersionMajor = req.httpVersionMajor
    copy.httpVersionMinor = req.httpVersionMinor
    copy.httpVersion = req.httpVersion
    copy.complete = true
    copy.push(null)
    ;(copy as any)[REVALIDATE] = done
    const response = new ServerResponse(copy)
    try {
      // `done` runs when the refreshed response ends; the callback only when nothing answered.
      app.handle(copy, response, (error) => {
        done()
        if (error) this.observer.error('revalidate', error, flightKey)
      })
    } catch (error) {
      done()
      this.observer.error('revalidate', error, flightKey)
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
