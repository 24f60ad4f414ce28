/** What the queue knows of one key while it has work. */
interface KeyState {
  /** End of the last read-then-write task: every later task of the key waits for it. */
  tail: Promise<unknown> | undefined
  /** Read-then-write tasks and delayed plain writes queued or running. */
  pending: number
  /** Ends of the plain writes that had to wait, issued since `tail`. */
  writes: Set<Promise<unknown>> | undefined
  /** What the last plain write still waiting to start waits for, and how many plain writes wait. */
  gate: Promise<unknown> | undefined
  waiting: number
}

/** Plain writes that started at once, counted together whatever their key (a map entry per write would cost more than the write). */
class Epoch {
  running = 0
  /** Resolves when `running` drops to 0; set when a task has to wait for these writes. */
  onDrained: (() => void) | undefined
  /** Called as each write ends; one function per epoch, not one per write. */
  readonly end = (): void => {
    if (--this.running === 0) this.onDrained?.()
  }
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
  /** The writes started at once since a task last had to wait for such writes. */
  private epoch = new Epoch()
  /** Resolves when every write started at once before the current epoch has ended. */
  private drained: Promise<void> | undefined

  run<T>(key: string, task: () => T | Promise<T>): Promise<T> {
    const state = this.state(key)
    const waits: Promise<unknown>[] = []
    this.before(state, waits)
    this.afterStartedWrites(waits)
    if (this.barrier !== undefined) waits.push(this.barrier)
    const result =
      waits.length === 0
        ? Promise.resolve().then(task)
        : (waits.length === 1 ? waits[0]! : Promise.all(waits)).then(task)
    // Later work waits for this task, which waits for the writes before it.
    state.writes = undefined
    const done = settled(result)
    state.tail = done
    state.pending++
    void done.then(() => {
      if (state.tail === done) state.tail = undefined
      state.pending--
      this.release(key, state)
    })
    return result
  }

  /**
   * Runs a plain write of `keys` after the read-then-write tasks queued for any of them (and any
   * `writeAll`), before those queued later. Starts at once, in the caller's tick, when nothing
   * is queued before it, so an uncontended write costs no extra turn of the event loop.
   */
  write<T>(keys: readonly string[], task: () => Promise<T>): Promise<T> {
    let free = this.barrier === undefined
    for (let i = 0; free && i < keys.length; i++) {
      const state = this.keys.get(keys[i]!)
      if (state !== undefined && (state.tail !== undefined || state.waiting > 0)) free = false
    }
    return free ? this.writeNow(task) : this.writeLater(keys, task)
  }

  /**
   * Runs a write of every key (a `clear`) after every task and write already issued, and before
   * every one issued later.
   */
  writeAll<T>(task: () => Promise<T>): Promise<T> {
    const waits: Promise<unknown>[] = []
    if (this.barrier !== undefined) waits.push(this.barrier)
    for (const state of this.keys.values()) this.before(state, waits)
    this.afterStartedWrites(waits)
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

  /**
   * Nothing is queued before it: starts now. Counted in the current epoch until it ends, so that
   * a task issued meanwhile on its key waits for it.
   */
  private writeNow<T>(task: () => Promise<T>): Promise<T> {
    const epoch = this.epoch
    epoch.running++
    const result = start(task)
    result.then(epoch.end, epoch.end)
    return result
  }

  /**
   * Adds to `waits` the end of every write started at once so far (whatever its key: a little
   * more waiting than needed, for writes already in flight only). Closes the epoch, so that the
   * writes started later are not waited for, and a steady stream of them cannot starve the task.
   */
  private afterStartedWrites(waits: Promise<unknown>[]): void {
    const epoch = this.epoch
    if (epoch.running > 0) {
      const ended = new Promise<void>((resolve) => {
        epoch.onDrained = resolve
      })
      this.drained = this.drained === undefined ? ended : Promise.all([this.drained, ended]).then(noop)
      this.epoch = new Epoch()
    }
    if (this.drained !== undefined) {
      waits.push(this.drained)
      // Forget it once it has resolved, unless a later epoch was chained onto it meanwhile.
      const drained = this.drained
      void drained.then(() => {
        if (this.drained === drained) this.drained = undefined
      })
    }
  }

  private writeLater<T>(keys: readonly string[], task: () => Promise<T>): Promise<T> {
    const unique = keys.length === 1 ? keys : [...new Set(keys)]
    const states = unique.map((key) => this.state(key))
    const waits = new Set<Promise<unknown>>()
    if (this.barrier !== undefined) waits.add(this.barrier)
    for (const state of states) {
      if (state.tail !== undefined) waits.add(state.tail)
      // A write issued earlier that is still waiting starts first.
      if (state.waiting > 0) waits.add(state.gate!)
    }
    const gate = waits.size === 1 ? [...waits][0]! : Promise.all(waits)
    for (const state of states) {
      state.gate = gate
      state.waiting++
    }
    const result = gate.then(() => {
      for (const state of states) state.waiting--
      return task()
    })
    const done = settled(result)
    for (const state of states) {
      state.pending++
      ;(state.writes ??= new Set()).add(done)
    }
    void done.then(() => {
      for (const [i, state] of states.entries()) {
        state.writes?.delete(done)
        state.pending--
        this.release(unique[i]!, state)
      }
    })
    return result
  }

  /** Adds to `waits` what work issued now on this key must wait for. */
  private before(state: KeyState, waits: Promise<unknown>[]): void {
    if (state.tail !== undefined) waits.push(state.tail)
    if (state.writes !== undefined) waits.push(...state.writes)
  }

  private state(key: string): KeyState {
    let state = this.keys.get(key)
    if (state === undefined) {
      state = {
        tail: undefined,
        pending: 0,
        writes: undefined,
        gate: undefined,
        waiting: 0,
      }
      this.keys.set(key, state)
    }
    return state
  }

  /** Forgets a key when its last work ends. */
  private release(key: string, state: KeyState): void {
    if (state.pending === 0 && this.keys.get(key) === state) this.keys.delete(key)
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
