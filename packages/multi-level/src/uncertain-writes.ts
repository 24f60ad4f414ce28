import type { Level } from './level.js'
import type { ReadGuards } from './read-guard.js'

/** First wait before the shared level is asked again; doubled on each failure, up to the next. */
const FIRST_MS = 50
const MOST_MS = 1000

/**
 * Keys of writes the shared level failed while in use (a timeout, a link lost): they were sent, so
 * the level may still apply them, or undo them (memcached's bump), when it resumes — after the
 * message that told the other processes has reached them (Redis runs the bus's PUBLISH before it
 * reads the rest of a frozen pipeline), and a process told to drop its copies may have read the
 * old value again meanwhile. So the keys are told again once the level has answered a read of
 * them issued after the failure: a connection (a node, a server) answers in order, so what was
 * sent on it before has been processed by then. Until then, this process's reads of the keys do
 * not copy what they read into the faster levels.
 */
export class UncertainWrites {
  /** Each key, with the round of reads it was added in: a read proves only the failures before it. */
  private readonly keys = new Map<string, number>()
  private round = 0
  private waitMs = FIRST_MS
  private timer: NodeJS.Timeout | undefined
  private asking = false
  private stopped = false

  constructor(
    private readonly shared: Level,
    private readonly reads: ReadGuards,
    /** Tells the other processes again, and drops the keys from this process's faster levels. */
    private readonly settled: (keys: string[]) => Promise<void>,
  ) {}

  /** A write of `keys` failed on the shared level in use. */
  add(keys: readonly string[]): void {
    if (this.stopped) return
    for (const key of keys) {
      this.keys.set(key, this.round)
      this.reads.holdUncertain(key)
    }
    this.waitMs = FIRST_MS
    this.schedule()
  }

  /** The chain closes: nothing more is asked or told. */
  stop(): void {
    this.stopped = true
    clearTimeout(this.timer)
    for (const key of this.keys.keys()) this.reads.releaseUncertain(key)
    this.keys.clear()
  }

  private schedule(): void {
    if (this.timer !== undefined || this.asking || this.stopped || this.keys.size === 0) return
    this.timer = setTimeout(() => {
      this.timer = undefined
      void this.ask()
    }, this.waitMs)
    this.timer.unref?.()
  }

  /** Reads the keys on the shared level (its own call: no breaker, no counters); tells them once it answers. */
  private async ask(): Promise<void> {
    const round = this.round++
    const keys = [...this.keys.keys()]
    this.asking = true
    let answered = false
    try {
      await this.shared.backend.getMany(keys)
      answered = true
    } catch {
      this.waitMs = Math.min(this.waitMs * 2, MOST_MS)
    }
    this.asking = false
    if (this.stopped) return
    if (answered) {
      const done: string[] = []
      for (const key of keys) {
        if (this.keys.get(key)! > round) continue
        this.keys.delete(key)
        this.reads.releaseUncertain(key)
        done.push(key)
      }
      this.waitMs = FIRST_MS
      await this.settled(done).catch(() => {})
    }
    this.schedule()
  }
}
