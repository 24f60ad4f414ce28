import { CacheError } from '@cache/core'
import type { AccessTimes } from './access-times.js'
import { BATCH, type DiskContext } from './context.js'

/** Orphan files (from crashed writers) are swept at most this often, and only when at least this old. */
const SWEEP_EVERY_MS = 3_600_000
const ORPHAN_AGE_MS = 600_000

/**
 * Deletes what the cache no longer wants: expired entries (in the background every
 * `pruneInterval`, or on `prune()`), value files no entry references (orphans a crashed writer
 * left), and the least recently used entries once the directory is over `maxSize`.
 */
export class Housekeeping {
  private lastSweep = 0
  private evicting = false
  private readonly timer: NodeJS.Timeout | undefined

  constructor(
    private readonly ctx: DiskContext,
    private readonly accessTimes: AccessTimes,
  ) {
    const every = ctx.settings.pruneIntervalMs
    if (every !== false) this.timer = setInterval(() => void this.background(), every).unref()
  }

  /**
   * Deletes expired entries (every namespace) and, when `orphanAgeMs` is given or an hour has
   * passed, value files no entry references that are at least that old. Starts after every
   * operation issued before it.
   */
  async prune(options: { orphanAgeMs?: number } = {}): Promise<{ expired: number; orphans: number }> {
    // Counted in flight throughout, so close() waits for every batch and the sweep.
    this.ctx.inFlight.start()
    try {
      return await this.pruneNow(options)
    } finally {
      this.ctx.inFlight.end()
    }
  }

  private async pruneNow(options: { orphanAgeMs?: number }): Promise<{ expired: number; orphans: number }> {
    const { ctx } = this
    await ctx.order.inOrder(undefined, false, () => undefined)
    let expired = 0
    for (;;) {
      const files = await ctx.lock.run(
        'prune',
        undefined,
        () => ctx.store.pruneSome(ctx.settings.now(), BATCH),
        true,
      )
      expired += files.length
      await ctx.files.discard(files)
      if (files.length < BATCH) break
    }
    let orphans = 0
    if (options.orphanAgeMs !== undefined || Date.now() - this.lastSweep >= SWEEP_EVERY_MS) {
      this.lastSweep = Date.now()
      orphans = await ctx.files.sweep((name) => this.referenced(name), options.orphanAgeMs ?? ORPHAN_AGE_MS)
    }
    return { expired, orphans }
  }

  /** Evicts until the directory is under `maxSize`; one in-process run at a time. */
  async evict(): Promise<void> {
    if (this.evicting) return
    this.evicting = true
    const { ctx } = this
    try {
      for (;;) {
        // Reads recorded so far are written in the step's transaction, before it picks victims.
        const accesses = this.accessTimes.take()
        let step: { files: (string | null)[]; total: number }
        try {
          step = await ctx.lock.run(
            'evict',
            undefined,
            () => ctx.store.evictSome(ctx.settings.now(), ctx.settings.maxSize, accesses),
            true,
          )
        } catch (error) {
          this.accessTimes.restore(accesses)
          throw error
        }
        const { files, total } = step
        await ctx.files.discard(files)
        if (total <= ctx.settings.maxSize || files.length === 0) return
      }
    } catch (error) {
      // The write that triggered eviction succeeded; the next write over the limit tries again.
      if (!(error instanceof CacheError)) ctx.observer.error('evict', error)
    } finally {
      this.evicting = false
    }
  }

  /** Stops the background prune. */
  stop(): void {
    clearInterval(this.timer)
  }

  private async background(): Promise<void> {
    try {
      await this.prune()
    } catch (error) {
      if (!this.ctx.isClosed() && !(error instanceof CacheError)) this.ctx.observer.error('prune', error)
    }
  }

  private referenced(file: string): boolean {
    try {
      return this.ctx.store.isReferenced(file)
    } catch {
      return true // when in doubt, keep the file
    }
  }
}
