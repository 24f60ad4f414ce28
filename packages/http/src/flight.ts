import type { IncomingHttpHeaders } from 'node:http'
import type { StoredResponse, VaryRecord } from './stored-response.js'

/** A response that ended complete and storable, shared with concurrent requests for its key. */
export interface Shared {
  entry: StoredResponse
  /** Set when the response varies on request headers. */
  record: VaryRecord | undefined
  /** The request headers of the response, to match the variant of a waiting request. */
  headers: IncomingHttpHeaders
}

/** Every flight of this process that has not settled: what an invalidation must reach. */
const running = new Set<Flight>()

/**
 * One request running the handler for a key (single-flight), for as long as its response may
 * still be stored: concurrent requests for the key wait for it, bounded, and replay what it
 * shares. It never outlives its request: it settles when the response finished, or was closed,
 * or its connection was.
 */
export class Flight {
  private shared: Shared | undefined
  private open = true
  private cancelled = false
  private readonly waiters = new Set<() => void>()

  constructor(
    readonly keyPrefix: string,
    /** The generation keys of the URL's invalidation scopes, what `invalidate(url)` renews. */
    readonly keys: readonly string[],
  ) {
    running.add(this)
  }

  /** What the flight shares, unless an invalidation started after it or it was withdrawn. */
  get result(): Shared | undefined {
    return this.cancelled ? undefined : this.shared
  }

  /** Whether a response may still come: waiting for it makes sense. */
  get pending(): boolean {
    return this.open && !this.cancelled && this.shared === undefined
  }

  /** Whether an invalidation started after this flight did. */
  get invalidated(): boolean {
    return this.cancelled
  }

  share(shared: Shared): void {
    if (!this.open || this.cancelled) return
    this.shared = shared
    this.wake()
  }

  /** Nothing is (or stays) shared: waiting requests run the handler themselves. */
  withdraw(): void {
    this.open = false
    this.shared = undefined
    this.wake()
  }

  /** The request is over. */
  settle(): void {
    this.open = false
    running.delete(this)
    this.wake()
  }

  /** Resolves once the flight shares a response, gives up, or after `ms`, whichever comes first. */
  wait(ms: number): Promise<void> {
    if (!this.pending) return Promise.resolve()
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer)
        this.waiters.delete(done)
        resolve()
      }
      const timer = setTimeout(done, ms)
      timer.unref?.()
      this.waiters.add(done)
    })
  }

  private cancel(): void {
    this.cancelled = true
    this.wake()
  }

  private wake(): void {
    for (const waiter of [...this.waiters]) waiter()
  }

  /**
   * Invalidation wins over every flight started before it: their responses are neither stored
   * nor shared. `keys`: generation keys of URL scopes invalidated one by one; `prefix`: a `keyPrefix` invalidated
   * whole (with its longer prefixes).
   */
  static invalidate(target: { keys: readonly string[] } | { prefix: string }): void {
    for (const flight of running) {
      const hit =
        'keys' in target
          ? flight.keys.some((key) => target.keys.includes(key))
          : flight.keyPrefix === target.prefix || flight.keyPrefix.startsWith(`${target.prefix}:`)
      if (hit) flight.cancel()
    }
  }
}
