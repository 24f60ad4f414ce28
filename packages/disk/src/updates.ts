import { addToCounter, CONFLICT, retryConflicts } from '@cache/core/backend'
import type { AccessTimes } from './access-times.js'
import type { DiskContext } from './context.js'
import type { GroupCommit } from './group-commit.js'
import type { Condition, WriteRow } from './store.js'

/**
 * The operations that read a key and write it back, exact across processes: `incr` in one
 * transaction, `atomicUpdate` and `compareAndDelete` by the row's version (compare-and-set).
 * Each takes its turn on the key as a whole: operations issued after it wait for its commit.
 */
export class Updates {
  /**
   * `accessTimes`: reads recorded before an `incr` are written in its transaction, ahead of it.
   * `evict`: brings the directory back under `maxSize` after a write pushed it over.
   */
  constructor(
    private readonly ctx: DiskContext,
    private readonly writes: GroupCommit,
    private readonly accessTimes: AccessTimes,
    private readonly evict: () => Promise<void>,
  ) {}

  /** Adds `by` to the counter, read and written in one transaction; `ttlMs` applies only to a new counter. */
  async incr(key: string, by: number, ttlMs: number | undefined): Promise<number> {
    const { ctx } = this
    // What a live counter holds after the increment (throws, changing nothing, for a value that
    // is not an integer or a result that would not be exact). A counter stored by `set` may be in
    // a file (over `inlineThreshold`): read in the transaction; a file gone is a counter gone, as
    // `get` answers it.
    const addTo = (value: Buffer | null, file: string | null, size: number): number => {
      if (file === null) return addToCounter(key, value === null ? undefined : ctx.codec.decode(value), by)
      const bytes = ctx.files.loadNow('incr', key, file, size - key.length)
      return bytes === undefined ? by : addToCounter(key, ctx.codec.decode(bytes), by)
    }
    // A new counter's TTL counts from the call, not from a commit that waited for the lock (a
    // rate-limit window must not stretch by another process's transaction).
    const expiresAt = ttlMs === undefined ? null : ctx.settings.now() + ttlMs
    // In flight until the old value's file is removed and any eviction done: `close()` resolves after it.
    ctx.inFlight.start()
    try {
      return await this.increment(key, by, addTo, expiresAt)
    } finally {
      ctx.inFlight.end()
    }
  }

  private async increment(
    key: string,
    by: number,
    addTo: (value: Buffer | null, file: string | null, size: number) => number,
    expiresAt: number | null,
  ): Promise<number> {
    const { ctx } = this
    let committedAt = 0
    const result = await ctx.order.inOrder([key], true, async () => {
      const accesses = this.accessTimes.take()
      try {
        return await ctx.lock.run(
          'incr',
          key,
          () => {
            const now = ctx.settings.now()
            const row = { ns: ctx.ns, key, value: null, file: null, size: 0, expiresAt, now }
            const counted = ctx.store.incr(row, by, addTo, accesses)
            committedAt = performance.now()
            return counted
          },
          true,
        )
      } catch (error) {
        this.accessTimes.restore(accesses)
        throw error
      }
    })
    await ctx.files.discard([result.oldFile])
    if (result.total > ctx.settings.maxSize) await this.evict()
    ctx.lock.confirm('incr', key, committedAt)
    ctx.observer.set(key)
    return result.value
  }

  /**
   * Reads the entry and its version, runs `fn` (outside any transaction, so it may be async), then
   * writes only if the version is unchanged, else retries with the newer value after a short
   * random pause (core's default), up to `maxAttempts`.
   */
  atomicUpdate<T>(
    key: string,
    fn: (current: T | undefined) => T | Promise<T>,
    ttlMs: number | undefined,
  ): Promise<T> {
    const { ctx } = this
    return ctx.order.inOrder([key], true, () =>
      retryConflicts(key, { maxAttempts: ctx.settings.maxAttempts }, async () => {
        const row = await ctx.lock.run('atomicUpdate', key, () => ctx.store.getForWrite(ctx.ns, key))
        const current = await this.currentValue<T>(key, row)
        if (current === CONFLICT) return CONFLICT
        const next = await ctx.order.runUpdate(() => fn(current))
        const condition: Condition = { kind: 'version', version: row === undefined ? 0 : row[3] }
        return (await this.writes.put(key, ctx.codec.encode(next), ttlMs, condition, true)) ? next : CONFLICT
      }),
    )
  }

  /** Deletes the key only if it holds the string `expected` and its version is unchanged since it was read. */
  compareAndDelete(key: string, expected: string): Promise<boolean> {
    const { ctx } = this
    return ctx.order.inOrder([key], true, async () => {
      const row = await ctx.lock.run('compareAndDelete', key, () => ctx.store.getForWrite(ctx.ns, key))
      if (row === undefined) return false
      const current = await this.currentValue<unknown>(key, row)
      if (current !== expected) return false
      const removed = await ctx.lock.run(
        'compareAndDelete',
        key,
        () => ctx.store.deleteIfVersion(ctx.ns, key, row[3]),
        true,
      )
      if (removed === undefined) return false
      await ctx.files.discard([removed[0]])
      ctx.observer.delete(key)
      return true
    })
  }

  /** The live value of the row, or CONFLICT if its file vanished under us. */
  private async currentValue<T>(
    key: string,
    row: WriteRow | undefined,
  ): Promise<T | undefined | typeof CONFLICT> {
    const { ctx } = this
    if (row === undefined || (row[2] !== null && row[2] <= ctx.settings.now())) return undefined
    if (row[1] === null) return ctx.codec.decode(row[0]!) as T
    const bytes = await ctx.files.load('atomicUpdate', key, row[1], row[4] - key.length)
    return bytes === undefined ? CONFLICT : (ctx.codec.decode(bytes) as T)
  }
}
