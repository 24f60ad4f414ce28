import type { CacheObserver } from '@cache/core/backend'
import { type InvalidationBus, type InvalidationMessage, newOrigin } from './bus.js'
import { isCallerError } from './caller-error.js'
import { isSkipped, type LevelHealth } from './health.js'
import type { Level } from './level.js'
import type { ReadGuards } from './read-guard.js'
import { UncertainWrites } from './uncertain-writes.js'
import type { WriteOrder } from './write-order.js'
import type { LevelWriter } from './writes.js'

/**
 * A chain's side of the invalidation bus: announces its writes to other processes, and evicts
 * what they wrote from its faster levels (never the shared, slowest one).
 */
export class ChainInvalidation {
  private readonly origin = newOrigin()
  private readonly unsubscribe: (() => void) | undefined
  private readonly uncertain: UncertainWrites

  constructor(
    private readonly bus: InvalidationBus | undefined,
    private readonly namespace: string,
    private readonly levels: readonly Level[],
    private readonly reads: ReadGuards,
    private readonly order: WriteOrder,
    private readonly writer: LevelWriter,
    private readonly health: LevelHealth,
    private readonly observer: CacheObserver,
  ) {
    const shared = levels[levels.length - 1]!
    this.uncertain = new UncertainWrites(shared, reads, health, async (keys) => {
      await this.publishHanded({ keys })
      // While the shared level is skipped, the faster levels hold this process's writes of the
      // keys, repaired there (and told) once it is back: they stay.
      if (shared.closed) await this.writer.dropFaster(levels.length - 1, keys)
    })
    this.unsubscribe = this.bus?.subscribe(
      (message) => this.onMessage(message),
      () => this.onResync(),
    )
  }

  /** Queues the message; the write does not wait for it (see the README for the semantics). */
  publish(message: Omit<InvalidationMessage, 'origin' | 'namespace'>): void {
    if (this.bus === undefined || this.levels.length < 2) return
    let sent: Promise<void>
    try {
      sent = Promise.resolve(this.bus.publish({ origin: this.origin, namespace: this.namespace, ...message }))
    } catch (error) {
      sent = Promise.reject(error)
    }
    sent.catch((error) => {
      this.observer.stats.errors++
      this.health.emit('error', { backend: 'bus', operation: 'publish', error })
    })
  }

  /**
   * Runs a write; if it fails, tells the other processes anyway before rethrowing: it was sent to
   * the shared level, which may have applied it (a timeout does not say) or part of it (a batch
   * whose other keys it refused, a `NOPERM` among them), and they must not go on serving what it
   * replaced. Only a write known never sent there (skipped while its breaker is open, or `unsent`)
   * is not told: nothing changed there.
   */
  async toldEvenIfFailed<R>(
    message: Omit<InvalidationMessage, 'origin' | 'namespace'>,
    write: () => Promise<R>,
  ): Promise<R> {
    try {
      return await write()
    } catch (error) {
      // Skipped by the shared level (known never sent): nothing changed there, nothing to tell.
      if (!isSkipped(error)) await this.toldFailed(message.keys ?? [], error)
      throw error
    }
  }

  /**
   * Tells the other processes of a write of `keys` the shared level failed or refused (sent), now
   * (before the caller hears of it) and, if it failed (no answer: it may still be applied or undone
   * there), again once the level has answered a read of them issued after it (see
   * {@link UncertainWrites}).
   */
  async toldFailed(keys: readonly string[], error: unknown): Promise<void> {
    if (keys.length > 0 && this.levels.length > 1 && !isCallerError(error)) this.uncertain.add(keys)
    await this.publishHanded({ keys: [...keys] })
  }

  /**
   * {@link publish}, resolving once the message is handed to the connection: for a write that
   * failed, before the caller hears of it, so that a process exiting on the error (Redis frozen,
   * the PUBLISH waiting in the kernel) has still told the others.
   */
  async publishHanded(message: Omit<InvalidationMessage, 'origin' | 'namespace'>): Promise<void> {
    this.publish(message)
    await this.bus?.handed?.().catch(() => {})
  }

  /**
   * Publishes the keys of writes the shared level failed that wait for their proof (see
   * {@link UncertainWrites.close}: up to 2 s), so that a process closing right after a failed
   * write still tells the others; resolves once that is handed to the bus.
   */
  async settle(): Promise<void> {
    if (this.bus === undefined || this.levels.length < 2) this.uncertain.stop()
    else await this.uncertain.close()
  }

  /** Stops receiving messages; the bus itself is not closed. */
  close(): void {
    this.uncertain.stop()
    this.unsubscribe?.()
  }

  /**
   * Told whenever this chain drops keys (`undefined`: everything) from its faster levels for
   * another process's write or for messages that may have been lost: a chain this one is a level
   * of drops them from its own faster levels too, which may have copied them from this chain's.
   */
  readonly dropListeners = new Set<(keys: readonly string[] | undefined) => void>()

  /** Another process wrote: drop the keys (or everything) from every level but the shared one. */
  private onMessage(message: InvalidationMessage): void {
    if (message.origin === this.origin || message.namespace !== this.namespace) return
    if (message.clear) this.onResync()
    else this.droppedElsewhere(message.keys ?? [])
  }

  /**
   * A chain that is a level of this one dropped `keys` (`undefined`: everything) from its faster
   * levels for another process's write: this one's faster levels may hold copies of them.
   */
  droppedElsewhere(keys: readonly string[] | undefined): void {
    if (keys === undefined) {
      this.onResync()
      return
    }
    for (const key of keys) {
      this.reads.invalidate(key)
      this.order.changedElsewhere(key)
    }
    for (const level of this.levels.slice(0, -1))
      void this.writer.evict(level, keys.length === 1 ? keys[0]! : keys)
    for (const listener of this.dropListeners) listener(keys)
  }

  /** Messages may have been lost: nothing in the faster levels can be trusted any more. */
  private onResync(): void {
    for (const listener of this.dropListeners) listener(undefined)
    this.reads.invalidateAll()
    this.order.clearedElsewhere()
    for (const level of this.levels.slice(0, -1)) {
      if (!level.closed) {
        level.missedClear()
        continue
      }
      level.backend.clear().catch((error) => {
        level.missedClear()
        this.health.failed(level, 'clear', error, undefined, false)
      })
    }
  }
}
