import { randomUUID } from 'node:crypto'
import { type CacheBackend, compareAndDelete, type SyncAccess } from './backend.js'
import { type Duration, parseDuration } from './durations.js'
import { CacheFunctionTimeoutError } from './errors.js'
import {
  type Flight,
  invalidatedSince,
  isStale,
  type Round,
  release,
  type Slot,
  slotOf,
  startFlight,
  tick,
} from './flights.js'
import {
  currentGenerations,
  currentGenerationsSync,
  isGeneration,
  newGeneration,
  sameGenerations,
} from './generations.js'
import { lockKey } from './internal-keys.js'
import type { Lifetime, Policy } from './load-options.js'
import type { GraceReason, MemoObserver } from './stats.js'

/*
 * How one key is read, computed and stored: the engine behind `cached()`, the `@cache` decorator
 * and `getOrSet()`. They differ only in how they name keys; reading, single-flight, locks,
 * stale-while-revalidate, grace, timeouts, refresh ahead and invalidation are this one
 * implementation. Its options are in load-options.ts.
 */

type AnyFunction = (...args: any[]) => any

/**
 * The stored envelope: the value, the generations it was computed under, when it stops being
 * fresh (`s`, written when it is kept past its ttl), when a read should refresh it ahead (`r`),
 * and until when a failed function is not called again (`b`). Times are epoch ms.
 */
export interface Envelope {
  v: unknown
  g: number[]
  s?: number
  r?: number
  b?: number
}

/**
 * The keys of one call: its entry, and its generations. An in-process backend (one with `sync`
 * access) needs only the generations that are not invalidated by deleting the entry (`local`).
 * A shared backend needs every one (`shared`): a copy in another process's L1, or a result
 * another process is still computing, must stop matching once an invalidation resolves.
 * `shared` is also what a flight in this process is made stale by, on every backend.
 */
export interface CallKeys {
  entry: string
  local: readonly string[]
  shared: readonly string[]
}

type Read = { entry?: Envelope; generations: number[] }
/** What a round of callers read: the entry and generations, or the backend's failure. */
type Outcome = Read | { error: unknown }
/** What a flight resolves to: the result, or a kept one served because the function failed. */
interface Computed {
  value: unknown
  graced?: GraceReason
  error?: unknown
}

/** Where a stored entry stands, for a read now. */
const FRESH = 0
/** Fresh, in its refresh-ahead window: served, refreshed in the background. */
const DUE = 1
/** Past its ttl, within `staleWhileRevalidate`: served, refreshed in the background. */
const STALE = 2
/** As STALE, but a refresh failed lately: served, not refreshed before the back-off ends. */
const STALE_BACKING_OFF = 3
/** Within `grace`, the function failed lately: served without calling it. */
const BACKING_OFF = 4
/** Within `grace`: the function runs; the entry is served if it fails or is slow. */
const GRACE = 5
const EXPIRED = 6
type EntryState = 0 | 1 | 2 | 3 | 4 | 5 | 6

/** Late failures already reported, per flight (or pass-through) promise. */
const reportedLate = new WeakSet<object>()

export class Loader {
  /** What {@link localGenerations} read last, and the backend's `internalVersion` then. */
  private known:
    | { sync: SyncAccess; local: readonly string[]; version: number; generations: number[] }
    | undefined

  constructor(
    readonly policy: Policy,
    readonly observer: MemoObserver,
    private readonly label: string,
    /** Lifetimes of generations created for `CallKeys.shared`, by position (seconds). */
    private readonly generationTtls: readonly (number | undefined)[],
  ) {}

  /**
   * The sync path: an in-process backend and a function that has returned plain values.
   *
   * The call's arguments are `listed`, or, when it had one, `only` (`listed` undefined): a plain
   * hit, the commonest call, then allocates no argument list (see `memoized` in memoize.ts).
   */
  callSync(
    backend: CacheBackend,
    keys: CallKeys,
    fn: AnyFunction,
    thisArg: unknown,
    listed: unknown[] | undefined,
    only: unknown,
  ): unknown {
    const sync = backend.sync!
    let stored: Envelope | undefined
    let generations: number[]
    try {
      stored = storedEnvelope(sync, keys.entry)
      generations = this.localGenerations(sync, keys.local)
    } catch (error) {
      this.failed('get', error, keys.entry)
      return fn.apply(thisArg, listed ?? [only])
    }
    if (stored !== undefined && isPlainFresh(stored) && sameGenerations(stored.g, generations))
      return this.plainHit(keys, stored)
    const args = listed ?? [only]
    let read: Read
    if (stored !== undefined && sameGenerations(stored.g, generations)) {
      read = { entry: stored, generations }
      const state = this.stateOf(stored)
      if (state < GRACE) return this.onHit(backend, keys, read, state, fn, thisArg, args)
    } else read = { generations }
    this.observer.miss(keys.entry)
    // An invalidation the function makes while it computes (of what it just read) must keep its result out.
    const started = tick()
    const value = fn.apply(thisArg, args)
    if (isPromiseLike(value)) {
      const slot = slotOf(backend, keys.entry)
      return startFlight(
        backend,
        keys.entry,
        slot,
        read.generations,
        keys.shared,
        async (flight) => {
          const resolved = await value
          await this.store(backend, keys, resolved, read.generations, args, flight)
          return { value: resolved } satisfies Computed
        },
        started,
      ).promise.then((result) => (result as Computed).value)
    }
    if (!invalidatedSince(keys.shared, started)) this.storeSync(backend, keys, value, read, args)
    return value
  }

  /**
   * The async path. On an in-process backend the read is synchronous, made when the caller
   * arrives. On any other, callers of one key that arrive before its read is sent share that
   * read (sent once the current tick's callers are in), and then one flight: a hundred
   * concurrent misses run `fn` once and get one result or one error. Arguments as for
   * {@link callSync}.
   */
  callAsync(
    backend: CacheBackend,
    keys: CallKeys,
    fn: AnyFunction,
    thisArg: unknown,
    listed: unknown[] | undefined,
    only: unknown,
  ): Promise<unknown> {
    const sync = backend.sync
    if (sync !== undefined) {
      let stored: Envelope | undefined
      let generations: number[]
      try {
        stored = storedEnvelope(sync, keys.entry)
        generations = this.localGenerations(sync, keys.local)
      } catch (error) {
        try {
          this.failed('get', error, keys.entry)
        } catch (strict) {
          return Promise.reject(strict)
        }
        return this.passThrough(keys, fn, thisArg, listed ?? [only])
      }
      if (stored !== undefined && isPlainFresh(stored) && sameGenerations(stored.g, generations))
        return Promise.resolve(this.plainHit(keys, stored))
      const args = listed ?? [only]
      let read: Read
      if (stored !== undefined && sameGenerations(stored.g, generations)) {
        read = { entry: stored, generations }
        const state = this.stateOf(stored)
        if (state < GRACE) return Promise.resolve(this.onHit(backend, keys, read, state, fn, thisArg, args))
      } else read = { generations }
      return this.afterRead(backend, keys, read, undefined, undefined, fn, thisArg, args) as Promise<unknown>
    }
    const slot = slotOf(backend, keys.entry)
    let round = slot.gathering as Round<Outcome> | undefined
    if (round === undefined) slot.gathering = round = this.gather(backend, keys, slot)
    round.waiters++
    return this.settle(round, slot, backend, keys, fn, thisArg, listed ?? [only])
  }

  private gather(backend: CacheBackend, keys: CallKeys, slot: Slot): Round<Outcome> {
    const round: Round<Outcome> = { promise: undefined as unknown as Promise<Outcome>, sent: 0, waiters: 0 }
    round.promise = (async (): Promise<Outcome> => {
      // Every caller of this tick joins before the read goes out.
      await undefined
      slot.gathering = undefined
      slot.rounds++
      round.sent = tick()
      try {
        return await this.readAsync(backend, keys)
      } catch (error) {
        return { error }
      }
    })()
    return round
  }

  private async settle(
    round: Round<Outcome>,
    slot: Slot,
    backend: CacheBackend,
    keys: CallKeys,
    fn: AnyFunction,
    thisArg: unknown,
    args: unknown[],
  ): Promise<unknown> {
    const outcome = await round.promise
    try {
      if ('error' in outcome) {
        if (this.policy.strict) throw outcome.error
        if (!round.reported) {
          round.reported = true
          this.observer.error('get', outcome.error, keys.entry)
        }
        // The backend is down: one pass-through run for the callers of this round.
        round.passThrough ??= this.passThrough(keys, fn, thisArg, args)
        return round.passThrough
      }
      return this.afterRead(backend, keys, outcome, slot, round.sent, fn, thisArg, args)
    } finally {
      if (--round.waiters === 0) {
        slot.rounds--
        release(backend, keys.entry, slot)
      }
    }
  }

  /** A hit is answered (sync); a miss joins or starts the flight of its key. */
  private afterRead(
    backend: CacheBackend,
    keys: CallKeys,
    read: Read,
    slot: Slot | undefined,
    sent: number | undefined,
    fn: AnyFunction,
    thisArg: unknown,
    args: unknown[],
  ): unknown {
    const entry = read.entry
    let kept: Envelope | undefined
    if (entry !== undefined) {
      const state = this.stateOf(entry)
      if (state < GRACE) return this.onHit(backend, keys, read, state, fn, thisArg, args)
      if (state === GRACE) kept = entry
    }
    this.observer.miss(keys.entry)
    const flight = this.joinOrStart(
      backend,
      keys,
      slot ?? slotOf(backend, keys.entry),
      read.generations,
      sent ?? tick(),
      fn,
      thisArg,
      args,
      kept,
    )
    return this.awaitFlight(flight, backend, keys, kept)
  }

  /** The function without the cache (the backend could not be read), bounded by `hardTimeout`. */
  private passThrough(keys: CallKeys, fn: AnyFunction, thisArg: unknown, args: unknown[]): Promise<unknown> {
    const run = Promise.resolve().then(() => fn.apply(thisArg, args))
    if (this.policy.hardTimeoutMs === undefined) return run
    return this.withTimeouts(
      run.then((value): Computed => ({ value })),
      undefined,
      undefined,
      keys,
      undefined,
    )
  }

  private stateOf(entry: Envelope): EntryState {
    const s = entry.s
    const r = entry.r
    if (s === undefined && r === undefined) return FRESH
    const now = Date.now()
    const backingOff = entry.b !== undefined && now < entry.b
    const policy = this.policy
    if (s === undefined || now < s)
      return r !== undefined && policy.ahead !== undefined && now >= r && !backingOff ? DUE : FRESH
    const late = now - s
    if (policy.swrMs !== undefined && late < policy.swrMs) return backingOff ? STALE_BACKING_OFF : STALE
    if (policy.graceMs !== undefined && late < policy.graceMs) return backingOff ? BACKING_OFF : GRACE
    return EXPIRED
  }

  /**
   * A hit on an entry without stale or refresh-ahead times (fresh whatever the time): what
   * {@link onHit} does for it, without building a {@link Read} first.
   */
  private plainHit(keys: CallKeys, entry: Envelope): unknown {
    this.observer.hit(keys.entry)
    return entry.v
  }

  private onHit(
    backend: CacheBackend,
    keys: CallKeys,
    read: Read,
    state: EntryState,
    fn: AnyFunction,
    thisArg: unknown,
    args: unknown[],
  ): unknown {
    this.observer.hit(keys.entry)
    if (state === DUE || state === STALE) this.refreshInBackground(backend, keys, read, fn, thisArg, args)
    else if (state === BACKING_OFF) this.observer.graced(keys.entry, 'backoff')
    return read.entry!.v
  }

  /** Starts one refresh of `read.entry`, unless one is running; its failure is counted and evented. */
  private refreshInBackground(
    backend: CacheBackend,
    keys: CallKeys,
    read: Read,
    fn: AnyFunction,
    thisArg: unknown,
    args: unknown[],
  ): void {
    const slot = slotOf(backend, keys.entry)
    if (slot.flight !== undefined && slot.flight.settled === undefined) {
      release(backend, keys.entry, slot)
      return
    }
    this.observer.refreshing()
    const flight = startFlight(backend, keys.entry, slot, read.generations, keys.shared, (started) =>
      this.load(backend, keys, read.generations, fn, thisArg, args, started, read.entry),
    )
    ;(flight.promise as Promise<Computed>).then(
      (result) => {
        if (result.graced !== undefined) this.observer.error('refresh', result.error, keys.entry)
      },
      (error) => this.observer.error('refresh', error, keys.entry),
    )
  }

  /**
   * Joins the flight of `slot` if it computes under the same generations, nothing invalidated it
   * here since it started, and it was still running when the caller's read was sent (`sent`);
   * otherwise starts one.
   */
  private joinOrStart(
    backend: CacheBackend,
    keys: CallKeys,
    slot: Slot,
    generations: number[],
    sent: number,
    fn: AnyFunction,
    thisArg: unknown,
    args: unknown[],
    kept: Envelope | undefined,
  ): Flight {
    const current = slot.flight
    if (
      current !== undefined &&
      current.generations !== undefined &&
      (current.settled === undefined || current.settled > sent) &&
      !isStale(current) &&
      sameGenerations(current.generations, generations)
    )
      return current
    return startFlight(backend, keys.entry, slot, generations, keys.shared, (flight) =>
      this.load(backend, keys, generations, fn, thisArg, args, flight, kept),
    )
  }

  /** A caller's wait for a flight: its result, bounded by the timeouts. */
  private awaitFlight(
    flight: Flight,
    backend: CacheBackend,
    keys: CallKeys,
    kept: Envelope | undefined,
  ): Promise<unknown> {
    const promise = flight.promise as Promise<Computed>
    const { timeoutMs, hardTimeoutMs } = this.policy
    if (hardTimeoutMs === undefined && (timeoutMs === undefined || kept === undefined))
      return promise.then((result) => this.deliver(keys.entry, result))
    return this.withTimeouts(promise, flight, backend, keys, kept)
  }

  private deliver(key: string, result: Computed): unknown {
    if (result.graced !== undefined) this.observer.graced(key, result.graced, result.error)
    return result.value
  }

  /**
   * Waits for `promise` for at most `timeout` (when a kept result can be served) and
   * `hardTimeout`. On a timeout the caller gets the kept result if it may still be served, else
   * (hard timeout) a `CacheFunctionTimeoutError`. The computation goes on; if it fails after
   * the caller was answered, the failure is counted and evented once.
   */
  private withTimeouts(
    promise: Promise<Computed>,
    flight: Flight | undefined,
    backend: CacheBackend | undefined,
    keys: CallKeys,
    kept: Envelope | undefined,
  ): Promise<unknown> {
    const { timeoutMs, hardTimeoutMs } = this.policy
    const key = keys.entry
    return new Promise((resolve, reject) => {
      let answered = false
      let soft: ReturnType<typeof setTimeout> | undefined
      let hard: ReturnType<typeof setTimeout> | undefined
      const answer = () => {
        answered = true
        clearTimeout(soft)
        clearTimeout(hard)
      }
      promise.then(
        (result) => {
          if (!answered) {
            answer()
            resolve(this.deliver(key, result))
          } else if (result.graced !== undefined) this.lateFailure(promise, result.error, key)
        },
        (error) => {
          if (!answered) {
            answer()
            reject(error)
          } else this.lateFailure(promise, error, key)
        },
      )
      const expire = async (ms: number, option: 'timeout' | 'hardTimeout') => {
        if (answered) return
        this.observer.timedOut()
        const timedOut = new CacheFunctionTimeoutError(this.label, key, ms, option)
        if (
          kept !== undefined &&
          flight !== undefined &&
          backend !== undefined &&
          (await this.mayServeKept(backend, keys, kept, flight))
        ) {
          if (answered) return
          answer()
          this.observer.graced(key, 'timeout', timedOut)
          resolve(kept.v)
        } else if (option === 'hardTimeout' && !answered) {
          answer()
          reject(timedOut)
        }
      }
      if (timeoutMs !== undefined && kept !== undefined)
        soft = setTimeout(() => void expire(timeoutMs, 'timeout'), timeoutMs)
      if (hardTimeoutMs !== undefined)
        hard = setTimeout(() => void expire(hardTimeoutMs, 'hardTimeout'), hardTimeoutMs)
    })
  }

  /** A computation failed after its callers were answered (timeouts): counted and evented once. */
  private lateFailure(promise: object, error: unknown, key: string): void {
    if (reportedLate.has(promise)) return
    reportedLate.add(promise)
    this.observer.error('function', error, key)
  }

  /**
   * True if `kept` may still be served instead of the function's result: within its grace
   * period, not invalidated here since the flight started, and still written under the current
   * generations, read again now (so an invalidation another process made meanwhile is seen).
   * A backend that cannot tell says no.
   */
  private async mayServeKept(
    backend: CacheBackend,
    keys: CallKeys,
    kept: Envelope,
    flight: Flight,
  ): Promise<boolean> {
    const graceMs = this.policy.graceMs
    if (graceMs === undefined || kept.s === undefined || isStale(flight)) return false
    if (Date.now() - kept.s >= graceMs) return false
    try {
      const current =
        backend.sync !== undefined
          ? currentGenerationsSync(backend.sync, keys.local)
          : await currentGenerations(backend, keys.shared, undefined, this.generationTtls)
      return sameGenerations(kept.g, current) && !isStale(flight)
    } catch (error) {
      this.observer.error('get', error, keys.entry)
      return false
    }
  }

  /**
   * The function failed with `kept` in its grace period: mark it so that no caller, in any
   * process, calls the function again before `graceBackoff` has passed. Written under the
   * generations it was read with, so an invalidation still turns it into a miss; skipped if
   * another result was stored meanwhile.
   */
  private async backOff(
    backend: CacheBackend,
    keys: CallKeys,
    kept: Envelope,
    flight: Flight,
  ): Promise<void> {
    const policy = this.policy
    if (policy.graceMs === undefined || kept.s === undefined || isStale(flight)) return
    try {
      const stored = await backend.get<Envelope>(keys.entry)
      if (!isEnvelope(stored) || stored.s !== kept.s || !sameGenerations(stored.g, kept.g)) return
      const now = Date.now()
      const remaining = kept.s + policy.keptMs - now
      if (remaining <= 0 || isStale(flight)) return
      await backend.set(keys.entry, { ...stored, b: now + policy.backoffMs }, remaining / 1000)
    } catch (error) {
      this.observer.error('set', error, keys.entry)
    }
  }

  private async load(
    backend: CacheBackend,
    keys: CallKeys,
    generations: readonly number[],
    fn: AnyFunction,
    thisArg: unknown,
    args: unknown[],
    flight: Flight,
    kept: Envelope | undefined,
  ): Promise<Computed> {
    const lock = this.policy.lock
    let held: { key: string; token: string } | undefined
    if (lock) {
      const key = lockKey(keys.entry)
      const token = randomUUID()
      let acquired: boolean | 'unknown'
      try {
        acquired = await backend.add(key, token, lock.ttlMs / 1000)
      } catch (error) {
        // No lock to be had: compute without one rather than wait for a backend that is down.
        this.failed('lock', error, keys.entry)
        acquired = 'unknown'
      }
      if (acquired === true) held = { key, token }
      else if (acquired === false) {
        const waited = await this.waitForValue(backend, keys.entry, generations, key, token, lock)
        if (waited === 'acquired') held = { key, token }
        else if (waited !== undefined) return waited
      }
    }
    try {
      let value: unknown
      try {
        value = await fn.apply(thisArg, args)
      } catch (error) {
        if (kept !== undefined && this.policy.graceMs !== undefined) {
          // Before the lock is released: its waiters then find the back-off, not a free lock.
          await this.backOff(backend, keys, kept, flight)
          if (await this.mayServeKept(backend, keys, kept, flight))
            return { value: kept.v, graced: 'error', error }
        }
        throw error
      }
      await this.store(backend, keys, value, generations, args, flight)
      return { value }
    } finally {
      if (held)
        await compareAndDelete(backend, held.key, held.token).catch((error) =>
          this.observer.error('unlock', error, keys.entry),
        )
    }
  }

  /**
   * Waits for the lock holder's result. Takes the lock over as soon as it is free (the holder
   * failed and released it, or it expired): then the caller computes. `undefined` after `wait`.
   */
  private async waitForValue(
    backend: CacheBackend,
    key: string,
    generations: readonly number[],
    lockKeyName: string,
    token: string,
    settings: { ttlMs: number; waitMs: number; pollMs: number },
  ): Promise<Computed | 'acquired' | undefined> {
    const deadline = Date.now() + settings.waitMs
    while (Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, settings.pollMs))
      try {
        const envelope = await backend.get<Envelope>(key)
        if (isEnvelope(envelope) && sameGenerations(envelope.g, generations)) {
          // A kept result in its grace period is what the holder is replacing: not an answer.
          const state = this.stateOf(envelope)
          if (state < BACKING_OFF) return { value: envelope.v }
          if (state === BACKING_OFF) return { value: envelope.v, graced: 'backoff' }
        }
        if (await backend.add(lockKeyName, token, settings.ttlMs / 1000)) return 'acquired'
      } catch (error) {
        this.observer.error('lock', error, key)
      }
    }
    return undefined
  }

  private classify(envelope: unknown, generations: number[]): Read {
    if (isEnvelope(envelope) && sameGenerations(envelope.g, generations))
      return { entry: envelope, generations }
    return { generations }
  }

  /**
   * The current generations of `local` on an in-process backend. Read again only when the
   * backend says one of its own keys may have changed since the last read (`internalVersion`):
   * every invalidation is such a change, so a hit costs one read, the entry's. A generation
   * evicted or expired without a write is still the last one written: entries under it were
   * computed after the last invalidation, and those under older ones still do not match it.
   */
  private localGenerations(sync: SyncAccess, local: readonly string[]): number[] {
    const known = this.known
    if (
      known !== undefined &&
      known.local === local &&
      known.sync === sync &&
      known.version === sync.internalVersion?.()
    )
      return known.generations
    const generations =
      local.length === 1 ? [this.generationSync(sync, local[0]!)] : currentGenerationsSync(sync, local)
    // Read after the generations: creating one is itself a change, and nothing runs in between.
    const version = sync.internalVersion?.()
    if (version !== undefined) this.known = { sync, local, version, generations }
    return generations
  }

  /** The current generation under `key`; a missing one is created (never expiring). */
  private generationSync(sync: SyncAccess, key: string): number {
    const found = sync.get === undefined ? sync.getEntry(key)?.value : sync.get(key)
    if (isGeneration(found)) return found
    const generation = newGeneration()
    sync.set(key, generation, Number.POSITIVE_INFINITY)
    return generation
  }

  private async readAsync(backend: CacheBackend, keys: CallKeys): Promise<Read> {
    const values = await backend.getMany([keys.entry, ...keys.shared])
    const generations = await currentGenerations(backend, keys.shared, values.slice(1), this.generationTtls)
    return this.classify(values[0], generations)
  }

  private shouldStore(result: unknown, args: unknown[]): boolean {
    const { condition, unless } = this.policy
    if (condition && !condition(result, ...args)) return false
    if (unless?.(result, ...args)) return false
    return true
  }

  /** How long a result is fresh and kept; `undefined`: not stored (a `ttl` function said so). */
  private lifetimeOf(result: unknown, args: unknown[]): Lifetime | undefined {
    const policy = this.policy
    if (policy.ttlOf === undefined) return policy.fixed
    const returned = policy.ttlOf(result, ...args) as Duration | undefined
    let freshMs: number
    if (returned === undefined) freshMs = policy.maxTtlMs
    else if (typeof returned === 'number' && returned <= 0) return undefined
    else freshMs = Math.min(parseDuration(returned, 'ttl (as returned by the ttl function)'), policy.maxTtlMs)
    return { freshMs, backendTtl: (freshMs + policy.keptMs) / 1000 }
  }

  private envelopeFor(value: unknown, generations: readonly number[], freshMs: number | undefined): Envelope {
    const policy = this.policy
    const envelope: Envelope = { v: value, g: generations as number[] }
    if (freshMs === undefined || (policy.keptMs === 0 && policy.ahead === undefined)) return envelope
    const now = Date.now()
    if (policy.keptMs > 0) envelope.s = now + freshMs
    const ahead = policy.ahead
    if (ahead !== undefined)
      envelope.r =
        now +
        freshMs -
        ('ratio' in ahead ? freshMs * ahead.ratio : ahead.ms < freshMs ? ahead.ms : freshMs / 2)
    return envelope
  }

  /** A backend failure: rethrown in strict mode, else counted and evented. */
  private failed(operation: string, error: unknown, key: string): void {
    if (this.policy.strict) throw error
    this.observer.error(operation, error, key)
  }

  /**
   * A write the backend refused. A value it cannot serialize is the caller's error, thrown on
   * every backend; a value too large is not cached (thrown only in strict mode); anything else
   * is a backend failure.
   */
  private storeFailed(error: unknown, key: string): void {
    const code = (error as { code?: unknown })?.code
    if (code === 'CACHE_SERIALIZATION') throw error
    this.failed('set', error, key)
  }

  private storeSync(
    backend: CacheBackend,
    keys: CallKeys,
    value: unknown,
    read: Read,
    args: unknown[],
  ): void {
    if (!this.shouldStore(value, args)) return
    const lifetime = this.lifetimeOf(value, args)
    if (lifetime === undefined) return
    try {
      backend.sync!.set(
        keys.entry,
        this.envelopeFor(value, read.generations, lifetime.freshMs),
        lifetime.backendTtl,
      )
      this.observer.set(keys.entry)
    } catch (error) {
      this.storeFailed(error, keys.entry)
    }
  }

  private async store(
    backend: CacheBackend,
    keys: CallKeys,
    value: unknown,
    generations: readonly number[],
    args: unknown[],
    flight: Flight,
  ): Promise<void> {
    // Invalidated here while it computed: its result is from before, and must not be stored.
    if (isStale(flight)) return
    if (!this.shouldStore(value, args)) return
    const lifetime = this.lifetimeOf(value, args)
    if (lifetime === undefined) return
    try {
      await backend.set(
        keys.entry,
        this.envelopeFor(value, generations, lifetime.freshMs),
        lifetime.backendTtl,
      )
      this.observer.set(keys.entry)
    } catch (error) {
      this.storeFailed(error, keys.entry)
    }
  }
}

/** What an in-process backend holds under `key`, if it is an object (an envelope's generations are checked next). */
function storedEnvelope(sync: SyncAccess, key: string): Envelope | undefined {
  const stored = sync.get === undefined ? sync.getEntry<Envelope>(key)?.value : sync.get<Envelope>(key)
  return typeof stored === 'object' && stored !== null ? stored : undefined
}

/** Fresh whatever the time: stored without stale-while-revalidate, grace or refresh ahead. */
function isPlainFresh(entry: Envelope): boolean {
  return entry.s === undefined && entry.r === undefined
}

function isEnvelope(value: unknown): value is Envelope {
  return typeof value === 'object' && value !== null && Array.isArray((value as Envelope).g)
}

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as PromiseLike<unknown> | null)?.then === 'function'
}
