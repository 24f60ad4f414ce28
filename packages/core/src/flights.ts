import type { CacheBackend } from './backend.js'

/*
 * What memoize shares within one process, across every memoized handle and every copy of
 * @cache/core: the computations in flight per backend and key, and which generation keys this
 * process invalidated when. Two handles with the same name (or a decorated method running on
 * several classes) build the same keys, so they must also share flights, and an invalidation
 * through one of them must stop the flights of all.
 *
 * Events are ordered by one counter (`tick()`): a flight started at tick 10 is stale once one of
 * its generation keys was invalidated here at tick 11 or later.
 */

/** A computation for one key; joined by concurrent misses that read the same generations. */
export interface Flight {
  promise: Promise<unknown>
  /** The generations it computes under; `undefined` for a pass-through that stores nothing. */
  readonly generations: readonly number[] | undefined
  /** Its generation keys: an invalidation of any of them here makes it stale. */
  readonly scopes: readonly string[]
  readonly started: number
  /** When it settled (a tick), or `undefined` while it runs. */
  settled: number | undefined
}

/**
 * Callers of one key that arrived before its next read was sent: they share that read. A read
 * sent before a caller arrived is never shared with it (it may predate an invalidation the
 * caller must see).
 */
export interface Round<R> {
  promise: Promise<R>
  /** The tick the read was sent at (0 until then). */
  sent: number
  /** Callers still to look at the result. */
  waiters: number
  /** The one pass-through run its callers share when the read failed. */
  passThrough?: Promise<unknown>
  reported?: boolean
}

/** The state of one key of one backend in this process. */
export interface Slot {
  gathering: Round<unknown> | undefined
  /** Rounds whose read was sent and whose callers have not all looked at the result. */
  rounds: number
  flight: Flight | undefined
}

interface ProcessState {
  clock: number
  /** The tick at which this process last invalidated each generation key. */
  readonly invalidated: Map<string, number>
  readonly running: Set<Flight>
  readonly slots: WeakMap<CacheBackend, Map<string, Slot>>
  /** Every entry-key prefix used under a function's generation key (its scope), by any handle. */
  readonly prefixes: Map<string, Set<string>>
}

const STATE = Symbol.for('@cache/core:memoize-process-state@1')
const state: ProcessState = ((globalThis as Record<symbol, unknown>)[STATE] ??= {
  clock: 0,
  invalidated: new Map(),
  running: new Set(),
  slots: new WeakMap(),
  prefixes: new Map(),
}) as ProcessState

/** Invalidation marks kept before the ones no running flight can need are dropped. */
const MAX_MARKS = 10_000

export function tick(): number {
  return ++state.clock
}

/** This process invalidated these generation keys now: flights computing under them are stale. */
export function invalidatedHere(keys: readonly string[]): void {
  const at = tick()
  for (const key of keys) state.invalidated.set(key, at)
  if (state.invalidated.size > MAX_MARKS) prune()
}

/** True if this process invalidated one of `flight`'s generation keys after it started. */
export function isStale(flight: Flight): boolean {
  return invalidatedSince(flight.scopes, flight.started)
}

/** True if this process invalidated one of the generation keys `scopes` after {@link tick} gave `started`. */
export function invalidatedSince(scopes: readonly string[], started: number): boolean {
  const invalidated = state.invalidated
  if (invalidated.size === 0) return false
  for (const key of scopes) {
    const at = invalidated.get(key)
    if (at !== undefined && at > started) return true
  }
  return false
}

/** The state of `key` on `backend`, created if absent. */
export function slotOf(backend: CacheBackend, key: string): Slot {
  let slots = state.slots.get(backend)
  if (slots === undefined) state.slots.set(backend, (slots = new Map()))
  let slot = slots.get(key)
  if (slot === undefined) slots.set(key, (slot = { gathering: undefined, rounds: 0, flight: undefined }))
  return slot
}

/** Forgets the slot once nothing waits on it and nothing runs for it. */
export function release(backend: CacheBackend, key: string, slot: Slot): void {
  if (slot.gathering !== undefined || slot.rounds > 0) return
  if (slot.flight !== undefined && slot.flight.settled === undefined) return
  const slots = state.slots.get(backend)
  if (slots?.get(key) === slot) slots.delete(key)
}

/** Starts `run` as the flight of `slot`; it settles (and is released) whatever happens. */
export function startFlight(
  backend: CacheBackend,
  key: string,
  slot: Slot,
  generations: readonly number[] | undefined,
  scopes: readonly string[],
  run: (flight: Flight) => Promise<unknown>,
  /** When the computation began, if before now ({@link tick}). */
  started = tick(),
): Flight {
  const flight: Flight = {
    promise: undefined as unknown as Promise<unknown>,
    generations,
    scopes,
    started,
    settled: undefined,
  }
  // The slot is registered: its callers hold a round open, or took it from slotOf() just now.
  slot.flight = flight
  state.running.add(flight)
  flight.promise = run(flight)
  const settle = () => {
    flight.settled = tick()
    state.running.delete(flight)
    release(backend, key, slot)
  }
  flight.promise.then(settle, settle)
  return flight
}

/** Records that `prefix` holds entries of the function whose generation key is `scope`. */
export function usePrefix(scope: string, prefix: string): void {
  let prefixes = state.prefixes.get(scope)
  if (prefixes === undefined) state.prefixes.set(scope, (prefixes = new Set()))
  prefixes.add(prefix)
}

/** Every entry-key prefix any handle in this process used for the function with this scope. */
export function prefixesOf(scope: string): Iterable<string> {
  return state.prefixes.get(scope) ?? []
}

/** Drops the marks older than every running flight: no flight can be made stale by them any more. */
function prune(): void {
  let oldest = Number.POSITIVE_INFINITY
  for (const flight of state.running) oldest = Math.min(oldest, flight.started)
  for (const [key, at] of state.invalidated) if (at < oldest) state.invalidated.delete(key)
}
