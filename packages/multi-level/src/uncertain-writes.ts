import { CacheError } from '@cache/core'
import type { LevelHealth } from './health.js'
import type { Level } from './level.js'
import type { ReadGuards } from './read-guard.js'

/** First wait before the shared level is asked again; doubled after a round with failures, up to the next. */
const FIRST_MS = 50
const MOST_MS = 1000
/** Failed reads of a key (about 4.5 s with the waits above) before it is published without proof. */
export const MOST_UNCERTAIN_TRIES = 8
/** Keys waiting for their proof, at most; past it the oldest are published at once, without proof. */
export const MOST_UNCERTAIN_KEYS = 10_000
/** Keys read in one round; the others wait for the next. */
const PER_ROUND = 500
/** A key published after its proof is published once more this much later (see {@link UncertainWrites}). */
export const LATE_REPUBLISH_MS = 5000
/** How long close() waits for the proofs before it publishes the keys without. */
export const CLOSE_WAIT_MS = 2000

/** A key waiting for its proof; replaced when the key fails again (an earlier read proves nothing of it). */
interface Waiting {
  tries: number
}

/**
 * Keys of writes the shared level failed while in use (a timeout, a link lost): they were sent, so
 * the level may still apply them, or undo them (memcached's bump), when it resumes — after the
 * message that told the other processes has reached them (Redis runs the bus's PUBLISH before it
 * reads the rest of a frozen pipeline), and a process told to drop its copies may have read the
 * old value again meanwhile. So each key is told again once the level has answered a read of it
 * issued after the failure (`has`: Redis EXISTS, no value sent back; memcached a GET on the key's
 * server): a connection (a node, a server) answers in order, so what was sent on it before has
 * been processed by then. Each key is read on its own, so that one server down (a memcached pool)
 * holds only its own keys. Until then, this process's reads of a key do not copy what they read
 * into the faster levels.
 *
 * Bounded: a key whose read failed {@link MOST_UNCERTAIN_TRIES} times, the oldest keys past
 * {@link MOST_UNCERTAIN_KEYS}, and every key still waiting when the chain closes (after up to
 * {@link CLOSE_WAIT_MS} of trying) are published without proof — a message that drops copies is
 * always safe — and reported. A key published after its proof is published once more
 * {@link LATE_REPUBLISH_MS} later: the proving read may have been answered on a new connection
 * (after a reconnect) while an intermediary (a TCP proxy) still held the write sent on the old one.
 */
export class UncertainWrites {
  private readonly keys = new Map<string, Waiting>()
  /** Keys published after their proof, each batch to be published once more at `due` (epoch ms). */
  private late: { keys: string[]; due: number }[] = []
  private lateKeys = 0
  private lateTimer: NodeJS.Timeout | undefined
  private waitMs = FIRST_MS
  private timer: NodeJS.Timeout | undefined
  /** The round of reads in flight. */
  private asking: Promise<void> | undefined
  private stopped = false

  constructor(
    private readonly shared: Level,
    private readonly reads: ReadGuards,
    private readonly health: LevelHealth,
    /** Tells the other processes again, and drops the keys from this process's faster levels. */
    private readonly settled: (keys: string[]) => Promise<void>,
  ) {}

  /** A write of `keys` failed on the shared level in use. */
  add(keys: readonly string[]): void {
    if (this.stopped) return
    for (const key of keys) {
      this.keys.delete(key)
      this.keys.set(key, { tries: 0 })
      this.reads.holdUncertain(key)
    }
    if (this.keys.size > MOST_UNCERTAIN_KEYS) this.overflow()
    this.waitMs = FIRST_MS
    this.schedule()
  }

  /**
   * The chain closes: the keys still waiting are read once more (for up to {@link CLOSE_WAIT_MS}),
   * then every key waiting or due a late publication is published, proven or not; resolves once
   * that is handed to the bus. Nothing is asked or told after.
   */
  async close(): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    clearTimeout(this.timer)
    clearTimeout(this.lateTimer)
    let timeout: NodeJS.Timeout | undefined
    const given = new Promise<void>((resolve) => {
      timeout = setTimeout(resolve, CLOSE_WAIT_MS)
    })
    await Promise.race([given, this.proveAll()])
    clearTimeout(timeout)
    const rest = [...this.late.flatMap((batch) => batch.keys), ...this.keys.keys()]
    this.late = []
    this.lateKeys = 0
    for (const key of this.keys.keys()) this.reads.releaseUncertain(key)
    this.keys.clear()
    if (rest.length > 0) await this.settled(rest).catch(() => {})
  }

  /** Drops everything, publishing nothing (a chain without a bus closes). */
  stop(): void {
    this.stopped = true
    clearTimeout(this.timer)
    clearTimeout(this.lateTimer)
    for (const key of this.keys.keys()) this.reads.releaseUncertain(key)
    this.keys.clear()
    this.late = []
    this.lateKeys = 0
  }

  /** Reads the keys until every one is proven (or close() gives up waiting). */
  private async proveAll(): Promise<void> {
    await this.asking
    while (this.keys.size > 0) {
      await this.ask()
      if (this.keys.size > 0) await new Promise((resolve) => setTimeout(resolve, FIRST_MS))
    }
  }

  private schedule(): void {
    if (this.timer !== undefined || this.asking || this.stopped || this.keys.size === 0) return
    this.timer = setTimeout(() => {
      this.timer = undefined
      this.asking = this.ask().finally(() => {
        this.asking = undefined
        this.schedule()
      })
    }, this.waitMs)
    this.timer.unref?.()
  }

  /**
   * One round: reads each key (up to {@link PER_ROUND}) on the shared level, its own call (no
   * breaker, no counters of reads); tells the keys it answered for, and those out of tries.
   */
  private async ask(): Promise<void> {
    const round: [string, Waiting][] = []
    for (const entry of this.keys) {
      round.push(entry)
      if (round.length === PER_ROUND) break
    }
    const outcomes = await Promise.allSettled(round.map(([key]) => this.shared.backend.has(key)))
    const done: string[] = []
    const givenUp: string[] = []
    let failed: { key: string; error: unknown } | undefined
    for (let i = 0; i < round.length; i++) {
      const [key, waiting] = round[i]!
      // Failed again since this read was sent: the read proves nothing of the new failure.
      if (this.keys.get(key) !== waiting) continue
      const outcome = outcomes[i]!
      if (outcome.status === 'rejected') {
        failed ??= { key, error: outcome.reason }
        if (++waiting.tries < MOST_UNCERTAIN_TRIES) {
          // To the back: the keys behind it in a long list get their turn.
          this.keys.delete(key)
          this.keys.set(key, waiting)
          continue
        }
        givenUp.push(key)
      }
      this.keys.delete(key)
      this.reads.releaseUncertain(key)
      done.push(key)
    }
    if (failed !== undefined) this.health.unproven(this.shared, failed.key, failed.error)
    else this.health.proven(this.shared)
    if (givenUp.length > 0) {
      const message = `${givenUp.length} key(s) whose writes it failed are published again without proof: it failed ${MOST_UNCERTAIN_TRIES} reads of each`
      this.health.unproven(this.shared, givenUp[0]!, this.unprovenError(message, failed?.error))
    }
    this.waitMs = failed === undefined ? FIRST_MS : Math.min(this.waitMs * 2, MOST_MS)
    if (done.length === 0) return
    await this.settled(done).catch(() => {})
    if (!this.stopped) this.publishLate(done.filter((key) => !givenUp.includes(key)))
  }

  /** Past {@link MOST_UNCERTAIN_KEYS}: the oldest keys are published now, without proof. */
  private overflow(): void {
    const out: string[] = []
    for (const key of this.keys.keys()) {
      if (this.keys.size - out.length <= MOST_UNCERTAIN_KEYS) break
      out.push(key)
    }
    for (const key of out) {
      this.keys.delete(key)
      this.reads.releaseUncertain(key)
    }
    const message = `more than ${MOST_UNCERTAIN_KEYS} keys wait for the proof that writes it failed are settled: the ${out.length} oldest are published again without it`
    this.health.unproven(this.shared, out[0]!, this.unprovenError(message))
    void this.settled(out).catch(() => {})
  }

  private unprovenError(message: string, cause?: unknown): CacheError {
    const { index, name } = this.shared
    return new CacheError(`multi-level: level ${index + 1} (${name}): ${message}`, { cause })
  }

  /** Publishes `keys` once more {@link LATE_REPUBLISH_MS} from now (at once past the bound). */
  private publishLate(keys: string[]): void {
    if (keys.length === 0) return
    this.late.push({ keys, due: Date.now() + LATE_REPUBLISH_MS })
    this.lateKeys += keys.length
    if (this.lateKeys > MOST_UNCERTAIN_KEYS) this.flushLate(Number.POSITIVE_INFINITY)
    else if (this.lateTimer === undefined) this.scheduleLate()
  }

  private scheduleLate(): void {
    const first = this.late[0]
    if (first === undefined || this.stopped) return
    this.lateTimer = setTimeout(
      () => {
        this.lateTimer = undefined
        this.flushLate(Date.now())
        this.scheduleLate()
      },
      Math.max(0, first.due - Date.now()),
    )
    this.lateTimer.unref?.()
  }

  /** Publishes the late batches due by `now`. */
  private flushLate(now: number): void {
    const keys: string[] = []
    while (this.late.length > 0 && this.late[0]!.due <= now) {
      const batch = this.late.shift()!
      this.lateKeys -= batch.keys.length
      keys.push(...batch.keys)
    }
    if (keys.length > 0) void this.settled(keys).catch(() => {})
  }
}
