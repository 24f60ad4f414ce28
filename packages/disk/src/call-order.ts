import { AsyncLocalStorage } from 'node:async_hooks'

/**
 * One operation as those issued after it see it. `placed`: a write has joined a group commit, or
 * any other operation has finished; a write issued after it may then join a batch (the same one
 * or a later one, so it is applied after). `done`: finished (committed, or failed); an operation
 * that reads issued after it may then run.
 */
export class Turn {
  placed = false
  done = false
  private whenPlaced: (() => void)[] | undefined
  private whenDone: (() => void)[] | undefined

  /** `keys`: the keys it is the latest operation of; undefined for a whole-namespace operation. */
  constructor(readonly keys: readonly string[] | undefined) {}

  on(event: 'placed' | 'done', callback: () => void): void {
    if (event === 'placed' ? this.placed : this.done) callback()
    else if (event === 'placed') (this.whenPlaced ??= []).push(callback)
    else (this.whenDone ??= []).push(callback)
  }

  place(): void {
    if (this.placed) return
    this.placed = true
    if (this.whenPlaced !== undefined) dispatch(this.whenPlaced)
    this.whenPlaced = undefined
  }

  finish(): void {
    this.place()
    this.done = true
    if (this.whenDone !== undefined) dispatch(this.whenDone)
    this.whenDone = undefined
  }
}

/**
 * Runs callbacks one after the other, never nested: a callback that places or finishes another
 * turn queues that turn's callbacks here, so a long chain of operations on one key cannot grow
 * the stack.
 */
const callbacks: (() => void)[] = []
let dispatching = false
function dispatch(more: readonly (() => void)[]): void {
  for (const callback of more) callbacks.push(callback)
  if (dispatching) return
  dispatching = true
  try {
    for (let i = 0; i < callbacks.length; i++) {
      try {
        callbacks[i]!()
      } catch (error) {
        // A bug, not an outcome: surface it, and still run the callbacks queued after it.
        queueMicrotask(() => {
          throw error
        })
      }
    }
  } finally {
    callbacks.length = 0
    dispatching = false
  }
}

/** Calls `callback` once every turn in `turns` has reached `event`. */
function afterAll(turns: readonly Turn[], event: 'placed' | 'done', callback: () => void): void {
  let left = turns.length
  const one = () => {
    if (--left === 0) callback()
  }
  for (const turn of turns) turn.on(event, one)
}

const NONE: readonly Turn[] = []

/**
 * Call order within one backend: every operation takes effect in the order it was called, as if
 * each had been awaited before the next, while operations on different keys run side by side.
 * Operations an `atomicUpdate`'s `fn` calls are not queued (they would wait for that `fn`).
 */
export class CallOrder {
  /**
   * The latest operation issued on each key that has not finished: an operation on the key issued
   * next waits for it (see `placeWrite` and `inOrder`). Empty when nothing is pending.
   */
  private readonly tails = new Map<string, Turn>()
  /** The latest whole-namespace operation (clear, keys, usage, prune) not finished: everything issued after it waits for it. */
  private barrier: Turn | undefined
  /** Set while an `atomicUpdate` runs its `fn`: operations `fn` calls are not queued (they would wait for `fn`). */
  private readonly updating = new AsyncLocalStorage<true>()

  /** True when no operation is waiting or in progress: anything may run at once. */
  idle(): boolean {
    return this.tails.size === 0 && this.barrier === undefined
  }

  /** Runs an `atomicUpdate`'s `fn`: the operations it calls run at once. */
  runUpdate<R>(fn: () => R): R {
    return this.updating.run(true, fn)
  }

  /**
   * Places a write of `key`: `join(turn)` runs at once, unless an operation on the key issued
   * before it has not taken its place yet (a compareAndDelete, incr or atomicUpdate in progress,
   * a read waiting its turn, a write waiting behind one, a clear): then once that one has.
   * The write must `place()` its turn when it joins a batch, and `finish` it once committed.
   */
  placeWrite(key: string, join: (turn: Turn) => void): void {
    const waits = this.idle() ? NONE : this.waitsFor([key], 'placed')
    const turn = new Turn([key])
    if (waits.length === 0) {
      this.follow(turn)
      join(turn)
    } else if (this.updating.getStore() === true) {
      // Called by an atomicUpdate's fn: that update holds the key until fn returns, so run now.
      join(new Turn(undefined))
    } else {
      this.follow(turn)
      afterAll(waits, 'placed', () => join(turn))
    }
  }

  /**
   * Runs `task` in call order: after the operations on `keys` issued before it (every operation,
   * when `keys` is undefined) have finished, and before those issued after it. A read with nothing
   * to wait for runs at once. `writes`: the task changes the keys (or, without keys, the namespace),
   * so it is waited for even when it could start at once.
   */
  inOrder<R>(keys: readonly string[] | undefined, writes: boolean, task: () => R): R | Promise<Awaited<R>> {
    const waits = this.idle() ? NONE : this.waitsFor(keys, 'done')
    if (waits.length === 0 && !writes) return task()
    // Called by an atomicUpdate's fn: that update holds the key until fn returns, so run now.
    if (waits.length > 0 && this.updating.getStore() === true) return task()
    const turn = new Turn(keys)
    this.follow(turn)
    return new Promise<Awaited<R>>((resolve, reject) => {
      const run = () => {
        let result: R
        try {
          result = task()
        } catch (error) {
          this.finish(turn)
          reject(error)
          return
        }
        Promise.resolve(result).then(
          (value) => {
            this.finish(turn)
            resolve(value)
          },
          (error: unknown) => {
            this.finish(turn)
            reject(error)
          },
        )
      }
      if (waits.length === 0) run()
      else afterAll(waits, 'done', run)
    })
  }

  /** Settles once every operation issued so far has finished; undefined when none is pending. */
  whenAllDone(): Promise<void> | undefined {
    const waits = this.waitsFor(undefined, 'done')
    if (waits.length === 0) return undefined
    return new Promise<void>((resolve) => afterAll(waits, 'done', resolve))
  }

  /** Marks `turn` finished, and forgets it if nothing was issued on its keys after it. */
  finish(turn: Turn): void {
    if (turn.keys === undefined) {
      if (this.barrier === turn) this.barrier = undefined
    } else {
      for (const key of turn.keys) if (this.tails.get(key) === turn) this.tails.delete(key)
    }
    turn.finish()
  }

  /**
   * What an operation issued now must wait for: the whole-namespace operation in progress, and
   * the latest operation on each of `keys` (every key's, when undefined) that has not reached
   * `event` yet (`placed` for a write, `done` for anything else).
   */
  private waitsFor(keys: readonly string[] | undefined, event: 'placed' | 'done'): Turn[] {
    const waits: Turn[] = []
    if (this.barrier !== undefined) waits.push(this.barrier)
    if (keys === undefined) {
      for (const turn of this.tails.values()) waits.push(turn)
    } else {
      for (const key of keys) {
        const turn = this.tails.get(key)
        if (turn !== undefined && !(event === 'placed' ? turn.placed : turn.done)) waits.push(turn)
      }
    }
    return waits
  }

  /** Makes `turn` the latest operation on its keys (or on the whole namespace). */
  private follow(turn: Turn): void {
    if (turn.keys === undefined) this.barrier = turn
    else for (const key of turn.keys) this.tails.set(key, turn)
  }
}
