import type { CacheBackend, Duration } from '@cache/core'
import { compareAndDelete, isGenerationKey } from '@cache/core/backend'
import type { ChainParts } from './chain-parts.js'
import { isSkipped } from './health.js'
import { levelTtl, setLeft } from './ttl-left.js'
import type { LevelWriter } from './writes.js'

/**
 * A chain's writes of one key: the shared (slowest) level first, then the faster ones, in the
 * order {@link WriteOrder} keeps; the other processes told through the bus. Keys and TTLs are
 * checked by the chain before they get here.
 */
export class ChainWrites {
  constructor(private readonly chain: ChainParts) {}

  async set(key: string, value: unknown, ttl?: Duration): Promise<void> {
    if (isGenerationKey(key)) return this.chain.order.track(this.chain.state.set(key, value, ttl))
    const calledAt = this.chain.now()
    this.chain.reads.invalidate(key)
    const ticket = this.chain.order.begin(key)
    try {
      await this.chain.invalidation.toldEvenIfFailed({ keys: [key] }, () =>
        this.chain.writer.all(
          'set',
          key,
          (backend) => setLeft(backend, this.chain.shared, key, value, ttl, calledAt, this.chain.now()),
          ticket,
        ),
      )
    } finally {
      this.chain.order.end(ticket)
    }
    this.chain.observer.set(key)
    await this.chain.invalidation.publish({ keys: [key] })
  }

  async add(key: string, value: unknown, ttl?: Duration): Promise<boolean> {
    if (isGenerationKey(key)) return this.chain.order.track(this.chain.state.add(key, value, ttl))
    // The slowest level that answers decides, atomically; the faster ones follow.
    const calledAt = this.chain.now()
    const ticket = this.chain.order.begin(key)
    let onShared: boolean
    try {
      const {
        result: added,
        index,
        dropped,
      } = await this.chain.invalidation.toldEvenIfFailed({ keys: [key] }, () =>
        this.chain.writer.slowest('add', key, (backend) =>
          backend.add(key, value, levelTtl(ttl, backend, this.chain.shared)),
        ),
      )
      if (!added) return false
      this.chain.reads.invalidate(key)
      // A private answer the shared level's return made void (see `slowest`) is not copied.
      if (!dropped)
        await this.chain.writer.faster(
          index,
          'add',
          key,
          (backend) => setLeft(backend, this.chain.shared, key, value, ttl, calledAt, this.chain.now()),
          ticket,
        )
      onShared = index === this.chain.levels.length - 1
    } finally {
      this.chain.order.end(ticket)
    }
    this.chain.observer.set(key)
    // Taken by a faster level while the shared one was skipped: nothing changed there, so the
    // other processes' copies still match it (and one running on its own keeps its own lock).
    if (onShared) await this.chain.invalidation.publish({ keys: [key] })
    return true
  }

  async delete(key: string): Promise<boolean> {
    if (isGenerationKey(key)) return this.chain.order.track(this.chain.state.delete(key))
    this.chain.reads.invalidate(key)
    const ticket = this.chain.order.begin(key)
    let results: boolean[]
    try {
      results = await this.chain.invalidation.toldEvenIfFailed({ keys: [key] }, () =>
        this.chain.writer.all('delete', key, (backend) => backend.delete(key)),
      )
    } finally {
      this.chain.order.end(ticket)
    }
    const removed = results.some(Boolean)
    if (removed) this.chain.observer.delete(key)
    await this.chain.invalidation.publish({ keys: [key] })
    return removed
  }

  async incr(key: string, by = 1, ttl?: Duration): Promise<number> {
    if (isGenerationKey(key)) return this.chain.order.track(this.chain.state.incr(key, by, ttl))
    const value = await this.onShared('incr', key, (backend) =>
      backend.incr(key, by, levelTtl(ttl, backend, this.chain.shared)),
    )
    this.chain.observer.set(key)
    return value
  }

  async compareAndDelete(key: string, expected: string): Promise<boolean> {
    const removed = await this.onShared('compareAndDelete', key, (backend) =>
      compareAndDelete(backend, key, expected),
    )
    if (removed) this.chain.observer.delete(key)
    return removed
  }

  async atomicUpdate<T>(
    key: string,
    fn: (current: T | undefined) => T | Promise<T>,
    ttl?: Duration,
  ): Promise<T> {
    // An error thrown by fn is the caller's, not a failure of the level.
    let thrown: { error: unknown } | undefined
    const guarded = async (current: T | undefined) => {
      try {
        return await fn(current)
      } catch (error) {
        thrown = { error }
        throw error
      }
    }
    try {
      const value = await this.onShared(
        'atomicUpdate',
        key,
        (backend) => backend.atomicUpdate<T>(key, guarded, levelTtl(ttl, backend, this.chain.shared)),
        () => thrown !== undefined,
      )
      this.chain.observer.set(key)
      return value
    } catch (error) {
      throw thrown ? thrown.error : error
    }
  }

  /**
   * `incr`/`atomicUpdate`/`compareAndDelete`: run on the slowest level in use, then evict the
   * faster ones. If that level fails, the call rejects with its error (see
   * {@link LevelWriter.slowest}); the other processes are still told, since it may have been
   * applied, unless it was never sent there (skipped, or your `fn` threw).
   */
  private async onShared<R>(
    operation: string,
    key: string,
    run: (backend: CacheBackend) => Promise<R>,
    callerFailed?: () => boolean,
  ) {
    this.chain.reads.invalidate(key)
    // Marks the key as written meanwhile, so a value write overlapping this one is not copied.
    const ticket = this.chain.order.begin(key)
    let result: R
    let onShared: boolean
    try {
      const slowest = await this.chain.writer.slowest(operation, key, run, callerFailed)
      result = slowest.result
      onShared = slowest.index === this.chain.levels.length - 1
      this.chain.reads.invalidate(key)
      await Promise.all(
        this.chain.levels.slice(0, slowest.index).map((level) => this.chain.writer.evict(level, key)),
      )
    } catch (error) {
      if (!isSkipped(error) && !callerFailed?.()) await this.chain.invalidation.toldFailed([key], error)
      throw error
    } finally {
      this.chain.order.end(ticket)
    }
    // Answered by a faster level while the shared one was skipped: nothing to tell (see add).
    if (onShared) await this.chain.invalidation.publish({ keys: [key] })
    return result
  }
}
