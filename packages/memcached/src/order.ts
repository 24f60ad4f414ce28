/**
 * Call order per key, for calls that take more than one round trip (incr, atomicUpdate, add,
 * compareAndDelete): requests leave in the order they were made, but such a call sends its later
 * requests only once earlier answers are in, and calls made after it would overtake it. While one
 * is pending on a key, later calls on that key wait until it settles, then go out in call order.
 * With none pending (the common case), a call goes out at once: a lookup in an empty map.
 */
export class CallOrder {
  /** Per key: settles once the last multi-step call on it (and whatever waited before it) settled. */
  private readonly tails = new Map<unknown, Promise<void>>()

  /** True while a multi-step call is pending on some key. */
  get busy(): boolean {
    return this.tails.size > 0
  }

  /** Runs a call of several round trips on `key` after every earlier pending one; later calls wait for it. */
  exclusive<R>(key: unknown, run: () => Promise<R>): Promise<R> {
    const before = this.tails.get(key)
    const result = before === undefined ? start(run) : before.then(run)
    this.queue(key, result.then(nothing, nothing))
    return result
  }

  /**
   * Runs a one-request call on `keys`: at once, unless a multi-step call on one of them is pending.
   * Then it goes out once they settled, and later calls on its keys go out after it (its request
   * written first is enough: the server answers in order).
   */
  after<R>(keys: readonly unknown[] | unknown, run: () => Promise<R>): Promise<R> {
    if (this.tails.size === 0) return run()
    const many = Array.isArray(keys)
    let waits: Promise<void>[] | undefined
    for (const key of many ? keys : [keys]) {
      const tail = this.tails.get(key)
      if (tail !== undefined && !waits?.includes(tail)) (waits ??= []).push(tail)
    }
    if (waits === undefined) return run()
    const wait = waits.length === 1 ? waits[0]! : Promise.all(waits)
    let sent!: () => void
    const written = new Promise<void>((resolve) => {
      sent = resolve
    })
    const result = wait.then(() => {
      try {
        return run()
      } finally {
        sent()
      }
    })
    for (const key of many ? keys : [keys]) this.queue(key, written)
    return result
  }

  private queue(key: unknown, tail: Promise<void>): void {
    this.tails.set(key, tail)
    tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key)
    })
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
