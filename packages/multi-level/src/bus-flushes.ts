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
 * count says which; a flush rejects if any of its messages failed, or any that failed before it
 * was called and no earlier flush rejected for.
 */
export class Flushes {
  /** Messages sent or failed so far. */
  private settled = 0
  private waiters: Waiter[] = []
  /** Messages that failed after every flush waiting then was due: the next flush rejects for them. */
  private unreported = 0
  private unreportedError: unknown

  /**
   * Resolves once the first `published` messages are settled; rejects if any of them failed that
   * no earlier flush rejected for.
   */
  wait(published: number): Promise<void> {
    const unsent = this.unreported
    const error = this.unreportedError
    this.unreported = 0
    this.unreportedError = undefined
    if (this.settled >= published)
      return unsent === 0 ? Promise.resolve() : Promise.reject(notSent(unsent, error))
    return new Promise((resolve, reject) =>
      this.waiters.push({ from: this.settled, upTo: published, unsent, error, resolve, reject }),
    )
  }

  /** The next `count` messages were sent (`error` undefined) or failed. */
  settle(count: number, error: unknown): void {
    const start = this.settled
    this.settled += count
    let told = 0
    const due: Waiter[] = []
    this.waiters = this.waiters.filter((waiter) => {
      const overlap = Math.min(this.settled, waiter.upTo) - Math.max(start, waiter.from)
      if (error !== undefined && overlap > 0) {
        waiter.unsent += overlap
        waiter.error = error
        told = Math.max(told, overlap)
      }
      if (waiter.upTo > this.settled) return true
      due.push(waiter)
      return false
    })
    // Every waiter's range starts at or before `start`: the failed messages past the largest
    // overlap were published after every flush waiting now was called.
    if (error !== undefined && count > told) {
      this.unreported += count - told
      this.unreportedError = error
    }
    for (const waiter of due) {
      if (waiter.unsent === 0) waiter.resolve()
      else waiter.reject(notSent(waiter.unsent, waiter.error))
    }
  }
}

function notSent(unsent: number, error: unknown): CacheUnavailableError {
  return new CacheUnavailableError(
    'bus',
    `invalidation bus: ${unsent} message(s) queued before flush() were not sent (${describeError(error)}); the other processes were not told of those writes`,
    { cause: error },
  )
}

export function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}
