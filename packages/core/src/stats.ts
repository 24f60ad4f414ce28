import { EventEmitter } from 'node:events'
import { CacheClosedError } from './errors.js'
import { type LoggerOption, logError } from './logger.js'

/**
 * Where a backend names the store it is (its own object), so that the store is known through a
 * wrapper: an `Object.create` of it or a Proxy reads it from the store, `defineBackend` passes it
 * on. A chain of levels uses it to keep one store out of two chains' faster levels.
 */
export const STORE: unique symbol = Symbol.for('@cache/store') as never

/** The store a backend is or wraps (see {@link STORE}); the backend itself when it does not say. */
export function storeOf(backend: object): object {
  const store = (backend as { [STORE]?: unknown })[STORE]
  return typeof store === 'object' && store !== null ? store : backend
}

/** Tokens by store and namespace (see {@link storeToken}); shared by every copy of this package. */
const TOKENS = Symbol.for('@cache/core:store-tokens@2')
const tokens = ((globalThis as Record<symbol, unknown>)[TOKENS] ??= new WeakMap()) as WeakMap<
  object,
  Map<string, object>
>

/**
 * One object per store and namespace, for {@link STORE}: the same for every backend over one
 * store (a `Map`, a Keyv store) and one namespace, so that two backends built over it are known
 * as one store.
 */
export function storeToken(store: object, namespace = ''): object {
  let byNamespace = tokens.get(store)
  if (byNamespace === undefined) tokens.set(store, (byNamespace = new Map()))
  let token = byNamespace.get(namespace)
  if (token === undefined) byNamespace.set(namespace, (token = Object.freeze({})))
  return token
}

/** Counters kept by every @cache backend. Latency is measured for backends that leave the process. */
export interface CacheStats {
  hits: number
  misses: number
  sets: number
  deletes: number
  errors: number
  timeouts: number
  /** Operations whose latency was measured, and their total and worst time in ms. */
  operations: number
  totalLatencyMs: number
  maxLatencyMs: number
}

export type CacheEventName = 'hit' | 'miss' | 'set' | 'delete' | 'error'

/** What a listener receives. `error` is set for `error` events only. */
export interface CacheEvent {
  backend: string
  key?: string
  operation?: string
  error?: unknown
}

export function emptyStats(): CacheStats {
  return {
    hits: 0,
    misses: 0,
    sets: 0,
    deletes: 0,
    errors: 0,
    timeouts: 0,
    operations: 0,
    totalLatencyMs: 0,
    maxLatencyMs: 0,
  }
}

/**
 * Stats and events for one backend. Counting is a field increment; an event object is only built
 * when someone listens, so an unobserved cache pays nothing for its events.
 *
 * `error` events never throw when nobody listens (unlike a bare EventEmitter): failures are
 * counted in `stats.errors` either way. Nor when a listener throws: an `error` event is emitted
 * where a call is failing or where no call is (a connection error), so each listener is called
 * on its own, and one that throws is reported through {@link logger} (once per listener) while
 * the failure still reaches its caller and the other listeners.
 */
/** The events built on every hit, miss, set or delete: only a listener of these pays for them. */
const ENTRY_EVENTS: ReadonlySet<string | symbol> = new Set(['hit', 'miss', 'set', 'delete'])

export class CacheObserver extends EventEmitter {
  readonly stats: CacheStats = emptyStats()
  private listening = false
  /** Listeners (of `error` and other events emitted with {@link emitEach}) that threw and were reported. */
  private reported: WeakSet<object> | undefined

  constructor(
    public backend: string,
    /** Where an `error` listener that throws is reported: the backend's `logger` option. */
    public logger: LoggerOption = undefined,
  ) {
    super()
    // Only listeners of the per-entry events count: an `error` listener (a chain listening to its
    // levels) must not switch event building on for every hit, nor must the hooks below.
    this.on('newListener', (name: string | symbol) => {
      if (ENTRY_EVENTS.has(name)) this.listening = true
    })
    this.on('removeListener', () => {
      this.listening = this.eventNames().some((name) => ENTRY_EVENTS.has(name))
    })
  }

  hit(key: string): void {
    if (isOwnKey(key)) return
    this.stats.hits++
    if (this.listening) this.emit('hit', { backend: this.backend, key })
  }

  miss(key: string): void {
    if (isOwnKey(key)) return
    this.stats.misses++
    if (this.listening) this.emit('miss', { backend: this.backend, key })
  }

  set(key: string): void {
    if (isOwnKey(key)) return
    this.stats.sets++
    if (this.listening) this.emit('set', { backend: this.backend, key })
  }

  delete(key: string): void {
    if (isOwnKey(key)) return
    this.stats.deletes++
    if (this.listening) this.emit('delete', { backend: this.backend, key })
  }

  /**
   * Counts a failure and emits it as an `error` event (if anyone listens). A `CacheClosedError`
   * is not a failure of the backend but the caller's (it used it after `close()`): thrown to
   * them, neither counted nor evented, on every backend.
   */
  error(operation: string, error: unknown, key?: string): void {
    const code = (error as { code?: string } | null)?.code
    if (code === 'CACHE_CLOSED') return
    this.stats.errors++
    if (code === 'CACHE_TIMEOUT') this.stats.timeouts++
    if (this.listenerCount('error') > 0)
      this.emitEach('error', { backend: this.backend, operation, key, error })
  }

  latency(ms: number): void {
    const s = this.stats
    s.operations++
    s.totalLatencyMs += ms
    if (ms > s.maxLatencyMs) s.maxLatencyMs = ms
  }

  /** A copy of the counters, with the hit ratio and mean latency worked out. */
  snapshot(): CacheStats & { hitRatio: number; meanLatencyMs: number } {
    const s = this.stats
    const lookups = s.hits + s.misses
    return {
      ...s,
      hitRatio: lookups === 0 ? 0 : s.hits / lookups,
      meanLatencyMs: s.operations === 0 ? 0 : s.totalLatencyMs / s.operations,
    }
  }

  reset(): void {
    Object.assign(this.stats, emptyStats())
  }

  /**
   * Emits `event` to each listener of `name` on its own, for events told where a failure is being
   * handled or where no call is (`error`, a server or level going down or up): a listener that
   * throws neither escapes nor keeps the others from being called, and is reported through
   * {@link logger}, once per listener.
   */
  emitEach<E extends { operation?: string }>(name: string, event: E): void {
    // rawListeners: a `once` listener is called through its wrapper, which removes it.
    for (const listener of this.rawListeners(name) as ((event: unknown) => unknown)[]) {
      try {
        listener.call(this, event)
      } catch (thrown) {
        this.reported ??= new WeakSet()
        if (this.reported.has(listener)) continue
        this.reported.add(listener)
        const message = thrown instanceof Error ? thrown.message : String(thrown)
        const after =
          name === 'error'
            ? `the ${event.operation} failure it was told of still reached its caller`
            : 'ignored: the event was handled all the same'
        try {
          logError(
            this.logger,
            `${this.backend}: ${/^[aeiou]/.test(name) ? 'an' : 'a'} '${name}' listener threw: ${message} (${after}; reported once per listener)`,
          )
        } catch {
          // A logger that throws as well: nowhere is left to report it, and it must not escape.
        }
      }
    }
  }
}

/** Something with stats and events: every @cache backend, and the memoize wrappers. */
export interface Observable {
  readonly stats: CacheStats
  on(event: CacheEventName, listener: (event: CacheEvent) => void): unknown
  off(event: CacheEventName, listener: (event: CacheEvent) => void): unknown
}

/**
 * What @cache's own backends share: a {@link CacheObserver} and the `stats`/`on`/`off` surface.
 * Extending it is optional: any object with the protocol's methods is a backend.
 */
export abstract class ObservedBackend implements Observable {
  protected readonly observer: CacheObserver
  // A property, not a #private field: a backend wrapped with Object.create or a Proxy keeps working.
  private closedState = false

  /** @param logger where an `error` listener that throws is reported (the backend's `logger` option) */
  constructor(name: string, logger?: LoggerOption) {
    this.observer = new CacheObserver(name, logger)
    // Which store this is, read the same through a wrapper (`Object.create`, a Proxy, defineBackend).
    Object.defineProperty(this, STORE, { value: this, configurable: true })
  }

  /**
   * Names where this backend's entries live (see {@link STORE}, {@link storeToken}) when it is not
   * the backend itself: a store other backends may be built over too.
   */
  protected nameStore(store: object): void {
    Object.defineProperty(this, STORE, { value: store })
  }

  /** True once {@link markClosed} ran: from then on every operation rejects with `CacheClosedError`. */
  protected get closed(): boolean {
    return this.closedState
  }

  /** Marks the backend closed; false when it already was (so `close()` is idempotent). */
  protected markClosed(): boolean {
    if (this.closedState) return false
    this.closedState = true
    return true
  }

  /** Throws `CacheClosedError` after close(): the same refusal on every backend. */
  protected assertOpen(): void {
    if (this.closedState) throw new CacheClosedError(this.observer.backend)
  }

  get stats(): CacheStats {
    return this.observer.stats
  }

  on(event: CacheEventName, listener: (event: CacheEvent) => void): this {
    this.observer.on(event, listener)
    return this
  }

  off(event: CacheEventName, listener: (event: CacheEvent) => void): this {
    this.observer.off(event, listener)
    return this
  }
}

/** Counters of a memoized function (and of `getOrSet`): a backend's, plus what the engine does. */
export interface MemoStats extends CacheStats {
  /** Calls answered with a result past its `ttl`, within `grace`: the function failed, timed out, or is backing off. */
  graced: number
  /** Background refreshes started (stale-while-revalidate, refresh ahead). */
  refreshes: number
  /** Calls that waited longer than `timeout` or `hardTimeout` for the function. */
  functionTimeouts: number
}

/** Events of a memoized function: a backend's, plus `grace` (`operation`: `error`, `timeout` or `backoff`). */
export type MemoEventName = CacheEventName | 'grace'

export type GraceReason = 'error' | 'timeout' | 'backoff'

/** Stats and events of memoized functions and `getOrSet`. */
export class MemoObserver extends CacheObserver {
  declare readonly stats: MemoStats

  constructor(name: string) {
    super(name)
    Object.assign(this.stats, { graced: 0, refreshes: 0, functionTimeouts: 0 })
  }

  graced(key: string, reason: GraceReason, error?: unknown): void {
    this.stats.graced++
    if (this.listenerCount('grace') > 0)
      this.emit('grace', { backend: this.backend, key, operation: reason, error })
  }

  refreshing(): void {
    this.stats.refreshes++
  }

  timedOut(): void {
    this.stats.functionTimeouts++
  }

  override reset(): void {
    Object.assign(this.stats, emptyStats(), { graced: 0, refreshes: 0, functionTimeouts: 0 })
  }
}

/**
 * Keys @cache reads and writes for itself (generations, locks: `__…`, see internal-keys.ts) are
 * not the caller's: a memoize hit reads its generations too, and counting those reads would show
 * hits and misses nobody asked for. Failures on them are still counted ({@link CacheObserver.error}).
 */
function isOwnKey(key: string | undefined): boolean {
  return typeof key === 'string' && key.charCodeAt(0) === 95 && key.charCodeAt(1) === 95
}
