/**
 * Runs tasks one at a time per key, in arrival order, within this process. Used for in-process
 * `atomicUpdate`/`incr` (memory backend, and the fallbacks for custom backends).
 */
export class KeyedQueue {
  private readonly tails = new Map<string, Promise<unknown>>()

  run<T>(key: string, task: () => T | Promise<T>): Promise<T> {
    const previous = this.tails.get(key)
    const result = previous ? previous.then(task, task) : Promise.resolve().then(task)
    const tail = result.then(noop, noop)
    this.tails.set(key, tail)
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key)
    })
    return result
  }

  /** Keys with work queued or running. */
  get size(): number {
    return this.tails.size
  }
}

function noop(): void {}
