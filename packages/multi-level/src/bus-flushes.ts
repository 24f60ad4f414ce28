import { CacheUnavailableError } from '@cache/core'

/** A `flush()` waiting for the messages numbered `from` to `upTo` (exclusive) to be settled. */
interface Waiter {
  from: number
  upTo: number
  unsent: number
  error?: unknown
  resolve: () => void
  reject: (error: unknown) => void
}

/**
 * What `bus.flush()` waits for: the messages published so far, each sent or failed. Messages are
 * settled in the order they were published (one batch with messages in flight at a time), so a
 * count says which; a flush rejects if any of its messages failed.
 */
export class Flushes {
  /** Messages sent or failed so far. */
  private settled = 0
  private waiters: Waiter[] = []

  /** Resolves once the first `published` messages are settled; rejects if any of them failed. */
  wait(published: number): Promise<void> {
    if (this.settled >= published) return Promise.resolve()
    return new Promise((resolve, reject) =>
      this.waiters.push({ from: this.settled, upTo: published, unsent: 0, resolve, reject }),
    )
  }

  /** The next `count` messages were sent (`error` undefined) or failed. */
  settle(count: number, error: unknown): void {
    const start = this.settled
    this.settled += count
    if (this.waiters.length === 0) return
    const due: Waiter[] = []
    this.waiters = this.waiters.filter((waiter) => {
      const overlap = Math.min(this.settled, waiter.upTo) - Math.max(start, waiter.from)
      if (error !== undefined && overlap > 0) {
        waiter.unsent += overlap
        waiter.error = error
      }
      if (waiter.upTo > this.settled) return true
      due.push(waiter)
      return false
    })
    for (const waiter of due) {
      if (waiter.unsent === 0) waiter.resolve()
      else
        waiter.reject(
          new CacheUnavailableError(
            'bus',
            `invalidation bus: ${waiter.unsent} message(s) queued before flush() were not sent (${describeError(waiter.error)}); the other processes were not told of those writes`,
            { cause: waiter.error },
          ),
        )
    }
  }
}

export function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}
