import type { Size } from '@cache/core'
import { type BaseBackendOptions, optionNames } from '@cache/core/backend'

/** Options of {@link memoryBackend}. */
export interface MemoryBackendOptions extends BaseBackendOptions {
  /**
   * Most entries kept; past it the least recently used is evicted. Default: 10000 (when
   * `maxSize` is set and `maxKeys` is not, there is no count limit).
   */
  maxKeys?: number
  /**
   * Most bytes kept, measured by `sizeOf`; past it least recently used entries are evicted.
   * A value larger than this throws `CacheValueTooLargeError`. Default: no byte limit.
   */
  maxSize?: Size
  /**
   * How many bytes a value takes, for `maxSize`. Default: `estimateSize`, an estimate
   * that walks the value (cost proportional to its size, paid once per set).
   */
  sizeOf?: (value: unknown, key: string) => number
  /**
   * Store a structured clone and return a clone on every read, so callers cannot mutate what is
   * cached. Default: false (store references: fastest; do not mutate what you get).
   */
  clone?: boolean
  /**
   * Refuse what disk, redis and memcached would refuse: a value the default serializer cannot
   * write (a class instance, a function, a symbol, a cycle) throws the same
   * `CacheSerializationError`, naming its path, so code tested on memory caches the same way
   * once deployed on a shared backend. Costs one walk of each value set (no copy for plain JSON
   * values). Default: `true` unless `NODE_ENV` is `production`, or `clone` is on (cloning already
   * refuses class instances and functions, as the `v8` serializer would).
   */
  checkValues?: boolean
  /**
   * Clock in epoch ms, for tests. Default: `Date.now`, read at most once a millisecond and at
   * least every 32 reads (an entry may be answered that long past its expiry).
   */
  now?: () => number
}

/** Every name of {@link MemoryBackendOptions}: any other is refused, not dropped in silence. */
export const MEMORY_OPTION_NAMES = optionNames<MemoryBackendOptions>({
  namespace: true,
  defaultTtl: true,
  logger: true,
  maxKeys: true,
  maxSize: true,
  sizeOf: true,
  clone: true,
  checkValues: true,
  now: true,
})
