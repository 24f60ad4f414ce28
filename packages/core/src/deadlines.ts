/*
 * Time limits and compare-and-set retries, written once for every backend: a backend says what
 * one attempt is and what its time limit means; the timers, their clearing and the retry count
 * live here.
 */
import { CacheConflictError } from './errors.js'

/**
 * `work`'s result, or a rejection with `timedOut()` when it has not settled within `ms`
 * milliseconds. The timer is cleared as soon as `work` settles; `work` itself is not cancelled
 * (a command already sent may still apply: the caller's error says it timed out, not that it
 * failed).
 */
export function withTimeout<T>(work: Promise<T>, ms: number, timedOut: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(timedOut()), ms)
    work.then(
      (value) => {
        clearTimeout(timer)
        resolve(value)
      },
      (error: unknown) => {
        clearTimeout(timer)
        reject(error)
      },
    )
  })
}

/**
 * Waits for `work` at most `ms` milliseconds: its value, or `undefined` when the time ran out
 * first. For waits whose end is not an error (a connection that may come back, a socket that
 * closes late). With `hold: false` the timer does not keep the process alive.
 */
export function waitAtMost<T>(work: Promise<T>, ms: number, hold = true): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const expired = new Promise<undefined>((resolve) => {
    timer = setTimeout(resolve, ms, undefined)
    if (!hold) timer.unref()
  })
  return Promise.race([work, expired]).finally(() => clearTimeout(timer))
}

/** What one attempt of {@link retryConflicts} returns when another writer got there first. */
export const CONFLICT: unique symbol = Symbol('@cache/core:conflict')

export interface RetryConflictsOptions {
  /** Attempts before giving up with `CacheConflictError`. */
  maxAttempts: number
  /**
   * Milliseconds to wait before attempt `n + 1` after attempt `n` conflicted, or 0 to retry at
   * once. Default: a random pause under `min(n, 10)` ms, so writers from several processes spread
   * out instead of colliding again.
   */
  pause?: (attempt: number) => number
}

const spread = (attempt: number): number => Math.random() * Math.min(attempt, 10)

/**
 * The optimistic read-modify-write loop of every backend: runs `attempt(1)`, `attempt(2)`… until
 * one returns something other than {@link CONFLICT}, pausing between attempts; after
 * `maxAttempts` conflicts, rejects with `CacheConflictError` naming `key`. An error thrown by an
 * attempt ends the loop with that error.
 */
export async function retryConflicts<R>(
  key: string,
  options: RetryConflictsOptions,
  attempt: (n: number) => Promise<R | typeof CONFLICT>,
): Promise<R> {
  const pause = options.pause ?? spread
  for (let n = 1; ; n++) {
    const result = await attempt(n)
    if (result !== CONFLICT) return result
    if (n >= options.maxAttempts) throw new CacheConflictError(key, n)
    const ms = pause(n)
    if (ms > 0) await new Promise((resolve) => setTimeout(resolve, ms))
  }
}
