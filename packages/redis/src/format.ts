import { CacheConfigError, type Duration, jsonSerializer, ttlToMs } from '@cache/core'
import {
  assertKey,
  type BaseBackendOptions,
  type Codec,
  type CodecOptions,
  createCodec,
  stringifyTagged,
  ttlOption,
  wellFormedKey,
} from '@cache/core/backend'

/** Redis rejects expiries past 2^63 ms from the epoch; anything near that is a mistake. */
const MAX_TTL_MS = 2 ** 52

/** How one backend writes its keys, expiries and values to Redis. */
export class RedisFormat {
  /** `namespace:`, or `''` without a namespace. */
  readonly prefix: string
  readonly codec: Codec
  /**
   * The default JSON serializer without compression: values go to ioredis as strings, which it
   * writes without the copies a Buffer costs.
   */
  readonly text: boolean
  readonly defaultTtlMs: number | undefined

  constructor(namespace: string, options: CodecOptions & Pick<BaseBackendOptions, 'defaultTtl'>) {
    if (typeof namespace !== 'string' || !(namespace as string & { isWellFormed(): boolean }).isWellFormed())
      throw new CacheConfigError('namespace', 'expected a string that UTF-8 can encode (no lone surrogates)')
    this.prefix = namespace === '' ? '' : `${namespace}:`
    this.defaultTtlMs = ttlOption(options.defaultTtl, 'defaultTtl')
    this.codec = createCodec(options)
    this.text =
      this.codec.serializer === jsonSerializer &&
      (options.compressThreshold === undefined || options.compressThreshold === false)
  }

  /** The Redis key of a user's key. */
  key(key: string): string {
    if (typeof key !== 'string') assertKey(key)
    // Redis keys are bytes and ioredis sends strings as UTF-8: a key with a lone surrogate
    // would become U+FFFD and share its entry with every other such key.
    return this.prefix + wellFormedKey(key)
  }

  /** The expiry in ms of a write (`defaultTtl` without one); undefined: none. */
  ttlMs(ttl: Duration | undefined): number | undefined {
    const ms = ttl === undefined ? this.defaultTtlMs : ttlToMs(ttl)
    if (ms !== undefined && ms > MAX_TTL_MS) throw new RangeError(`ttl: ${String(ttl)} is too long for Redis`)
    return ms
  }

  encode(value: unknown): string | Buffer {
    return this.text ? stringifyTagged(value) : this.codec.encode(value)
  }
}
