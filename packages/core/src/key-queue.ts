/** What the queue knows of one key while it has work. */
interface KeyState {
  /** End of the last read-then-write task: every later task of the key waits for it. */
  tail: Promise<unknown> | undefined
  /** Ends of the plain writes issued since `tail`: the next read-then-write task waits for them. */
  readonly writes: Set<Promise<unknown>>
  /** What the last plain write still waiting to start waits for, and how many plain writes wait. */
  gate: Promise<unknown> | undefined
  waiting: number
  /** Tasks queued or running. */
  pending: number
}

/**
 * Runs read-then-write tasks one at a time per key, in arrival order, within this process. Used for
 * in-process `atomicUpdate`/`incr` (memory backend, and the fallbacks for custom backends).
 *
 * Over a store without atomic primitives such a task reads, then writes: a plain write of the same
 * key landing in between would be acknowledged and then lost. Such a backend sends its plain
 * writes through {@link KeyedQueue.write} (and `clear` through {@link KeyedQueue.writeAll}): a
 * write waits for the tasks queued before it, a task waits for the writes issued before it, so
 * every result is that of some serial order. Plain writes of one key do not wait for each other:
 * they reach the store in the order they were issued, as they would without the queue.
 */
export class KeyedQueue {
  private readonly keys = new Map<string, KeyState>()
  /** End of the last {@link writeAll} task, while it is queued or running: every later task waits for it. */
  private barrier: Promise<unknown> | undefined

  run<T>(key: string, task: () => T | Promise<T>): Promise<T> {
    const state = this.state(key)
    const waits: Promise<unknown>[] = [...state.writes]
    if (state.tail !== undefined) waits.push(state.tail)
    if (this.barrier !== undefined) waits.push(this.barrier)
    const result =
      waits.length === 0
        ? Promise.resolve().then(task)
        : (waits.length === 1 ? waits[0]! : Promise.all(waits)).then(task)
    // Later tasks wait for this one, which waits for the writes before it.
    state.writes.clear()
    const done = settled(result)
    state.tail = done
    this.track([key], done)
    return result
  }

  /**
   * Runs a plain write of `keys` after the read-then-write tasks queued for any of them (and any
   * `writeAll`), before those queued later. Starts at once, in the caller's tick, when nothing
   * is queued before it, so an uncontended write costs no extra turn of the event loop.
   */
  write<T>(keys: readonly string[], task: () => Promise<T>): Promise<T> {
    const waits = new Set<Promise<unknown>>()
    if (this.barrier !== undefined) waits.add(this.barrier)
    const unique = [...new Set(keys)]
    const states = unique.map((key) => this.state(key))
    for (const state of states) {
      if (state.tail !== undefined) waits.add(state.tail)
      // A write issued earlier that is still waiting starts first.
      if (state.waiting > 0) waits.add(state.gate!)
    }
    let result: Promise<T>
    if (waits.size === 0) result = start(task)
    else {
      const gate = waits.size === 1 ? [...waits][0]! : Promise.all(waits)
      for (const state of states) {
        state.gate = gate
        state.waiting++
      }
      result = gate.then(() => {
        for (const state of states) state.waiting--
        return task()
      })
    }
    const done = settled(result)
    for (const state of states) state.writes.add(done)
    void done.then(() => {
      for (const state of states) state.writes.delete(done)
    })
    this.track(unique, done)
    return result
  }

  /**
   * Runs a write of every key (a `clear`) after every task and write already issued, and before
   * every one issued later.
   */
  writeAll<T>(task: () => Promise<T>): Promise<T> {
    const waits: Promise<unknown>[] = []
    if (this.barrier !== undefined) waits.push(this.barrier)
    for (const state of this.keys.values()) {
      if (state.tail !== undefined) waits.push(state.tail)
      waits.push(...state.writes)
    }
    const result = waits.length === 0 ? start(task) : Promise.all(waits).then(task)
    const done = settled(result)
    this.barrier = done
    void done.then(() => {
      if (this.barrier === done) this.barrier = undefined
    })
    return result
  }

  /** Keys with work queued or running. */
  get size(): number {
    return this.keys.size
  }

  private state(key: string): KeyState {
    let state = this.keys.get(key)
    if (state === undefined) {
      state = { tail: undefined, writes: new Set(), gate: undefined, waiting: 0, pending: 0 }
      this.keys.set(key, state)
    }
    return state
  }

  /** Counts `done` as work of `keys`, and forgets a key when its last work ends. */
  private track(keys: readonly string[], done: Promise<unknown>): void {
    for (const key of keys) this.keys.get(key)!.pending++
    void done.then(() => {
      for (const key of keys) {
        const state = this.keys.get(key)!
        if (state.tail === done) state.tail = undefined
        if (--state.pending === 0) this.keys.delete(key)
      }
    })
  }
}

/** Calls `task` now; a synchronous throw becomes a rejection. */
function start<T>(task: () => Promise<T>): Promise<T> {
  try {
    return task()
  } catch (error) {
    return Promise.reject(error)
  }
}

/** Resolves when `result` settles, whichever way. */
function settled(result: Promise<unknown>): Promise<void> {
  return result.then(noop, noop)
}

function noop(): void {}
