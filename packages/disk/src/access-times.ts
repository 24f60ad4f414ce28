import type { DiskContext } from './context.js'
import { type Access, isBusy, realPathOf } from './store.js'

/** How long a recorded access waits before it is written, unless a write of this process comes first. */
const FLUSH_AFTER_MS = 1000

/**
 * The accesses recorded and not yet written by every backend of this process on one database
 * file, in the order they happened (a key read again moves to the end), so that whichever of
 * them writes next puts them in the LRU order before its own writes.
 */
interface PendingAccesses {
  readonly accesses: Map<string, Access>
  readonly users: Set<AccessTimes>
  timer: NodeJS.Timeout | undefined
}

const pendingByFile = new Map<string, PendingAccesses>()

/**
 * Access times, which steer LRU eviction. A read records its key only when the stored time is at
 * least `accessResolution` old, so hot reads do not turn into writes. Recorded accesses are
 * written, in the order they happened, at the start of the next write transaction of this
 * process on the same database (a group commit, an `incr`, an eviction step), or by a timer about
 * a second later when nothing is written meanwhile.
 */
export class AccessTimes {
  private readonly pending: PendingAccesses
  /** The database file, as the key of its queue: one queue whatever the spelling of the path. */
  private readonly file: string

  constructor(private readonly ctx: DiskContext) {
    const file = realPathOf(ctx.store.file)
    this.file = file
    let pending = pendingByFile.get(file)
    if (pending === undefined) {
      pending = { accesses: new Map(), users: new Set(), timer: undefined }
      pendingByFile.set(file, pending)
    }
    pending.users.add(this)
    this.pending = pending
  }

  /** Records a read of `key` at `now` whose stored access time is `accessedAt`, if that one is old enough. */
  read(key: string, accessedAt: number, now: number): void {
    if (now - accessedAt < this.ctx.settings.accessResolutionMs) return
    const access: Access = { ns: this.ctx.ns, key, at: now }
    const id = accessId(access)
    const { accesses } = this.pending
    // Read again before being written: it moves behind the accesses since (nothing more to write).
    accesses.delete(id)
    accesses.set(id, access)
    this.pending.timer ??= setTimeout(() => flushPending(this.pending), FLUSH_AFTER_MS).unref()
  }

  /**
   * Takes the recorded accesses, oldest first, for the caller's write transaction to apply before
   * its own writes. Give them back with `restore` if that transaction fails.
   */
  take(): Access[] | undefined {
    const { accesses } = this.pending
    if (accesses.size === 0) return undefined
    const taken = [...accesses.values()]
    accesses.clear()
    clearTimeout(this.pending.timer)
    this.pending.timer = undefined
    return taken
  }

  /** Puts back accesses whose transaction failed, before those recorded since. */
  restore(taken: Access[] | undefined): void {
    if (taken === undefined) return
    const { accesses } = this.pending
    const since = [...accesses]
    accesses.clear()
    for (const access of taken) accesses.set(accessId(access), access)
    for (const [id, access] of since) {
      accesses.delete(id)
      accesses.set(id, access)
    }
    this.pending.timer ??= setTimeout(() => flushPending(this.pending), FLUSH_AFTER_MS).unref()
  }

  /** Writes the recorded accesses now, in one transaction. */
  flush(): void {
    if (this.ctx.isClosed()) return
    const taken = this.take()
    if (taken === undefined) return
    try {
      // Never into a database the path no longer holds, nor through a log index another process
      // replaced: that would overwrite what the others committed.
      this.ctx.lock.follow('touch', true)
    } catch {
      return // reported by follow; access times only steer eviction
    }
    try {
      this.ctx.store.touch(taken)
    } catch (error) {
      // Access times only steer eviction: a busy database skips this batch rather than wait.
      if (!isBusy(error)) this.ctx.observer.error('touch', error)
    }
  }

  /** Writes the recorded accesses (every backend's on this file) and leaves the queue. */
  close(): void {
    this.flush()
    const { pending } = this
    pending.users.delete(this)
    if (pending.users.size > 0) return
    clearTimeout(pending.timer)
    pendingByFile.delete(this.file)
  }
}

/** One key of one namespace: the namespace's length leads, so no namespace and key run into another's. */
function accessId(access: Access): string {
  return `${access.ns.length}:${access.ns}${access.key}`
}

/** The timer's flush, through any open backend on the file. */
function flushPending(pending: PendingAccesses): void {
  pending.timer = undefined
  const [user] = pending.users
  user?.flush()
}
