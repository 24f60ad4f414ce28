import { CacheTimeoutError } from '@cache/core'

/**
 * Call order per key, for calls that take more than one round trip (incr, atomicUpdate, add,
 * compareAndDelete): requests leave in the order they were made, but such a call sends its later
 * requests only once earlier answers are in, and calls made after it would overtake it. While one
 * is pending on a key, later calls on that key wait until it settles, then go out in call order.
 * With none pending (the common case), a call goes out at once: a lookup in an empty map.
 *
 * A waiting call fails with `CacheTimeoutError` without having been sent (nothing it would have
 * written is written) once `timeoutMs` passes with no call on its key settling or being sent: a
 * long queue on a hot key drains as fast as the server answers, and nothing waits for ever behind
 * a call that is stuck (a slow `atomicUpdate` fn, a frozen server). The calls behind it keep
 * their order.
 */
export class CallOrder {
  /** Per key: settles once the calls on it made so far are sent (a multi-step call: settled). */
  private readonly tails = new Map<unknown, Promise<void>>()
  /** Per key: the timers of the calls waiting on it, restarted each time a call on it moves on. */
  private readonly waiting = new Map<unknown, Set<ReturnType<typeof setTimeout>>>()

  constructor(
    private readonly timeoutMs: number,
    /** Counts a call that gave up waiting. */
    private readonly gaveUp: (operation: string, error: unknown, keys: readonly unknown[]) => void,
  ) {}

  /** True while a call on some key waits or a multi-step call is pending. */
  get busy(): boolean {
    return this.tails.size > 0
  }

  /** Runs a call of several round trips on `key` after the calls made before it; later calls wait for it. */
  exclusive<R>(key: unknown, operation: string, run: () => Promise<R>): Promise<R> {
    const before = this.tails.get(key)
    if (before === undefined) {
      const result = start(run)
      this.queue(key, result.then(nothing, nothing))
      return result
    }
    // Later calls wait for this one's outcome if it ran, else (it gave up) for what it waited for.
    let settled!: (running?: Promise<unknown>) => void
    const tail = new Promise<void>((resolve) => {
      settled = (running) =>
        running === undefined
          ? resolve()
          : running.then(
              () => resolve(),
              () => resolve(),
            )
    })
    const result = this.behind(before, [key], operation, run, settled)
    this.queue(key, tail)
    return result
  }

  /**
   * Runs a one-request call on `keys`: at once, unless a call on one of them waits or is pending.
   * Then it goes out once those are sent or settled, and later calls on its keys go out after it
   * (its request written first is enough: the server answers in order).
   */
  after<R>(keys: readonly unknown[] | unknown, operation: string, run: () => Promise<R>): Promise<R> {
    if (this.tails.size === 0) return run()
    const list: readonly unknown[] = Array.isArray(keys) ? keys : [keys]
    let waits: Promise<void>[] | undefined
    for (const key of list) {
      const tail = this.tails.get(key)
      if (tail !== undefined && !waits?.includes(tail)) (waits ??= []).push(tail)
    }
    if (waits === undefined) return run()
    const wait = waits.length === 1 ? waits[0]! : Promise.all(waits).then(nothing)
    // Settles once this call is sent, whatever it answers: a tail never rejects (a failed call
    // must not stop the calls behind it, nor be reported as unhandled).
    let sent!: () => void
    const written = new Promise<void>((resolve) => {
      sent = () => resolve()
    })
    const result = this.behind(wait, list, operation, run, sent)
    for (const key of list) this.queue(key, written)
    return result
  }

  /**
   * `run` once `wait` settles, unless `timeoutMs` passes first with no call on `keys` moving on:
   * then the call fails unsent. `sent` is called once `run` was called or would have been (the
   * order of later calls).
   */
  private behind<R>(
    wait: Promise<void>,
    keys: readonly unknown[],
    operation: string,
    run: () => Promise<R>,
    sent: (running?: Promise<unknown>) => void = nothing,
  ): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      let expired = false
      const timer = setTimeout(() => {
        expired = true
        this.unwatch(keys, timer)
        const error = new CacheTimeoutError(
          'memcached',
          `${operation} (not sent: still waiting for an earlier call on the same key)`,
          this.timeoutMs,
          { unsent: true },
        )
        this.gaveUp(operation, error, keys)
        reject(error)
      }, this.timeoutMs)
      timer.unref?.()
      this.watch(keys, timer)
      wait.then(() => {
        clearTimeout(timer)
        if (expired) return sent()
        this.unwatch(keys, timer)
        const running = start(run)
        sent(running)
        running.then(resolve, reject)
      })
    })
  }

  private queue(key: unknown, tail: Promise<void>): void {
    this.tails.set(key, tail)
    tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key)
      // A call on the key moved on: those waiting on it get their whole timeout again.
      const timers = this.waiting.get(key)
      if (timers !== undefined) for (const timer of timers) timer.refresh()
    })
  }

  private watch(keys: readonly unknown[], timer: ReturnType<typeof setTimeout>): void {
    for (const key of keys) {
      let timers = this.waiting.get(key)
      if (timers === undefined) this.waiting.set(key, (timers = new Set()))
      timers.add(timer)
    }
  }

  private unwatch(keys: readonly unknown[], timer: ReturnType<typeof setTimeout>): void {
    for (const key of keys) {
      const timers = this.waiting.get(key)
      if (timers === undefined) continue
      timers.delete(timer)
      if (timers.size === 0) this.waiting.delete(key)
    }
  }
}

function start<R>(run: () => Promise<R>): Promise<R> {
  try {
    return run()
  } catch (error) {
    return Promise.reject(error)
  }
}

function nothing(): void {}
