import { CacheError, CacheNotANumberError, CacheSerializationError } from '@cache/core'
import { addToCounter, type CacheObserver, CONFLICT, KeyedQueue, retryConflicts } from '@cache/core/backend'
import { type Expiry, expiryFor, isExpired, keepExpiry } from './expiry.js'
import type { ItemFormat } from './items.js'
import type { Links } from './links.js'
import { counterBytes, Opcode, type Response, request, Status, storeRequest } from './protocol.js'

/** What one CAS attempt writes, and what the operation then returns. */
interface Write<R> {
  bytes: Buffer
  expiry: Expiry
  result: R
}

/** What the counters use of their backend. */
export interface CounterDeps {
  links: Links
  observer: CacheObserver
  items: ItemFormat
  maxAttempts: number
}

/** `incr` and read-modify-write (`atomicUpdate`) on one memcached item, with CAS. */
export class Counters {
  private readonly queue = new KeyedQueue()

  constructor(private readonly deps: CounterDeps) {}

  /**
   * `incr`: a CAS read-modify-write ({@link casLoop}): the counter is read with its CAS version,
   * `by` is added by the rule every backend follows ({@link addToCounter}), and the sum is written
   * only if nobody wrote in between (ADD creates a missing counter with the TTL; an existing one
   * keeps its expiry). memcached's own INCR is not used: it applies to whatever the item holds
   * before anyone can check it (an unsigned 64-bit number: past Number.MAX_SAFE_INTEGER, or past
   * 2^64, where it wraps), and the result is visible to every other client at once. A refused step
   * therefore never writes. The writes are never undone on a timeout: the undo of a write is a
   * DELETE, which would erase the counter with everyone's increments; a timed-out incr may have
   * counted once (as on redis), never twice (requests are never retried).
   */
  incr(key: string, index: number, mkey: string, by: number, ttlMs: number | undefined): Promise<number> {
    return this.casLoop(
      key,
      index,
      mkey,
      'incr',
      (found) => {
        if (found === undefined)
          return { bytes: counterBytes(by), expiry: expiryFor(ttlMs, this.deps.items.now()), result: by }
        const next = addToCounter(key, this.counterOf(key, found.value), by)
        return { bytes: counterBytes(next), expiry: keepExpiry(found.flags), result: next }
      },
      false,
    )
  }

  /** The stored value of a counter; a value the codec cannot read is not a number either. */
  private counterOf(key: string, bytes: Buffer): unknown {
    try {
      return this.deps.items.decode(bytes)
    } catch (error) {
      if (error instanceof CacheSerializationError) throw new CacheNotANumberError(key)
      throw error
    }
  }

  /**
   * `atomicUpdate`: `fn` of the live value (undefined if none) written with {@link casLoop}. Its
   * write is conditional (CAS, or ADD for an absent key): landing late, it still only replaces
   * what it read, so it is not undone on a timeout (a DELETE would erase what other processes
   * wrote since); a timed-out atomicUpdate may have been applied.
   */
  update<T>(
    key: string,
    index: number,
    mkey: string,
    fn: (current: T | undefined) => T | Promise<T>,
    ttlMs: number | undefined,
  ): Promise<T> {
    return this.casLoop(
      key,
      index,
      mkey,
      'atomicUpdate',
      async (found) => {
        const next = await fn(found === undefined ? undefined : (this.deps.items.decode(found.value) as T))
        return {
          bytes: this.deps.items.encode(key, next),
          expiry: expiryFor(ttlMs, this.deps.items.now()),
          result: next,
        }
      },
      false,
    )
  }

  /**
   * Read-modify-write with memcached CAS: reads the value and its CAS version, calls `next`, and
   * writes only if nobody wrote in between; otherwise retries with the newer value. Callers in this
   * process queue per key instead of conflicting.
   */
  private async casLoop<R>(
    key: string,
    index: number,
    mkey: string,
    operation: string,
    next: (found: Response | undefined) => Write<R> | Promise<Write<R>>,
    undoable = true,
  ): Promise<R> {
    return this.queue.run(mkey, () =>
      retryConflicts(key, { maxAttempts: this.deps.maxAttempts, pause: briefPause }, async () => {
        const current = await this.deps.links.call(index, request(Opcode.get, mkey), operation, key)
        if (current.status !== Status.ok && current.status !== Status.notFound)
          throw this.deps.items.failure(operation, current.status, key)
        const exists = current.status === Status.ok
        // A server started with -C answers CAS 0, and a SET with CAS 0 overwrites unconditionally.
        if (exists && casIsOff(current)) throw casDisabled(operation)
        const live = exists && !isExpired(current.flags, this.deps.items.now()) ? current : undefined
        const { bytes, expiry, result } = await next(live)
        // An absent key is created with ADD; a present one (even expired) replaced with CAS.
        const write = exists
          ? storeRequest(Opcode.set, mkey, expiry, bytes, current.cas)
          : storeRequest(Opcode.add, mkey, expiry, bytes)
        const written = await this.deps.links.call(index, write, operation, key, true, undoable)
        if (written.status === Status.ok) {
          // CAS turned off since the read (a restart with -C): the server ran it as a plain SET.
          if (exists && casIsOff(written)) this.deps.observer.error(operation, casUnguarded(operation), key)
          this.deps.observer.set(key)
          return result
        }
        if (written.status !== Status.exists && written.status !== Status.notFound)
          throw this.deps.items.failure(operation, written.status, key, bytes.length)
        return CONFLICT
      }),
    )
  }
}

/**
 * The pause after a conflict: random, under 2 ms, whatever the attempt. Other processes' writes
 * of one key are a round trip (~0.1-0.3 ms) apart, so 2 ms spreads them out; the pause core
 * grows with the attempt (up to 10 ms) would only add latency to a contended key.
 */
const briefPause = (): number => Math.random() * 2

/** True when the server answered CAS 0: it was started with `-C`, and a CAS write would be unguarded. */
export function casIsOff(found: Response): boolean {
  return found.cas.every((byte) => byte === 0)
}

/** A CAS write needs the server's CAS versions, which `memcached -C` turns off. */
export function casDisabled(operation: string): CacheError {
  return new CacheError(
    `memcached: ${operation} needs CAS, and the server answers CAS 0 (started with -C); without it, it would overwrite or delete what other writers stored`,
  )
}

/**
 * A CAS write answered with CAS 0: the server (restarted with -C after the read) stored it as a
 * plain SET, over whatever another writer stored meanwhile. Reported, not thrown: it is stored.
 */
export function casUnguarded(operation: string): CacheError {
  return new CacheError(
    `memcached: ${operation} was written without CAS guard: the server answered CAS 0 (restarted with -C since the read), so it may have replaced what another writer stored meanwhile`,
  )
}
