import { type CacheUnavailableError, CacheValueTooLargeError } from '@cache/core'
import type { AccessTimes } from './access-times.js'
import { Turn } from './call-order.js'
import { directoryGone } from './lock.js'
import type { DiskContext } from './context.js'
import type { BatchOp, BatchOutcome, Condition } from './store.js'

type PutOp = BatchOp & { kind: 'put' }

/** A write waiting for, or in, a group commit. A large value's op settles once its file is written. */
interface QueuedWrite {
  op: BatchOp | Promise<BatchOp>
  turn: Turn
  resolve: (outcome: BatchOutcome) => void
  reject: (error: unknown) => void
}

/**
 * The write path. Group commit: a write joins the next batch once the operations on its key
 * issued before it have taken their place (see `CallOrder.placeWrite`). Writes issued in the same
 * tick (and those issued while a commit is in progress) are applied in order in one transaction.
 * A write's promise settles once that transaction has committed (or failed: then every write in
 * it fails with the error), and after any eviction the new total calls for.
 */
export class GroupCommit {
  /** Writes that have joined the next group commit, in the order they joined. */
  private batch: QueuedWrite[] = []
  /** Set while batches are being committed; settles when none is left. */
  private flushing: Promise<void> | undefined

  /**
   * `accessTimes`: reads recorded before a batch are written in its transaction, ahead of its writes.
   * `evict`: brings the directory back under `maxSize` after a batch pushed it over.
   */
  constructor(
    private readonly ctx: DiskContext,
    private readonly accessTimes: AccessTimes,
    private readonly evict: () => Promise<void>,
  ) {}

  /**
   * Stores encoded bytes if `condition` holds. The write takes its place in the group commit at
   * once (a large value joins with its file still being written: the batch waits for the file).
   * `ownTurn`: called by an operation holding the key's turn (atomicUpdate), so it joins at once.
   */
  put(
    key: string,
    bytes: Buffer,
    ttlMs: number | undefined,
    condition: Condition,
    ownTurn = false,
  ): Promise<boolean> {
    const { maxSize, inlineThreshold } = this.ctx.settings
    const size = bytes.length + key.length
    if (size > maxSize) return Promise.reject(new CacheValueTooLargeError(key, size, maxSize))
    // The TTL counts from the call: a commit that waits (for the lock, for a large value's file)
    // must not keep the entry longer than asked, past a copy's expiry on another level.
    const expiresAt = ttlMs === undefined ? null : this.ctx.settings.now() + ttlMs
    let op: PutOp | Promise<PutOp>
    if (bytes.length > inlineThreshold) {
      op = this.ctx.files
        .save(key, bytes)
        .then((file): PutOp => ({ kind: 'put', key, value: null, file, size, expiresAt, condition }))
      op.catch(noop) // the write it belongs to fails with this error
    } else {
      op = { kind: 'put', key, value: bytes, file: null, size, expiresAt, condition }
    }
    return this.stored(key, op, ownTurn ? this.commitNow(op) : this.commit(key, op))
  }

  /** Deletes `key`; true if it held a live entry. */
  async delete(key: string): Promise<boolean> {
    // In flight until its value's file is removed: `close()` resolves after it.
    this.ctx.inFlight.start()
    try {
      const outcome = await this.commit(key, { kind: 'delete', key })
      if (!outcome.done) return false
      if (outcome.file !== null) await this.ctx.files.discard([outcome.file])
      if (outcome.live) this.ctx.observer.delete(key)
      return outcome.live
    } finally {
      this.ctx.inFlight.end()
    }
  }

  /** Waits until every operation issued so far has finished, and every write has committed. */
  async settled(): Promise<void> {
    for (;;) {
      const pending = this.ctx.order.whenAllDone() ?? this.flushing
      if (pending === undefined) return
      await pending
    }
  }

  /**
   * What a put's caller learns once its write committed: unused value files are removed first
   * (the write is in flight until then: `close()` resolves after it).
   */
  private async stored(
    key: string,
    op: PutOp | Promise<PutOp>,
    commit: Promise<BatchOutcome>,
  ): Promise<boolean> {
    this.ctx.inFlight.start()
    try {
      return await this.outcomeOf(key, op, commit)
    } finally {
      this.ctx.inFlight.end()
    }
  }

  private async outcomeOf(
    key: string,
    op: PutOp | Promise<PutOp>,
    commit: Promise<BatchOutcome>,
  ): Promise<boolean> {
    let outcome: BatchOutcome
    try {
      outcome = await commit
    } catch (error) {
      if (op instanceof Promise)
        await this.ctx.files.discard([
          await op.then(
            (put) => put.file,
            () => null,
          ),
        ])
      throw error
    }
    const file = op instanceof Promise ? (await op).file : null
    const unused = outcome.done ? outcome.file : file
    if (unused !== null) await this.ctx.files.discard([unused])
    if (!outcome.done) return false
    this.ctx.observer.set(key)
    return true
  }

  /** A write of `key` in call order: joins the next batch once the operations before it on the key have taken their place. */
  private commit(key: string, op: BatchOp | Promise<BatchOp>): Promise<BatchOutcome> {
    return new Promise<BatchOutcome>((resolve, reject) =>
      this.ctx.order.placeWrite(key, (turn) => this.join({ op, turn, resolve, reject })),
    )
  }

  /** A write by the operation holding the key's turn: joins the next batch at once. */
  private commitNow(op: BatchOp | Promise<BatchOp>): Promise<BatchOutcome> {
    return new Promise<BatchOutcome>((resolve, reject) =>
      this.join({ op, turn: new Turn(undefined), resolve, reject }),
    )
  }

  private join(write: QueuedWrite): void {
    this.batch.push(write)
    write.turn.place()
    this.flushing ??= this.flush()
  }

  private async flush(): Promise<void> {
    try {
      // Yield once, so every write issued in this tick joins the first batch.
      await undefined
      while (this.batch.length > 0) {
        const batch = this.batch
        this.batch = []
        await this.commitBatch(batch)
      }
    } finally {
      this.flushing = undefined
    }
  }

  private async commitBatch(queued: QueuedWrite[]): Promise<void> {
    const { ctx } = this
    let batch = queued
    if (batch.some((write) => write.op instanceof Promise)) {
      // Large values: their files are written first; one whose file cannot be written fails alone.
      const ops = await Promise.allSettled(batch.map((write) => write.op))
      batch = []
      for (let i = 0; i < ops.length; i++) {
        const result = ops[i]!
        const write = queued[i]!
        if (result.status === 'fulfilled') {
          write.op = result.value
          batch.push(write)
        } else {
          ctx.order.finish(write.turn)
          write.reject(result.reason)
        }
      }
      if (batch.length === 0) return
    }
    const ops = batch.map((write) => write.op as BatchOp)
    const operation = ops.some((op) => op.kind === 'put') ? 'set' : 'delete'
    let total: number | undefined
    let outcomes: BatchOutcome[] | undefined
    let failure: unknown
    const accesses = this.accessTimes.take()
    let committedAt = 0
    try {
      ;({ outcomes, total } = await ctx.lock.run(
        operation,
        ops.length === 1 ? ops[0]!.key : undefined,
        () => {
          // A value written to a file before the directory was removed (and the path reopened
          // since) is gone: its row would point at nothing, a write resolved that nobody reads.
          for (const op of ops)
            if (op.kind === 'put' && op.file !== null && !ctx.files.exists(op.file))
              throw reported(ctx, operation, directoryGone(op.key))
          const written = ctx.store.writeBatch(ctx.ns, ops, ctx.settings.now(), accesses)
          committedAt = performance.now()
          return written
        },
        true,
      ))
      if (total !== undefined && total > ctx.settings.maxSize) await this.evict()
    } catch (error) {
      failure = error
      if (outcomes === undefined) this.accessTimes.restore(accesses)
    }
    if (outcomes !== undefined) {
      try {
        ctx.lock.confirm(operation, ops.length === 1 ? ops[0]!.key : undefined, committedAt)
      } catch (error) {
        failure = error
        outcomes = undefined
      }
    }
    for (let i = 0; i < batch.length; i++) {
      const { turn, resolve, reject } = batch[i]!
      if (outcomes === undefined) reject(failure)
      else resolve(outcomes[i]!)
      ctx.order.finish(turn)
    }
  }
}

function noop(): void {}

/** Counts and emits `error` (as a failure of the backend), and returns it to be thrown. */
function reported(ctx: DiskContext, operation: string, error: CacheUnavailableError): CacheUnavailableError {
  ctx.observer.error(operation, error)
  return error
}
