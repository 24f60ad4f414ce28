/** The writes of one key in flight, and how many times a new one joined them. */
interface KeyWrites {
  active: number
  overlaps: number
}

/** One write in flight: what it saw when it started, to tell whether another overlapped it. */
export interface WriteTicket {
  readonly keys: readonly string[]
  readonly entries: readonly KeyWrites[]
  readonly overlaps: readonly number[]
  readonly clears: number
  readonly overlapped: boolean
}

/**
 * Keeps the faster levels in the shared level's order. Two writes of one key (or a write and a
 * `clear()`) in flight together may be applied by the shared level in either order, and their
 * copies reach the faster levels in whatever order the replies come back: a value copied after an
 * overlapping delete or clear would outlive it there, for good without a TTL. So a write copies
 * its value into the faster levels only if no other write of its keys and no clear overlapped it;
 * otherwise it deletes them from the faster levels, and the next read fills them from the shared
 * level. A delete landing late is always safe: it can only make a faster level miss.
 */
export class WriteOrder {
  private readonly keys = new Map<string, KeyWrites>()
  private clearsActive = 0
  /** Writes and clears in flight, and who waits for there to be none (close()). */
  private active = 0
  private idleWaiters: (() => void)[] = []
  /** Counts clears started: a write that sees it change was overlapped by one. */
  private clearsStarted = 0

  /** A write of `keys` starts (incr, atomicUpdate and compareAndDelete included); pair with {@link end}. */
  begin(keys: string | readonly string[]): WriteTicket {
    const list = typeof keys === 'string' ? [keys] : keys
    this.active++
    const entries: KeyWrites[] = []
    const overlaps: number[] = []
    let overlapped = this.clearsActive > 0
    for (const key of list) {
      let entry = this.keys.get(key)
      if (entry === undefined) {
        entry = { active: 0, overlaps: 0 }
        this.keys.set(key, entry)
      } else if (entry.active > 0) {
        // Every write of this key in flight is overlapped by this one, and this one by them.
        entry.overlaps++
        overlapped = true
      }
      entry.active++
      entries.push(entry)
      overlaps.push(entry.overlaps)
    }
    return { keys: list, entries, overlaps, clears: this.clearsStarted, overlapped }
  }

  /** True if no other write of the ticket's keys and no clear overlapped it so far. */
  alone(ticket: WriteTicket): boolean {
    if (ticket.overlapped || ticket.clears !== this.clearsStarted) return false
    for (let i = 0; i < ticket.entries.length; i++)
      if (ticket.entries[i]!.overlaps !== ticket.overlaps[i]) return false
    return true
  }

  end(ticket: WriteTicket): void {
    this.ended()
    for (let i = 0; i < ticket.keys.length; i++) {
      const entry = ticket.entries[i]!
      if (--entry.active === 0 && this.keys.get(ticket.keys[i]!) === entry) this.keys.delete(ticket.keys[i]!)
    }
  }

  /** A clear starts: every write in flight is overlapped, and so is every write until it ends. */
  beginClear(): void {
    this.active++
    this.clearsActive++
    this.clearsStarted++
  }

  endClear(): void {
    this.clearsActive--
    this.ended()
  }

  /**
   * A write that no key tracks (@cache's invalidation state, written to every level as it is)
   * is in flight until `work` settles: {@link idle} waits for it too.
   */
  track<T>(work: Promise<T>): Promise<T> {
    this.active++
    return work.finally(() => this.ended())
  }

  /** Resolves once no write or clear is in flight. */
  idle(): Promise<void> {
    if (this.active === 0) return Promise.resolve()
    return new Promise((resolve) => this.idleWaiters.push(resolve))
  }

  private ended(): void {
    if (--this.active > 0 || this.idleWaiters.length === 0) return
    const waiters = this.idleWaiters
    this.idleWaiters = []
    for (const resolve of waiters) resolve()
  }

  /** Another process changed `key` (a bus message): the writes of it in flight are overlapped. */
  changedElsewhere(key: string): void {
    const entry = this.keys.get(key)
    if (entry !== undefined) entry.overlaps++
  }

  /** Anything may have changed elsewhere (a clear, a lost message): every write in flight is overlapped. */
  clearedElsewhere(): void {
    this.clearsStarted++
  }
}
