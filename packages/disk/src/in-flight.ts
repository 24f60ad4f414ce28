import { setImmediate as nextTurn } from 'node:timers/promises'

/**
 * The operations that run outside the call order, so that `close()` can wait for them too: a
 * read with nothing to wait for once it goes asynchronous (a value in a file, a busy database),
 * a `getMany`, a `prune`, a key listing while it reads, and a write (`set`, `delete`, `incr`)
 * after its commit, while it removes the value file it replaced and evicts. The hot path pays
 * two integer updates a `getMany` and a write (a `get` only when it goes asynchronous); nothing
 * is allocated unless `close()` waits.
 */
export class InFlight {
  private running = 0
  /** Key listings not finished; one whose consumer holds a key is open but not running. */
  private listings = 0
  /** Keys listings have handed over and been asked past: progress `settled` watches. */
  private pulls = 0
  private waiting: (() => void)[] = []

  start(): void {
    this.running++
  }

  end(): void {
    if (--this.running > 0 || this.waiting.length === 0) return
    for (const resolve of this.waiting.splice(0)) resolve()
  }

  /** A key listing read its first page: it runs until it hands a key over. */
  listingStarted(): void {
    this.listings++
    this.running++
  }

  /** The listing's consumer has a key: the listing waits for it, and `close()` need not. */
  handedOver(): void {
    this.end()
  }

  /** The consumer asked for the next key. */
  resumed(): void {
    this.pulls++
    this.running++
  }

  /** The listing ran out, failed, or its consumer left it (`break`, `return()`). */
  listingEnded(running: boolean): void {
    this.listings--
    if (running) this.end()
  }

  /**
   * Settles once nothing runs and no open listing's consumer asked for a key during a whole turn
   * of the event loop: a listing iterated to its end goes on, one left unfinished (never
   * returned) does not hold `close()` open; its next page is refused.
   */
  async settled(): Promise<void> {
    for (;;) {
      if (this.running > 0) await new Promise<void>((resolve) => this.waiting.push(resolve))
      if (this.listings === 0) return
      const pulls = this.pulls
      await nextTurn()
      if (this.pulls === pulls && this.running === 0) return
    }
  }
}
