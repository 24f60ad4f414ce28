import { CacheValueTooLargeError, type Duration, parseSize, type Size, ttlToMs } from '@cache/core'
import { type CacheObserver, type Codec, checkOption, createCodec, ttlOption } from '@cache/core/backend'
import { type Expiry, expiryFor, NEVER } from './expiry.js'
import { DEFAULT_MAX_VALUE, type MemcachedBackendOptions } from './options.js'
import { Status, unexpected } from './protocol.js'

/**
 * A cache value as a memcached item: its bytes (serialized, no larger than `maxValueSize`), its
 * expiry from a TTL or the default one, and the error for a status the server answered about it.
 */
export class ItemFormat {
  readonly codec: Codec
  readonly maxValueSize: number
  readonly defaultTtlMs: number | undefined
  /** Clock in epoch ms. */
  readonly now: () => number

  constructor(
    options: MemcachedBackendOptions,
    private readonly observer: CacheObserver,
  ) {
    this.codec = createCodec(options)
    this.maxValueSize =
      options.maxValueSize === undefined
        ? DEFAULT_MAX_VALUE
        : checkOption('maxValueSize', () => parseSize(options.maxValueSize as Size, 'maxValueSize'))
    this.defaultTtlMs = ttlOption(options.defaultTtl, 'defaultTtl')
    this.now = options.now ?? Date.now
  }

  /** The serialized value; `CacheValueTooLargeError` above `maxValueSize`, before anything is sent. */
  encode(key: string, value: unknown): Buffer {
    const bytes = this.codec.encode(value)
    if (bytes.length > this.maxValueSize)
      throw new CacheValueTooLargeError(key, bytes.length, this.maxValueSize)
    return bytes
  }

  decode(bytes: Buffer): unknown {
    return this.codec.decode(bytes)
  }

  /** A TTL in ms: `ttl`, or the default TTL when it is `undefined` (`undefined`: never expires). */
  ttlMs(ttl: Duration | undefined): number | undefined {
    return ttl === undefined ? this.defaultTtlMs : ttlToMs(ttl)
  }

  /** The expiry of a write now with `ttl` (see {@link expiryFor}). */
  expiry(ttl: Duration | undefined): Expiry {
    const ms = this.ttlMs(ttl)
    return ms === undefined ? NEVER : expiryFor(ms, this.now())
  }

  /** The error for a status the caller did not expect (of a value of `size` bytes), counted. */
  failure(operation: string, status: number, key: string, size = 0): Error {
    const error =
      status === Status.tooLarge
        ? new CacheValueTooLargeError(
            key,
            size,
            this.maxValueSize,
            'the memcached server (its item size limit, -I)',
          )
        : unexpected('memcached', operation, status)
    this.observer.error(operation, error, key)
    return error
  }
}
