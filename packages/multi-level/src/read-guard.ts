/** Readers of a key with a slow-path read in flight; `dirty` once a write to it started. */
export interface ReadGuard {
  readers: number
  dirty: boolean
}

/**
 * Keeps an in-flight read from backfilling the faster levels with a value older than a write
 * that started while it was reading: the write marks the key's guard dirty, the read checks it.
 */
export class ReadGuards {
  private readonly reads = new Map<string, ReadGuard>()
  /** Clears in flight: a read that starts meanwhile may see a level before the clear reaches it. */
  private clearing = 0
  /** Keys a write failed on the shared level in use, not yet read back there (see UncertainWrites). */
  private readonly uncertain = new Set<string>()

  /** A slow-path read of `key` starts; pair with {@link leave}. */
  enter(key: string): ReadGuard {
    if (this.clearing > 0 || (this.uncertain.size > 0 && this.uncertain.has(key)))
      return { readers: 1, dirty: true }
    let guard = this.reads.get(key)
    if (guard === undefined) {
      guard = { readers: 0, dirty: false }
      this.reads.set(key, guard)
    }
    guard.readers++
    return guard
  }

  leave(key: string, guard: ReadGuard): void {
    if (--guard.readers === 0 && this.reads.get(key) === guard) this.reads.delete(key)
  }

  /** A write to `key` started: reads in flight must not backfill what they read before it. */
  invalidate(key: string): void {
    const guard = this.reads.get(key)
    if (guard === undefined) return
    guard.dirty = true
    this.reads.delete(key)
  }

  /**
   * The shared level may still apply (or undo) a write of `key` it failed: reads that start
   * until {@link releaseUncertain} must not backfill what they read.
   */
  holdUncertain(key: string): void {
    this.uncertain.add(key)
    this.invalidate(key)
  }

  releaseUncertain(key: string): void {
    this.uncertain.delete(key)
    this.invalidate(key)
  }

  /** Every key may have changed (a clear, a lost bus message). */
  invalidateAll(): void {
    for (const guard of this.reads.values()) guard.dirty = true
    this.reads.clear()
  }

  /**
   * A clear of the chain starts: reads in flight, and reads that start before it ends, must not
   * backfill (the shared level may answer them before the clear reaches the key). Pair with
   * {@link endClear}.
   */
  beginClear(): void {
    this.clearing++
    this.invalidateAll()
  }

  endClear(): void {
    this.clearing--
  }
}
