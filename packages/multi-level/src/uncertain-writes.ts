import { CacheError } from '@cache/core'
import type { LevelHealth } from './health.js'
import type { Level } from './level.js'
import type { ReadGuards } from './read-guard.js'

/** First wait before the shared level is asked again; doubled after a round with failures, up to the next. */
const FIRST_MS = 50
const MOST_MS = 1000
/** A key not proven this long after its failure is published without proof (however many wait). */
export const UNPROVEN_MS = 4500
/** Keys waiting for their proof, at most; past it the oldest are published at once, without proof. */
export const MOST_UNCERTAIN_KEYS = 10_000
/** Keys read in one round; the others wait for the next. */
const PER_ROUND = 500
/** A key published after its proof is published once more this much later (see {@link UncertainWrites}). */
export const LATE_REPUBLISH_MS = 5000
/**
 * Keys waiting for their late publication, at most. The rounds prove at most {@link PER_ROUND}
 * keys every {@link FIRST_MS}: about 50 000 within {@link LATE_REPUBLISH_MS}, so this is not
 * reached; past it the oldest are published early, and reported.
 */
export const MOST_LATE_KEYS = 100_000
/**
 * A key published without proof is still read, and published again once proven, up to this long
 * after its failure (at most {@link MOST_LATE_KEYS} keys): a write an intermediary holds on the
 * connection it was sent on lands before the read queued behind it is answered.
 */
export const LATE_PROOF_MS = 60_000
/** How long close() waits for the proofs before it publishes the keys without. */
export const CLOSE_WAIT_MS = 2000

/** A key waiting for its proof; replaced when the key fails again (an earlier read proves nothing of it). */
interface Waiting {
  /** When its write failed (epoch ms). */
  since: number
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
 * Bounded: a key not proven {@link UNPROVEN_MS} after its failure (however many wait: the rounds
 * read {@link PER_ROUND} keys each), the oldest keys past {@link MOST_UNCERTAIN_KEYS}, and every
 * key still waiting when the chain closes (after up to {@link CLOSE_WAIT_MS} of trying) are
 * published without proof — a message that drops copies is always safe — and reported, counted
 * once per key; a key published without proof is still read, and published again once proven,
 * for up to {@link LATE_PROOF_MS} after its failure. A key published after its proof is published once more {@link LATE_REPUBLISH_MS}
 * later: the proving read may have been answered on a new connection (after a reconnect) while an
 * intermediary (a TCP proxy) still held the write sent on the old one.
 */
export class UncertainWrites {
  /** In the order of their failures (a key failing again moves to the end): the oldest first. */
  private readonly keys = new Map<string, Waiting>()
  /**
   * Where the next round starts reading: a live iterator of {@link keys}, so each round takes the
   * keys the last one did not reach (one failing again is read again at the end).
   */
  private cursor: MapIterator<[string, Waiting]> | undefined
  /**
   * Keys published without proof, still read until proven (then published again) or
   * {@link LATE_PROOF_MS} after their failure; oldest first. Their reads copy into the faster levels.
   */
  private readonly overdue = new Map<string, Waiting>()
  private overdueCursor: MapIterator<[string, Waiting]> | undefined
  /** Keys published after their proof, each batch to be published once more at `due` (epoch ms). */
  private late: { keys: string[]; due: number }[] = []
  private lateKeys = 0
  private lateTimer: NodeJS.Timeout | undefined
  /** Publishes the keys unproven {@link UNPROVEN_MS} after their failure. */
  private unprovenTimer: NodeJS.Timeout | undefined
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
    const since = Date.now()
    for (const key of keys) {
      this.keys.delete(key)
      this.overdue.delete(key)
      this.keys.set(key, { since })
      this.reads.holdUncertain(key)
    }
    if (this.keys.size > MOST_UNCERTAIN_KEYS) this.overflow()
    this.waitMs = FIRST_MS
    this.schedule()
    if (this.unprovenTimer === undefined) this.scheduleUnproven()
  }

  /**
   * The chain closes: the keys still waiting are read once more (for up to {@link CLOSE_WAIT_MS}),
   * then every key waiting or due a late publication is published, proven or not (those not
   * proven reported as such); resolves once that is handed to the bus. Nothing is asked or told after.
   */
  async close(): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    this.clearTimers()
    let timeout: NodeJS.Timeout | undefined
    const given = new Promise<void>((resolve) => {
      timeout = setTimeout(resolve, CLOSE_WAIT_MS)
    })
    await Promise.race([given, this.proveAll()])
    clearTimeout(timeout)
    const unproven = [...this.keys.keys()]
    const rest = [...this.late.flatMap((batch) => batch.keys), ...this.overdue.keys(), ...unproven]
    this.forget()
    if (unproven.length > 0)
      this.reportUnproven(
        unproven,
        `the level did not answer reads of them within ${CLOSE_WAIT_MS} ms as the chain closes`,
      )
    if (rest.length > 0) await this.settled(rest).catch(() => {})
  }

  /** Drops everything, publishing nothing (a chain without a bus closes). */
  stop(): void {
    this.stopped = true
    this.clearTimers()
    this.forget()
  }

  /** Forgets every key: waiting (its reads released), published without proof, due a late publication. */
  private forget(): void {
    for (const key of this.keys.keys()) this.reads.releaseUncertain(key)
    this.keys.clear()
    this.cursor = undefined
    this.overdue.clear()
    this.overdueCursor = undefined
    this.late = []
    this.lateKeys = 0
  }

  private clearTimers(): void {
    clearTimeout(this.timer)
    clearTimeout(this.lateTimer)
    clearTimeout(this.unprovenTimer)
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
    if (this.timer !== undefined || this.asking || this.stopped) return
    if (this.keys.size === 0 && this.overdue.size === 0) return
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
   * One round: reads up to {@link PER_ROUND} keys, from where the last round stopped, on the
   * shared level, each its own call (no breaker, no counters of reads): the keys waiting first,
   * then those published without proof; tells the keys it answered for.
   */
  private async ask(): Promise<void> {
    const round: [string, Waiting][] = []
    this.cursor = fillRound(round, this.cursor ?? this.keys.entries())
    const waiting = round.length
    this.dropOverdue(Date.now() - LATE_PROOF_MS)
    if (round.length < PER_ROUND && this.overdue.size > 0)
      this.overdueCursor = fillRound(round, this.overdueCursor ?? this.overdue.entries())
    const outcomes = await Promise.allSettled(round.map(([key]) => this.shared.backend.has(key)))
    const done: string[] = []
    let failed: { key: string; error: unknown } | undefined
    let overdueFailed = false
    for (let i = 0; i < round.length; i++) {
      const [key, entry] = round[i]!
      const from = i < waiting ? this.keys : this.overdue
      // Failed again since this read was sent (the read proves nothing of the new failure),
      // published meanwhile without proof, or past its bound.
      if (from.get(key) !== entry) continue
      const outcome = outcomes[i]!
      if (outcome.status === 'rejected') {
        // A key published without proof was reported then: its reads failing again are not.
        if (i < waiting) failed ??= { key, error: outcome.reason }
        else overdueFailed = true
        continue
      }
      from.delete(key)
      if (i < waiting) this.reads.releaseUncertain(key)
      done.push(key)
    }
    if (failed !== undefined) this.health.unproven(this.shared, failed.key, failed.error)
    else if (!overdueFailed) this.health.proven(this.shared)
    const ok = failed === undefined && !overdueFailed
    this.waitMs = ok ? FIRST_MS : Math.min(this.waitMs * 2, MOST_MS)
    if (done.length === 0) return
    await this.settled(done).catch(() => {})
    if (!this.stopped) this.publishLate(done)
  }

  /** At the oldest key's {@link UNPROVEN_MS}: publishes the keys unproven that long. */
  private scheduleUnproven(): void {
    const oldest = this.keys.values().next()
    if (oldest.done || this.stopped) return
    this.unprovenTimer = setTimeout(
      () => {
        this.unprovenTimer = undefined
        const out: string[] = []
        const by = Date.now() - UNPROVEN_MS
        for (const [key, waiting] of this.keys) {
          if (waiting.since > by) break
          out.push(key)
        }
        this.giveUp(out, `they were not proven within ${UNPROVEN_MS} ms of the failure`)
        this.scheduleUnproven()
      },
      Math.max(0, oldest.value.since + UNPROVEN_MS - Date.now()),
    )
    this.unprovenTimer.unref?.()
  }

  /** Past {@link MOST_UNCERTAIN_KEYS}: the oldest keys are published now, without proof. */
  private overflow(): void {
    const out: string[] = []
    for (const key of this.keys.keys()) {
      if (this.keys.size - out.length <= MOST_UNCERTAIN_KEYS) break
      out.push(key)
    }
    this.giveUp(out, `more than ${MOST_UNCERTAIN_KEYS} keys wait for their proof: these are the oldest`)
  }

  /**
   * Publishes `keys` (waiting, oldest first) without proof, and reports them; they are still read,
   * and published again once proven (see {@link overdue}).
   */
  private giveUp(keys: string[], why: string): void {
    if (keys.length === 0) return
    for (const key of keys) {
      this.overdue.set(key, this.keys.get(key)!)
      this.keys.delete(key)
      this.reads.releaseUncertain(key)
    }
    this.reportUnproven(keys, why)
    void this.settled(keys).catch(() => {})
    if (this.overdue.size > MOST_LATE_KEYS) this.overdueOverflow()
    this.schedule()
  }

  /** Stops reading the keys published without proof whose failure is older than `by` (epoch ms). */
  private dropOverdue(by: number): void {
    for (const [key, entry] of this.overdue) {
      if (entry.since > by) break
      this.overdue.delete(key)
    }
  }

  /** Past {@link MOST_LATE_KEYS} keys published without proof: the oldest are no longer read, and that is reported. */
  private overdueOverflow(): void {
    const out: string[] = []
    for (const key of this.overdue.keys()) {
      if (this.overdue.size - out.length <= MOST_LATE_KEYS) break
      out.push(key)
    }
    for (const key of out) this.overdue.delete(key)
    const message = `more than ${MOST_LATE_KEYS} keys published without proof wait for it: the ${out.length} oldest are no longer read (a write landing after now is not covered)`
    this.health.unproven(this.shared, out[0]!, this.error(message))
  }

  /** Counted once per key (`stats.errors`), one `republish` error event naming the first. */
  private reportUnproven(keys: string[], why: string): void {
    const message = `${keys.length} key(s) whose writes it failed are published again without proof: ${why} (they are still read, and published again once proven, for up to ${LATE_PROOF_MS / 1000} s after the failure)`
    this.health.unproven(this.shared, keys[0]!, this.error(message), keys.length)
  }

  private error(message: string): CacheError {
    const { index, name } = this.shared
    return new CacheError(`multi-level: level ${index + 1} (${name}): ${message}`)
  }

  /** Publishes `keys` once more {@link LATE_REPUBLISH_MS} from now. */
  private publishLate(keys: string[]): void {
    this.late.push({ keys, due: Date.now() + LATE_REPUBLISH_MS })
    this.lateKeys += keys.length
    if (this.lateKeys > MOST_LATE_KEYS) this.lateOverflow()
    if (this.lateTimer === undefined) this.scheduleLate()
  }

  /** Past {@link MOST_LATE_KEYS}: the oldest batches are published now, early, and reported. */
  private lateOverflow(): void {
    const out: string[] = []
    while (this.lateKeys > MOST_LATE_KEYS) {
      const batch = this.late.shift()!
      this.lateKeys -= batch.keys.length
      for (const key of batch.keys) out.push(key)
    }
    const message = `more than ${MOST_LATE_KEYS} keys wait to be published once more ${LATE_REPUBLISH_MS} ms after their proof: the ${out.length} oldest are published now, early (a write an intermediary still holds is not covered)`
    this.health.unproven(this.shared, out[0]!, this.error(message), out.length)
    void this.settled(out).catch(() => {})
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
      for (const key of batch.keys) keys.push(key)
    }
    if (keys.length > 0) void this.settled(keys).catch(() => {})
  }
}

/**
 * Adds entries from `cursor` to `round` up to {@link PER_ROUND}; gives the cursor to go on from,
 * or `undefined` once it ran out (the next round starts from the oldest again).
 */
function fillRound(
  round: [string, Waiting][],
  cursor: MapIterator<[string, Waiting]>,
): MapIterator<[string, Waiting]> | undefined {
  while (round.length < PER_ROUND) {
    const next = cursor.next()
    if (next.done) return undefined
    round.push(next.value)
  }
  return cursor
}
