import { type CacheBackend, CacheUnavailableError, type SetManyItem } from '@cache/core'
import { isGenerationKey } from '@cache/core/backend'
import { isCallerError } from './caller-error.js'
import type { ChainParts } from './chain-parts.js'
import { isUnsent, markPartlyUnsent } from './health.js'
import { setManyLeft } from './ttl-left.js'

/**
 * A chain's operations on many keys, and `clear()`: keys and TTLs are checked by the chain
 * before they get here. @cache's invalidation state (generation keys) takes its own path.
 */
export class ChainBatches {
  constructor(private readonly chain: ChainParts) {}

  /**
   * Clears every level. Resolves only if the shared level was cleared; otherwise the levels that
   * answered are cleared, the faster others are cleared before they are used again, and the call
   * rejects with `CacheUnavailableError`, or the shared level's refusal (the shared level is never
   * cleared by a repair). A clear the shared level refused once by its configuration is refused
   * again up front, whatever its breaker state.
   */
  async clear(): Promise<void> {
    const shared = this.chain.levels[this.chain.levels.length - 1]!
    // A clear the shared level refuses by its configuration (Redis without a namespace) is
    // refused the same way while it is skipped: nothing cleared, nothing published, no repair.
    if (shared.clearRefusal !== undefined) throw shared.clearRefusal
    this.chain.reads.beginClear()
    let sharedCleared = false
    /** Known never sent to the shared level: skipped (breaker open), or refused by its configuration. */
    let sharedUnsent = false
    let sharedError: unknown
    this.chain.order.beginClear()
    try {
      await Promise.all(
        this.chain.levels.map(async (level) => {
          if (!this.chain.health.usable(level)) {
            if (level === shared) sharedUnsent = true
            return level.missedClear()
          }
          try {
            await level.backend.clear()
            level.breaker.success()
            if (level === shared) sharedCleared = true
          } catch (error) {
            if (level !== shared) {
              level.missedClear()
              this.chain.health.failed(level, 'clear', error)
              return
            }
            sharedError = error
            // Refused: by its configuration (a backend that cannot clear, as Redis without a
            // namespace) before anything was sent, or midway (an ACL refusing a step, after the
            // steps before it were applied). Nothing to repair, and the level stays in use; the
            // error reaches the caller.
            if (isCallerError(error)) {
              sharedUnsent = shared.refusedClear(error)
              return
            }
            this.chain.health.failed(level, 'clear', error)
            // Failed while in use: maybe applied, and other processes write meanwhile; cleared
            // again only if the level turns out to be down (see Level.suspect).
            if (shared.closed) shared.suspectClear()
            else shared.missedClear()
          }
        }),
      )
    } finally {
      this.chain.order.endClear()
      this.chain.reads.endClear()
    }
    // A clear that failed on the shared level, or that it refused midway, may have been applied
    // there all the same, in part. One it skipped (breaker open) or refused by its configuration
    // changed nothing there: the other processes' faster levels still match it, and one running
    // on its own meanwhile keeps its private locks and counters.
    if (sharedCleared) await this.chain.invalidation.publish({ clear: true })
    else if (!sharedUnsent) await this.chain.invalidation.publishHanded({ clear: true })
    if (isCallerError(sharedError)) throw sharedError
    if (!sharedCleared) throw this.chain.health.notTaken(shared, 'clear', sharedError)
  }

  async getMany<T = unknown>(keys: readonly string[]): Promise<(T | undefined)[]> {
    let state: number[] | undefined
    for (let i = 0; i < keys.length; i++) if (isGenerationKey(keys[i]!)) (state ??= []).push(i)
    if (state === undefined) return this.readMany<T>(keys)
    // Memoize reads an entry and its generations at once: the generations take the state path.
    const plain = keys.filter((key) => !isGenerationKey(key))
    const [values, states] = await Promise.all([
      plain.length === 0 ? [] : this.readMany<T>(plain),
      Promise.all(state.map((i) => this.chain.state.read<T>(keys[i]!))),
    ])
    const out = new Array<T | undefined>(keys.length)
    let p = 0
    let q = 0
    for (let i = 0; i < keys.length; i++)
      out[i] = state[q] === i ? states[q++]?.value : (values as (T | undefined)[])[p++]
    return out
  }

  private async readMany<T>(keys: readonly string[]): Promise<(T | undefined)[]> {
    const out = new Array<T | undefined>(keys.length)
    let start = 0
    let firstAnswered = false
    if (this.chain.health.usable(this.chain.first)) {
      try {
        const values = await this.chain.first.backend.getMany<T>(keys)
        this.chain.first.breaker.success()
        for (let i = 0; i < keys.length; i++) out[i] = values[i]
        start = 1
        firstAnswered = true
      } catch (error) {
        this.chain.health.failed(this.chain.first, 'getMany', error)
        start = 1
      }
    } else {
      start = 1
    }
    const missing: number[] = []
    const found = new Array<boolean>(keys.length).fill(true)
    const first = this.chain.first
    for (let i = 0; i < keys.length; i++) {
      // A write of this key failed on L1: its copy may be outdated.
      if (first.hasRepairs && first.isPending(keys[i]!)) out[i] = undefined
      if (firstAnswered && out[i] !== undefined) first.stats.hits++
      else {
        if (firstAnswered) first.stats.misses++
        missing.push(i)
      }
    }
    // Deeper levels are read key by key: backfill needs each entry's expiry.
    await Promise.all(
      missing.map(async (i) => {
        const entry = await this.chain.reader.read<T>(keys[i]!, start, firstAnswered, false)
        out[i] = entry?.value
        found[i] = entry !== undefined
      }),
    )
    // The chain counts the call's reads once it resolves: a call that rejects (one key refused)
    // answered none of them.
    for (let i = 0; i < keys.length; i++) {
      if (found[i]) this.chain.observer.hit(keys[i]!)
      else this.chain.observer.miss(keys[i]!)
    }
    return out
  }

  async setMany(items: readonly SetManyItem[]): Promise<void> {
    if (items.some((item) => isGenerationKey(item.key))) {
      const plain = items.filter((item) => !isGenerationKey(item.key))
      const writes = items
        .filter((item) => isGenerationKey(item.key))
        .map((item) => this.chain.order.track(this.chain.state.set(item.key, item.value, item.ttl)))
      if (plain.length > 0) writes.push(this.setMany(plain))
      const failure = (await Promise.allSettled(writes)).find((r) => r.status === 'rejected')
      if (failure !== undefined) throw (failure as PromiseRejectedResult).reason
      return
    }
    const calledAt = this.chain.now()
    const keys = items.map((item) => item.key)
    for (const key of keys) this.chain.reads.invalidate(key)
    const ticket = this.chain.order.begin(keys)
    try {
      await this.chain.invalidation.toldEvenIfFailed({ keys }, () =>
        this.chain.writer.all(
          'setMany',
          keys,
          (backend) => setManyLeft(backend, this.chain.shared, items, calledAt, this.chain.now()),
          ticket,
        ),
      )
    } finally {
      this.chain.order.end(ticket)
    }
    for (const key of keys) this.chain.observer.set(key)
    await this.chain.invalidation.publish({ keys })
  }

  async deleteMany(keys: readonly string[]): Promise<number> {
    if (keys.some(isGenerationKey)) {
      const plain = keys.filter((key) => !isGenerationKey(key))
      const results = await Promise.allSettled([
        ...keys
          .filter(isGenerationKey)
          .map(async (key) => ((await this.chain.order.track(this.chain.state.delete(key))) ? 1 : 0)),
        plain.length === 0 ? Promise.resolve(0) : this.deleteMany(plain),
      ])
      const failure = results.find((r) => r.status === 'rejected')
      if (failure !== undefined) throw (failure as PromiseRejectedResult).reason
      return results.reduce((sum, r) => sum + (r as PromiseFulfilledResult<number>).value, 0)
    }
    for (const key of keys) this.chain.reads.invalidate(key)
    const ticket = this.chain.order.begin(keys)
    let results: boolean[][]
    try {
      // Key by key on each level, so that the chain knows which keys it removed: as for delete,
      // a key any level held, counted and evented once. That is one call per key where a level's
      // own deleteMany would batch them (redis pipelines one batch per node). Every key's call
      // settles before one's refusal is handled: the others are applied by then, so the message
      // that tells the other processes comes after them.
      results = await this.chain.invalidation.toldEvenIfFailed({ keys: [...keys] }, () =>
        this.chain.writer.all('deleteMany', keys, (backend) => deleteEach(backend, keys)),
      )
    } finally {
      this.chain.order.end(ticket)
    }
    let removed = 0
    for (let i = 0; i < keys.length; i++) {
      if (!results.some((levelResults) => levelResults[i])) continue
      removed++
      this.chain.observer.delete(keys[i]!)
    }
    await this.chain.invalidation.publish({ keys: [...keys] })
    return removed
  }
}

/**
 * Deletes the keys one by one, all at once; rejects once all have settled, with the first failure
 * of a key that was sent. Only a batch none of whose keys was sent rejects `unsent` (known to have
 * changed nothing): one whose other keys were deleted must be published and dropped like any
 * failed write, so it rejects with an error that is not `unsent`.
 */
async function deleteEach(backend: CacheBackend, keys: readonly string[]): Promise<boolean[]> {
  const settled = await Promise.allSettled(keys.map((key) => backend.delete(key)))
  const removed = new Array<boolean>(settled.length)
  let unsent: unknown
  let unsentCount = 0
  for (let i = 0; i < settled.length; i++) {
    const result = settled[i]!
    if (result.status === 'fulfilled') {
      removed[i] = result.value
      continue
    }
    if (!isUnsent(result.reason)) throw result.reason
    unsent ??= result.reason
    unsentCount++
  }
  if (unsent === undefined) return removed
  if (unsentCount === keys.length) throw unsent
  throw markPartlyUnsent(
    new CacheUnavailableError(
      backend.name,
      `deleteMany: ${unsentCount} of ${keys.length} keys not sent (waiting behind an earlier call of this process on them), the others deleted`,
      { cause: unsent },
    ),
  )
}
