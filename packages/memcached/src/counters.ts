import { CacheNotANumberError } from '@cache/core'
import { type CacheObserver, CONFLICT, KeyedQueue, retryConflicts } from '@cache/core/backend'
import { type Expiry, expiryFor, isExpired, keepExpiry } from './expiry.js'
import type { ItemFormat } from './items.js'
import type { Links } from './links.js'
import {
  counterBytes,
  counterValue,
  incrExtras,
  Opcode,
  type Response,
  request,
  Status,
  storeRequest,
} from './protocol.js'

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

  /** `incr`: memcached's INCR on a counter it holds; ADD creates one; a negative step or a counter
   * stored as JSON goes through {@link casLoop}. */
  async incr(
    key: string,
    index: number,
    mkey: string,
    by: number,
    ttlMs: number | undefined,
  ): Promise<number> {
    for (let attempt = 1; by >= 0 && attempt <= this.deps.maxAttempts; attempt++) {
      const response = await this.deps.links.call(
        index,
        request(Opcode.increment, mkey, incrExtras(by)),
        'incr',
        key,
      )
      if (response.status === Status.ok) {
        const value = counterValue(response)
        if (!Number.isSafeInteger(value)) {
          // memcached holds the 64-bit result exactly; the number a caller would get is not the
          // counter's. Taken back before anyone is answered, as the other backends refuse it.
          await this.deps.links.call(index, request(Opcode.decrement, mkey, incrExtras(by)), 'incr', key)
          throw pastSafeRange(key)
        }
        this.deps.observer.set(key)
        return value
      }
      if (response.status === Status.nonNumeric) break
      if (response.status !== Status.notFound) throw this.deps.items.failure('incr', response.status, key)
      const created = await this.deps.links.call(
        index,
        storeRequest(Opcode.add, mkey, expiryFor(ttlMs, this.deps.items.now()), counterBytes(by)),
        'incr',
        key,
      )
      if (created.status === Status.ok) {
        this.deps.observer.set(key)
        return by
      }
      if (created.status !== Status.exists) throw this.deps.items.failure('incr', created.status, key)
    }
    return this.casLoop(key, index, mkey, 'incr', (found) => {
      if (found === undefined)
        return { bytes: counterBytes(by), expiry: expiryFor(ttlMs, this.deps.items.now()), result: by }
      const current = this.deps.items.decode(found.value)
      if (!Number.isSafeInteger(current)) throw new CacheNotANumberError(key)
      const next = (current as number) + by
      if (!Number.isSafeInteger(next)) throw pastSafeRange(key)
      return { bytes: counterBytes(next), expiry: keepExpiry(found.flags), result: next }
    })
  }

  /** `atomicUpdate`: `fn` of the live value (undefined if none) written with {@link casLoop}. */
  update<T>(
    key: string,
    index: number,
    mkey: string,
    fn: (current: T | undefined) => T | Promise<T>,
    ttlMs: number | undefined,
  ): Promise<T> {
    return this.casLoop(key, index, mkey, 'atomicUpdate', async (found) => {
      const next = await fn(found === undefined ? undefined : (this.deps.items.decode(found.value) as T))
      return {
        bytes: this.deps.items.encode(key, next),
        expiry: expiryFor(ttlMs, this.deps.items.now()),
        result: next,
      }
    })
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
  ): Promise<R> {
    return this.queue.run(mkey, () =>
      retryConflicts(key, { maxAttempts: this.deps.maxAttempts, pause: briefPause }, async () => {
        const current = await this.deps.links.call(index, request(Opcode.get, mkey), operation, key)
        if (current.status !== Status.ok && current.status !== Status.notFound)
          throw this.deps.items.failure(operation, current.status, key)
        const exists = current.status === Status.ok
        const live = exists && !isExpired(current.flags, this.deps.items.now()) ? current : undefined
        const { bytes, expiry, result } = await next(live)
        // An absent key is created with ADD; a present one (even expired) replaced with CAS.
        const write = exists
          ? storeRequest(Opcode.set, mkey, expiry, bytes, current.cas)
          : storeRequest(Opcode.add, mkey, expiry, bytes)
        const written = await this.deps.links.call(index, write, operation, key)
        if (written.status === Status.ok) {
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

/** The error of an `incr` whose result would not be an exact number (as redis and disk answer it). */
function pastSafeRange(key: string): RangeError {
  return new RangeError(`incr: the counter "${key}" would pass Number.MAX_SAFE_INTEGER in magnitude`)
}
