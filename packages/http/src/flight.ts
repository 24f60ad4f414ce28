import type { IncomingHttpHeaders } from 'node:http'
import { invalidatedSince, tick } from '@cache/core/backend'
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

const NO_TAGS: readonly string[] = []

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
  /** When it started, in @cache/core's order of invalidations in this process (with tags only). */
  private readonly started: number

  constructor(
    readonly keyPrefix: string,
    /** The generation keys of the URL's invalidation scopes, what `invalidate(url)` renews. */
    readonly keys: readonly string[],
    /**
     * The generation keys of the response's tags, which `invalidateTags()` (of @cache/core, which
     * knows no flight of this package) marks in this process as it starts.
     */
    private readonly tagKeys: readonly string[] = NO_TAGS,
  ) {
    running.add(this)
    this.started = tagKeys.length === 0 ? 0 : tick()
  }

  /** What the flight shares, unless an invalidation started after it or it was withdrawn. */
  get result(): Shared | undefined {
    return this.invalidated ? undefined : this.shared
  }

  /** Whether a response may still come: waiting for it makes sense. */
  get pending(): boolean {
    return this.open && !this.invalidated && this.shared === undefined
  }

  /** Whether an invalidation (of its URL, prefix or one of its tags) started after this flight did. */
  get invalidated(): boolean {
    return this.cancelled || (this.tagKeys.length > 0 && invalidatedSince(this.tagKeys, this.started))
  }

  share(shared: Shared): void {
    if (!this.open || this.invalidated) return
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
