import {
  CacheClosedError,
  type CacheBackend,
  type CacheEntry,
  CacheConfigError,
  type CacheStats,
  type Duration,
  type ListKeysOptions,
  type MinimalBackend,
  type SetManyItem,
  ttlToMs,
} from '@cache/core'
import {
  booleanOption,
  describeGiven,
  CHAIN,
  chainOf,
  hostOnlyOption,
  sharedOption,
  storeOf,
  assertIncrement,
  assertKey,
  copyItemList,
  copyKeyList,
  isGenerationKey,
  listPrefix,
  notAnOptionsObject,
  toBackend,
} from '@cache/core/backend'
import { ChainBatches } from './batches.js'
import { type ChainParts, assembleChain } from './chain-parts.js'
import { ChainWrites } from './chain-writes.js'
import type { MultiLevelEvent, MultiLevelEventName } from './health.js'
import { Level, type LevelReport } from './level.js'
import { checkChainOptionNames } from './option-names.js'
import type { InvalidationBus } from './bus.js'
import type { MultiLevelOptions } from './options.js'

export type { MultiLevelOptions } from './options.js'

/** What an L1 read answers for a miss (a stored `undefined` is a hit). */
const MISS: unique symbol = Symbol('miss')

function entryValue<T>(entry: CacheEntry<T> | undefined): T | typeof MISS {
  return entry === undefined ? MISS : entry.value
}

/** Where a read goes on after L1: from L1 itself (not read synchronously), or past it (it failed, or missed). */
const SKIPPED: unique symbol = Symbol('skipped')
const FAILED: unique symbol = Symbol('failed')
const MISSED: unique symbol = Symbol('missed')
type Onward = typeof SKIPPED | typeof FAILED | typeof MISSED

const isOnward = (found: unknown): found is Onward =>
  found === SKIPPED || found === FAILED || found === MISSED

/** Where a chain lists who is told what it drops for other processes; shared by every copy of this package. */
const DROPS = Symbol.for('@cache/multi-level:drops@1')

/**
 * A chain of backends used as one. Reads go level by level and backfill the faster levels with
 * the entry's remaining TTL; writes go to the slowest level first (so a value it refuses is stored
 * nowhere), then to the faster ones; `incr`/`atomicUpdate` run on the slowest level and evict the
 * key from the faster ones. A failing level is skipped by a circuit breaker and repaired before it
 * is used again. See the README for what is and is not guaranteed.
 */
export class MultiLevelBackend implements CacheBackend {
  readonly name = 'multi-level'
  readonly namespace: string
  /** The levels, fastest first, each with its own stats and breaker. */
  readonly levels: readonly Level[]
  /** Whether other processes see the chain's entries: what its last level says (undefined: not told). */
  get shared(): boolean | undefined {
    return this.levels[this.levels.length - 1]!.backend.shared
  }
  /** Whether only this machine's processes see them: what its last level says. */
  get hostOnly(): boolean | undefined {
    return this.levels[this.levels.length - 1]!.backend.hostOnly
  }
  /**
   * This chain, for the chains that take it (or a wrapper of it) as a level: a value, not a
   * getter, so that an `Object.create` of it or a Proxy names the chain, not itself.
   */
  declare readonly [CHAIN]: MultiLevelBackend
  /** Told what this chain drops from its faster levels for other processes (see `ChainInvalidation.dropListeners`). */
  get [DROPS](): Set<(keys: readonly string[] | undefined) => void> {
    return this.chain.invalidation.dropListeners
  }
  /** Whether the chain was given a bus (a chain nested in one with a bus needs its own). */
  readonly hasBus: boolean
  /** The parts the chain's operations share: health, reader, writer, write order, bus… */
  private readonly chain: ChainParts
  private readonly batches: ChainBatches
  private readonly writes: ChainWrites
  private readonly closeLevels: boolean
  /** Stops listening to the levels' `error` events (see {@link forwardLevelError}). */
  private readonly unsubscribe: (() => void)[] = []
  private closed: Promise<void> | undefined
  /**
   * The keys of the chain, as its last level lists them (the shared, slowest one: writes reach
   * every level, so it holds every key). Absent when the last level cannot list (memcached).
   */
  readonly keys?: (options?: ListKeysOptions) => AsyncIterableIterator<string>

  constructor(options: MultiLevelOptions) {
    checkChainOptionNames(options)
    Object.defineProperty(this, CHAIN, { value: this })
    if (options.levels !== undefined && !Array.isArray(options.levels))
      throw new CacheConfigError('levels', 'expected a list of backends, fastest first')
    const backends = options.levels?.map((level) => toBackend(level)) ?? []
    if (backends.length === 0) throw new CacheConfigError('levels', 'multiLevel needs at least one backend')
    refuseMemoryLast(backends)
    refuseBusOverUnbussedChain(backends, options.bus !== undefined)
    this.hasBus = options.bus !== undefined
    const bus = options.bus as Partial<InvalidationBus> | undefined
    if (bus !== undefined && (typeof bus?.publish !== 'function' || typeof bus.subscribe !== 'function'))
      throw new CacheConfigError(
        'bus',
        `expected a bus made by redisBus(url) (or an object with publish and subscribe), got ${describeGiven(bus)}`,
      )
    const maxPending = options.maxPendingKeys ?? 10_000
    if (!Number.isSafeInteger(maxPending) || maxPending < 0)
      throw new CacheConfigError(
        'maxPendingKeys',
        `expected a whole number of keys, 0 or more, got ${describeGiven(maxPending)}`,
      )
    this.levels = backends.map(
      (backend, i) => new Level(backend, i, options.breaker ?? {}, maxPending, i === backends.length - 1),
    )
    for (const level of this.levels) level.backfilled = backfilled(level.backend)
    this.closeLevels = booleanOption(options.closeLevels, 'closeLevels', true)
    this.namespace =
      options.namespace ??
      (backends[backends.length - 1] as { namespace?: unknown }).namespace?.toString() ??
      ''
    this.chain = assembleChain(this.levels, this.namespace, options)
    this.batches = new ChainBatches(this.chain)
    this.writes = new ChainWrites(this.chain)
    for (const level of this.levels) {
      level.onRepairFailure = (error) => this.chain.health.failed(level, 'repair', error, undefined, false)
      level.onUnrepaired = (message) => this.chain.health.unrepaired(level, message)
      level.dropFaster = (keys) => this.chain.writer.dropFaster(level.index, keys)
      // What a repair of the shared level deletes there is a write like any other: this
      // process's faster levels drop it (a write they took while it was skipped must not outlive
      // its repair), and so do the other processes'. (It never clears there: see Level.missedClear.)
      if (level.index === this.levels.length - 1)
        level.onRepaired = async (keys) => {
          await this.chain.writer.dropFaster(level.index, keys)
          this.chain.invalidation.publish({ keys })
        }
      const forward = this.forwardLevelError(level)
      level.backend.on?.('error', forward)
      this.unsubscribe.push(() => level.backend.off?.('error', forward))
    }
    // A chain given as a level (or wrapped) drops what another process wrote from its faster
    // levels when its bus says so: this chain's faster levels may hold copies of it (read from
    // there while this chain's own message was already in), and drop them too.
    for (const backend of backends) {
      const inner = chainOf(backend) as { [DROPS]?: unknown } | undefined
      const drops = inner?.[DROPS]
      if (!(drops instanceof Set)) continue
      const listener = (keys: readonly string[] | undefined) => this.chain.invalidation.droppedElsewhere(keys)
      drops.add(listener)
      this.unsubscribe.push(() => drops.delete(listener))
    }
    // Only the last level holds every key (writes reach every level; faster ones keep a subset):
    // when it cannot list, a faster level's list would pass a partial view off as the whole.
    const last = backends[backends.length - 1]!
    if (typeof last.keys === 'function')
      this.keys = (options) => {
        listPrefix(options)
        return last.keys!(options)
      }
    // Last, once every option was accepted: a chain refused leaves its levels to the next one.
    claimFasterLevels(backends, this)
  }

  /** The shared level's default TTL in ms (`null`: none), which a write naming none gets on every level. */
  get defaultTtlMs(): number | null | undefined {
    return this.chain.shared.defaultTtlMs
  }

  /** Chain-level counters: one hit or miss per read, level failures as `errors`. */
  get stats(): CacheStats {
    return this.chain.observer.stats
  }

  /** A snapshot of every level: breaker state, counters, repairs waiting. */
  levelStats(): LevelReport[] {
    return this.levels.map((level) => level.report())
  }

  on(event: MultiLevelEventName, listener: (event: MultiLevelEvent) => void): this {
    this.chain.observer.on(event, listener)
    return this
  }

  off(event: MultiLevelEventName, listener: (event: MultiLevelEvent) => void): this {
    this.chain.observer.off(event, listener)
    return this
  }

  async get<T = unknown>(key: string): Promise<T | undefined> {
    this.assertOpen()
    if (isGenerationKey(key)) return (await this.chain.state.read<T>(key))?.value
    const found = this.fromFirst<T>(key, 'get')
    return isOnward(found) ? (await this.readOn<T>(key, found))?.value : (found as T)
  }

  async getEntry<T = unknown>(key: string): Promise<CacheEntry<T> | undefined> {
    this.assertOpen()
    if (isGenerationKey(key)) return this.chain.state.read<T>(key)
    const found = this.fromFirst<T>(key, 'getEntry')
    return isOnward(found) ? this.readOn<T>(key, found) : (found as CacheEntry<T>)
  }

  /**
   * The hot path: an L1 hit is one synchronous L1 read, nothing else awaited or allocated. Gives
   * what L1 holds (the value for `get`, the entry for `getEntry`), or where the read goes on.
   */
  private fromFirst<T>(key: string, operation: 'get' | 'getEntry'): T | CacheEntry<T> | Onward {
    const first = this.chain.first
    const sync = first.sync
    if (sync === undefined || first.breaker.state !== 'closed' || first.hasRepairs) return SKIPPED
    let found: T | CacheEntry<T> | typeof MISS
    try {
      found =
        operation === 'getEntry'
          ? (sync.getEntry<T>(key) ?? MISS)
          : sync.getOr === undefined
            ? entryValue(sync.getEntry<T>(key))
            : sync.getOr<T, typeof MISS>(key, MISS)
    } catch (error) {
      this.chain.health.failed(first, operation, error, key)
      return FAILED
    }
    first.breaker.failures = 0
    if (found === MISS) {
      first.stats.misses++
      return MISSED
    }
    first.stats.hits++
    this.chain.observer.hit(key)
    return found
  }

  /** The slow path, level by level, from where {@link fromFirst} left off. */
  private readOn<T>(key: string, from: Onward): Promise<CacheEntry<T> | undefined> {
    return from === SKIPPED
      ? this.chain.reader.read<T>(key, 0, false)
      : this.chain.reader.read<T>(key, 1, from === MISSED)
  }

  async set(key: string, value: unknown, ttl?: Duration): Promise<void> {
    this.assertOpen()
    assertKey(key)
    ttlToMs(ttl)
    return this.writes.set(key, value, ttl)
  }

  async add(key: string, value: unknown, ttl?: Duration): Promise<boolean> {
    this.assertOpen()
    assertKey(key)
    ttlToMs(ttl)
    return this.writes.add(key, value, ttl)
  }

  async delete(key: string): Promise<boolean> {
    this.assertOpen()
    assertKey(key)
    return this.writes.delete(key)
  }

  async has(key: string): Promise<boolean> {
    this.assertOpen()
    assertKey(key)
    if (isGenerationKey(key)) return (await this.chain.state.read(key)) !== undefined
    return this.chain.reader.has(key)
  }

  /**
   * Clears every level. Resolves only if the shared level was cleared; otherwise the levels that
   * answered are cleared, the others are cleared before they are used again, and the call
   * rejects with `CacheUnavailableError`.
   */
  async clear(): Promise<void> {
    this.assertOpen()
    return this.batches.clear()
  }

  async getMany<T = unknown>(keys: readonly string[]): Promise<(T | undefined)[]> {
    this.assertOpen()
    // A copy: the levels are read one after the other, the later ones after the caller goes on.
    return this.batches.getMany<T>(copyKeyList(keys, 'getMany'))
  }

  async setMany(items: readonly SetManyItem[]): Promise<void> {
    this.assertOpen()
    const list = copyItemList(items)
    for (const item of list) ttlToMs(item.ttl)
    return this.batches.setMany(list)
  }

  /** Key by key on each level: a key any level held is counted and evented once. */
  async deleteMany(keys: readonly string[]): Promise<number> {
    this.assertOpen()
    return this.batches.deleteMany(copyKeyList(keys, 'deleteMany'))
  }

  async incr(key: string, by = 1, ttl?: Duration): Promise<number> {
    this.assertOpen()
    assertKey(key)
    assertIncrement(by)
    ttlToMs(ttl)
    return this.writes.incr(key, by, ttl)
  }

  /** Decided by the slowest level that answers, atomically; the faster ones drop their copies. */
  async compareAndDelete(key: string, expected: string): Promise<boolean> {
    this.assertOpen()
    assertKey(key)
    return this.writes.compareAndDelete(key, expected)
  }

  async atomicUpdate<T>(
    key: string,
    fn: (current: T | undefined) => T | Promise<T>,
    ttl?: Duration,
  ): Promise<T> {
    this.assertOpen()
    assertKey(key)
    ttlToMs(ttl)
    return this.writes.atomicUpdate(key, fn, ttl)
  }

  /**
   * A level's own `error` events that no call of the chain reports: what a level finds out in the
   * background, such as `@cache/redis` settling a call it reported failed as applied after all (an
   * `incr` counted although it rejected). Emitted as the chain's `error` events, with the level,
   * and counted in its `stats.errors`. A level's unavailable or timed-out calls and connection
   * are not: the chain reports the failures of its own calls, and a level's breaker its outage.
   */
  private forwardLevelError(level: Level): (event: MultiLevelEvent) => void {
    return (event) => {
      const code = (event.error as { code?: unknown } | null)?.code
      if (code === 'CACHE_UNAVAILABLE' || code === 'CACHE_TIMEOUT' || code === 'CACHE_CLOSED') return
      this.chain.observer.stats.errors++
      this.chain.health.emit('error', { ...event, backend: level.name, level: level.index })
    }
  }

  /** After close(): every operation throws CacheClosedError, as on every backend. */
  private assertOpen(): void {
    if (this.closed !== undefined) throw new CacheClosedError(this.name)
  }

  /**
   * Idempotent. Closes the levels too unless `closeLevels: false`; never closes the bus. From then
   * on every operation rejects with `CacheClosedError`; the writes already in flight are let
   * finish first (on every level: a persistent faster level, such as disk, must not keep a value
   * the shared level replaced), so they settle with their real result. Then the keys of writes the
   * shared level failed that still wait for their proof are read there once more (up to 2 s) and
   * published on the bus, proven or not, before the levels close: close the bus after this resolves.
   */
  close(): Promise<void> {
    this.closed ??= (async () => {
      await this.chain.order.idle()
      await this.chain.invalidation.settle()
      this.chain.health.closing = true
      this.chain.invalidation.close()
      for (const level of this.levels) level.stop()
      // Levels closed with the chain may still report what they settle while closing.
      const results = this.closeLevels
        ? await Promise.allSettled(this.levels.map((level) => level.backend.close()))
        : []
      for (const stop of this.unsubscribe) stop()
      // Released once closed, and only closed with the chain: a level left open
      // (`closeLevels: false`) still holds this chain's entries, and stays this chain's.
      if (this.closeLevels) releaseFasterLevels(this.levels, this)
      const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
      if (failure) throw failure.reason
    })()
    return this.closed
  }
}

/**
 * Chains backends, fastest first: `multiLevel(memoryBackend(), redisBackend(url))`, or with
 * options: `multiLevel({ levels: [l1, l2], breaker: { failureThreshold: 5 }, bus })`.
 */
export function multiLevel(options: MultiLevelOptions): MultiLevelBackend
export function multiLevel(...levels: (CacheBackend | MinimalBackend)[]): MultiLevelBackend
export function multiLevel(...args: unknown[]): MultiLevelBackend {
  const only = args[0] as { levels?: unknown; get?: unknown } | undefined
  // One object without get(): the options (its names are checked), not a backend.
  if (args.length === 1 && typeof only === 'object' && only !== null && typeof only.get !== 'function') {
    return new MultiLevelBackend(only as MultiLevelOptions)
  }
  if (args.length === 1 && (typeof only !== 'object' || only === null || Array.isArray(only)))
    throw notAnOptionsObject(only, 'multiLevel()')
  const last = args[args.length - 1] as { get?: unknown } | undefined
  if (args.length > 1 && typeof last === 'object' && last !== null && typeof last.get !== 'function') {
    const names = Object.keys(last).join(', ')
    throw new CacheConfigError(
      'multiLevel()',
      `its last argument is not a cache backend but options ({ ${names} }): give the levels and the options in one object, multiLevel({ levels: [l1, l2], ${names} })`,
    )
  }
  return new MultiLevelBackend({ levels: args as (CacheBackend | MinimalBackend)[] })
}

/**
 * What a backend that does not say (`shared`) is taken for, by name: one of another build of
 * @cache. Any other (a custom backend, a keyv level over a store @cache/keyv does not know) is
 * not known either way.
 */
const SHARED_BY_NAME: ReadonlyMap<string, boolean> = new Map([
  ['redis', true],
  ['disk', true],
  ['memcached', true],
  ['memory', false],
])

/**
 * A chain with a bus whose levels include a chain of several levels without one: the bus evicts
 * this chain's faster levels, never the inner chain's (a disk behind memory in
 * `[memory, multiLevel(disk, redis)]`), which then serve what another process replaced.
 */
function refuseBusOverUnbussedChain(backends: readonly CacheBackend[], bus: boolean): void {
  if (!bus) return
  const check = (backend: CacheBackend): void => {
    const unknown = (chainOf(backend) as { unknown?: unknown } | undefined)?.unknown
    if (typeof unknown === 'string')
      throw new CacheConfigError(
        'bus',
        `a level's backends are ${unknown} (toKeyvStore(fn)): whether one of them is a chain without a bus, whose faster levels this chain's bus would never evict, cannot be checked. Give toKeyvStore the backend itself`,
      )
    const levels = innerLevels(backend)
    if (levels === undefined) return
    const chain = chainOf(backend) as { hasBus?: unknown }
    const count = leavesOf(backend).length
    if (count > 1 && chain.hasBus !== true)
      throw new CacheConfigError(
        'bus',
        `a level is (or wraps) a chain of ${count} levels without a bus: this chain's bus would never evict that chain's faster levels, which would keep serving what other processes replaced. Give the levels in one chain (multiLevel(memory, disk, redis)), or give the inner chain the bus too`,
      )
    levels.forEach(check)
  }
  backends.forEach(check)
}

/**
 * The levels of a chain a backend is or wraps (`defineBackend`, a keyv level over `toKeyvStore`
 * of one: see `CHAIN`), by shape, not `instanceof`: a chain of the other build (CommonJS beside
 * ESM) counts too. Undefined for any other backend.
 */
function innerLevels(backend: CacheBackend): readonly CacheBackend[] | undefined {
  const chain = (chainOf(backend) ?? backend) as { name?: unknown; levels?: unknown }
  if (chain.name !== 'multi-level' || !Array.isArray(chain.levels)) return undefined
  return (chain.levels as { backend: CacheBackend }[]).map((level) => level.backend)
}

/** The backends a level stands for: a chain's own levels (at any depth), any other backend itself. */
function leavesOf(backend: CacheBackend): CacheBackend[] {
  const levels = innerLevels(backend)
  return levels === undefined ? [backend] : levels.flatMap(leavesOf)
}

/**
 * The chain each faster level belongs to. A faster level given to two chains with other levels
 * behind it (one memory level over two tenants' Redis namespaces) would answer one chain with what
 * the other wrote there: one tenant's entries served to another. Held on `globalThis`, like the
 * default cache, so that every copy of this package in the process shares it.
 */
const FASTER_LEVELS = Symbol.for('@cache/multi-level:faster-levels@1')
const fasterLevels = ((globalThis as Record<symbol, unknown>)[FASTER_LEVELS] ??= new WeakMap()) as WeakMap<
  object,
  WeakRef<object>
>

/**
 * The stores of a chain's faster levels: every level below it (a nested chain's own levels, its
 * last one included) but the chain's last, each as the store it is or wraps (see `STORE`: an
 * `Object.create` of it, a Proxy, `defineBackend` over it).
 */
function fasterStores(backends: readonly CacheBackend[]): object[] {
  return backends.flatMap(leavesOf).slice(0, -1).map(storeOf)
}

/** The chains nested in a chain's levels, at any depth (each as the chain it is or that a wrapper carries). */
function innerChains(backends: readonly CacheBackend[]): Set<object> {
  const chains = new Set<object>()
  const visit = (backend: CacheBackend): void => {
    const levels = innerLevels(backend)
    if (levels === undefined) return
    chains.add(chainOf(backend) ?? backend)
    levels.forEach(visit)
  }
  backends.forEach(visit)
  return chains
}

function claimFasterLevels(backends: readonly CacheBackend[], chain: object): void {
  // A chain nested in this one keeps the faster levels it claimed: they are this chain's too.
  const nested = innerChains(backends)
  const leaves = backends.flatMap(leavesOf).slice(0, -1)
  const stores = fasterStores(backends).filter((store) => {
    const owner = fasterLevels.get(store)?.deref()
    return owner === undefined || !nested.has(owner)
  })
  for (const store of stores) {
    const other = fasterLevels.get(store)?.deref()
    const name = leaves.find((leaf) => storeOf(leaf) === store)?.name ?? 'given'
    if (other !== undefined && other !== chain)
      throw new CacheConfigError(
        'levels',
        `the ${name} level is already a faster level of another chain (one not closed, or closed with \`closeLevels: false\`, which leaves the level its entries): it would answer each chain with what the other wrote (another namespace's, another tenant's entries). Give each chain its own`,
      )
  }
  for (const store of stores) fasterLevels.set(store, new WeakRef(chain))
}

function releaseFasterLevels(levels: readonly { backend: CacheBackend }[], chain: object): void {
  for (const store of fasterStores(levels.map((level) => level.backend)))
    if (fasterLevels.get(store)?.deref() === chain) fasterLevels.delete(store)
}

/** Who sees a level's entries: this process, this machine's processes, or other machines' too. */
const REACH = { process: 0, host: 1, network: 2 } as const
type Reach = keyof typeof REACH

/**
 * Which processes reach a backend's entries: this one (memory), this machine's (disk), other
 * machines' too (redis); undefined when it does not say (`shared`, `hostOnly`) and is not known
 * by name.
 */
function reach(backend: CacheBackend): Reach | undefined {
  const shared = sharedOption(backend.shared) ?? SHARED_BY_NAME.get(backend.name)
  if (shared === undefined) return undefined
  if (!shared) return 'process'
  const hostOnly = hostOnlyOption(backend.hostOnly, backend.name === 'disk')
  return hostOnly ? 'host' : 'network'
}

/**
 * Whether reads may copy what they found deeper into this level: only into a level of this
 * process alone. A level other processes share (a disk behind memory, the shared level of a
 * nested chain) would get a value another process replaced or deleted while the read was on
 * its way (the read answered just before the write did), and every process of the machine
 * would then read it from there after the bus told them of the write. Such a level is written
 * by writes only. A level that does not say is taken for this process's, as when ordered.
 */
function backfilled(backend: CacheBackend): boolean {
  return leavesOf(backend).every((leaf) => (reach(leaf) ?? 'process') === 'process')
}

/**
 * A chain whose last level (the one it counts as shared: invalidations, counters and locks go
 * there) reaches fewer processes than another level does: their writes and invalidations would
 * never reach a last level held in this process (memory, a Keyv over a `Map`), nor one held on
 * this machine (disk) when another level is shared by other machines (redis), nor its theirs. A
 * backend says which it is with `shared` (and `hostOnly`); one that does not is judged by its
 * name, and one known by neither is refused last behind a shared level until it says.
 */
function refuseMemoryLast(backends: readonly CacheBackend[]): void {
  // A chain given as a level stands for its own levels: its last is where it writes last.
  // A `shared` that is not a boolean (`'false'` from a configuration file) is refused, as
  // `defineBackend` refuses it: a backend with every method reaches the chain as it is.
  const all = backends.flatMap(leavesOf)
  const held = all[all.length - 1]!
  const heldReach = reach(held)
  let widest: Reach = 'process'
  for (const backend of all) {
    const r = reach(backend)
    if (r !== undefined && REACH[r] > REACH[widest]) widest = r
  }
  if (widest === 'process' || (heldReach !== undefined && REACH[heldReach] >= REACH[widest])) return
  const names = backends.map((backend) => backend.name)
  const list = `[${names.join(', ')}]`
  if (heldReach === undefined)
    throw new CacheConfigError(
      'levels',
      `${list}: ${held.name} is last, behind a level other processes share, and does not say whether other processes reach its entries; if they do (a server, a file), say so with \`shared: true\` (keyvBackend(store, { shared: true }); on the store given to defineBackend), and with \`hostOnly: true\` too if only this machine's processes reach it (a file: it must then come before a level other machines share). A store of this process last would keep invalidations, counters and locks in this process`,
    )
  const byReach = (r: Reach) =>
    backends.filter(
      (backend) => Math.max(...leavesOf(backend).map((leaf) => REACH[reach(leaf) ?? 'process'])) === REACH[r],
    )
  const ordered = [...byReach('process'), ...byReach('host'), ...byReach('network')]
  if (heldReach === 'host')
    throw new CacheConfigError(
      'levels',
      `${list}: ${held.name}, which only this machine's processes see, is last, behind a level other machines share, so processes on two machines would count, lock and invalidate apart. Give the levels fastest first, the one other machines share last: [${ordered.map((backend) => backend.name).join(', ')}]`,
    )
  throw new CacheConfigError(
    'levels',
    `${list}: ${held.name}, which holds its entries in this process, is last, behind a level other processes share, so the chain would count this process's memory as its shared level (invalidations, counters and locks would stay in this process). Give the levels fastest first, those of this process first: [${ordered.map((backend) => backend.name).join(', ')}]`,
  )
}
