import type { IncomingHttpHeaders, IncomingMessage, Server, ServerResponse } from 'node:http'
import type { CacheBackend } from '@cache/core'
import { isGeneration } from '@cache/core/backend'
import {
  answerFromResult,
  fastifyServerShared,
  type HttpCache,
  frontSeesAsSent,
  type HttpCacheSettings,
  isStoredResponse,
  listeningAt,
  nodeRequestView,
  noteFrontOf,
  requestKey,
  responseCachingEnabled,
  siteKey,
  storedValue,
  urlVersionKey,
} from '@cache/http'

/**
 * The front door of one Nest application: a `request` listener on its Node server that answers
 * fresh hits of handlers marked `frontSkipsAllMiddleware` from an in-process backend before Nest
 * and its platform see the request, and hands every other request to the platform untouched.
 *
 * It does not route. It answers a request only from an entry that such a handler stored under
 * exactly the key the front computes from the request as it arrived: the interceptor stores at
 * the front's site only when the request it caches passed this front with that key (so a URL or a
 * header rewritten on the way, a request the front did not see, or a handler without the flag never
 * lands there). The site holds a fingerprint of the application's handlers and routing (one
 * restarted in the process with other handlers never answers from the entries of the one before),
 * the address the server listens at (two applications of one process never share) and the
 * request headers Nest's versioning routes on (`header` and `media-type` versioning: a v2 request
 * never gets v1's entry).
 */
export class FrontDoor {
  /** One entry per distinct way of keying and replaying among the flagged handlers. */
  private readonly groups: { cache: HttpCache; signature: string }[] = []

  /**
   * @param routingHeaders request headers (lower case) that Nest routes on besides the URL: the
   *   versioning header, or `accept` for media-type versioning.
   * @param application a fingerprint of what routes the application's requests (its handlers,
   *   their decorators, the global prefix and versioning): entries made by another application
   *   that listened at the same address are out of this front's reach.
   */
  constructor(
    private readonly routingHeaders: readonly string[],
    private readonly application: string,
  ) {}

  /** Makes the entries of handlers keyed and replayed like `cache` answerable here. */
  add(cache: HttpCache, backend: object): void {
    const signature = frontSignature(cache.settings, backend)
    if (this.groups.some((group) => group.signature === signature)) return
    this.groups.push({ cache, signature })
  }

  get size(): number {
    return this.groups.length
  }

  /** The index of the group that keys and replays as `settings` with `backend` do, or -1. */
  groupOf(settings: HttpCacheSettings, backend: object | undefined): number {
    if (backend === undefined) return -1
    const signature = frontSignature(settings, backend)
    return this.groups.findIndex((group) => group.signature === signature)
  }

  /**
   * Where the entries of `group` answerable by this front live: the application's fingerprint,
   * the server's address, the group (handlers that allow `Authorization` never reach the entries
   * of those that do not), and the routing headers.
   */
  siteOf(req: IncomingMessage, group: number): string {
    let site = `nest front ${group} app ${this.application} at ${listeningAt(req.socket)}`
    const headers = req.headers
    for (const name of this.routingHeaders) site += ` ${name}=${JSON.stringify(headers[name] ?? null)}`
    return site
  }

  /**
   * Answers `req` from a fresh entry stored for the front and returns `true`, or returns `false`
   * (the application answers), having noted the keys it computed for the interceptor to check.
   */
  serve(req: IncomingMessage, res: ServerResponse): boolean {
    const method = req.method
    // HEAD goes to the application: an explicit `@Head()` route may answer it there, not the GET handler.
    if (method !== 'GET' && method !== 'HEAD') return false
    const headers = req.headers
    // Their meaning depends on the platform's `trustProxy`: only the application can resolve them.
    if (
      headers['x-forwarded-host'] !== undefined ||
      headers['x-forwarded-proto'] !== undefined ||
      hasBody(headers)
    )
      return false
    // A target or `Host` a listener before this one rewrote (one put first, the server's own
    // `checkContinue` listener re-emitting the request): the request is another than the one sent.
    if (!frontSeesAsSent(req)) return false
    const groups = this.groups
    const view = nodeRequestView(req)
    const keys: (string | undefined)[] = new Array(groups.length)
    let keyed = false
    for (let i = 0; i < groups.length; i++) {
      const cache = groups[i]!.cache
      const s = cache.settings
      if (!s.allowAuthorized && headers.authorization !== undefined) continue
      if (!s.allowCookies && headers.cookie !== undefined) continue
      if (!responseCachingEnabled(s.enabledFromEnv)) continue
      const sync = cache.backend().sync
      if (sync === undefined) continue
      const resolved = requestKey(view, s.keyPrefix, s.vary)
      if (resolved === undefined) continue
      view.site = this.siteOf(req, i)
      const key = siteKey(resolved.key, view.site)
      keys[i] = key
      keyed = true
      if (method !== 'GET') continue
      let entry: unknown
      let current: boolean
      try {
        entry = storedValue(sync, key)
        if (!isStoredResponse(entry) || entry.front !== true) continue
        current = currentEntry(sync, entry, s.prefixVersionKeys, resolved.scopes.map(urlVersionKey))
      } catch (error) {
        cache.observer.error('get', error, key)
        continue
      }
      const now = s.now()
      if (!current || now >= entry.staleAt) continue
      cache.observer.hit(key)
      answerFromResult(res, cache.replayEntry(view, key, entry, now))
      return true
    }
    if (keyed) passed.set(req, { door: this, method, url: req.url ?? '', keys })
    return false
  }

  /** Puts this front before every `request` listener of `server` (once per server). */
  install(server: Server): void {
    if (installed.has(server)) return
    installed.add(server)
    const listeners = server.listeners('request') as ((req: IncomingMessage, res: ServerResponse) => void)[]
    server.removeAllListeners('request')
    const door = this
    const front = function front(this: Server, req: IncomingMessage, res: ServerResponse) {
      // Fastify apps sharing the server: whose app a request is for cannot be told here.
      if (!fastifyServerShared(this) && door.serve(req, res)) return
      for (const listener of listeners) listener.call(this, req, res)
    }
    // The apps it hands requests on to are still what the server calls.
    noteFrontOf(front, listeners)
    server.on('request', front)
  }
}

/** What the front saw of a request it handed on: its door, the URL as it arrived, its key per group. */
export interface FrontPass {
  door: FrontDoor
  method: string
  url: string
  keys: (string | undefined)[]
}

const passed = new WeakMap<IncomingMessage, FrontPass>()
const installed = new WeakSet<Server>()

/** What a front computed for `req`, if it passed one. */
export function frontPassOf(req: IncomingMessage): FrontPass | undefined {
  return passed.get(req)
}

/**
 * Generations of an entry: the prefixes and URL scope of the request's key, then the entry's tags,
 * each still the current one. A missing generation matches nothing (the application creates it).
 */
function currentEntry(
  sync: NonNullable<CacheBackend['sync']>,
  entry: { versions: number[]; versionKeys?: string[] },
  prefixKeys: readonly string[],
  urlKeys: readonly string[],
): boolean {
  const keys = entry.versionKeys
  const versions = entry.versions
  if (!Array.isArray(keys) || !Array.isArray(versions) || keys.length !== versions.length) return false
  const n = prefixKeys.length
  // The entry's generations start with this request's prefix and URL scopes (then its tags).
  if (keys.length < n + urlKeys.length) return false
  for (let i = 0; i < n; i++) if (keys[i] !== prefixKeys[i]) return false
  for (let i = 0; i < urlKeys.length; i++) if (keys[n + i] !== urlKeys[i]) return false
  for (let i = 0; i < keys.length; i++) {
    const generation = storedValue(sync, keys[i]!)
    if (!isGeneration(generation) || generation !== versions[i]) return false
  }
  return true
}

function hasBody(headers: IncomingHttpHeaders): boolean {
  if (headers['transfer-encoding'] !== undefined) return true
  const length = headers['content-length']
  return length !== undefined && length !== '0'
}

/** Ids of the objects in a signature (a backend, a clock), by identity. */
const ids = new WeakMap<object, number>()
let nextId = 0
function idOf(value: object): number {
  let id = ids.get(value)
  if (id === undefined) {
    id = ++nextId
    ids.set(value, id)
  }
  return id
}

/** What decides a front key and a replay: two handlers alike here are answered alike. */
function frontSignature(s: HttpCacheSettings, backend: object): string {
  return JSON.stringify([
    s.keyPrefix,
    s.vary,
    s.allowAuthorized,
    s.allowCookies,
    s.statusHeader,
    s.cacheName,
    s.cacheControl ?? null,
    s.cacheControl === undefined ? null : (s.swrMs ?? null),
    s.hiddenSelection,
    s.enabledFromEnv,
    idOf(s.now),
    idOf(backend),
  ])
}
