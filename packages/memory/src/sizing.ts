import { CacheValueTooLargeError, parseSize, type Size } from '@cache/core'
import { checkOption, countOption } from '@cache/core/backend'
import { LRUCache } from 'lru-cache'
import type { MemoryBackendOptions } from './options.js'
import { estimateSize } from './size.js'
import { type Stored, UNDEFINED } from './entries.js'

/**
 * The lru-cache of a memory backend, with its limits: entries (`maxKeys`) and bytes (`maxSize`,
 * measured by `sizeOf`), and its expiry clock `now`; `sizer` measures entries when `maxSize` is set.
 */
export function createLru(
  options: MemoryBackendOptions,
  now: () => number,
): { lru: LRUCache<string, Stored>; sizer: EntrySizer | undefined } {
  const maxSize =
    options.maxSize === undefined
      ? undefined
      : checkOption('maxSize', () => parseSize(options.maxSize as Size, 'maxSize'))
  const maxKeys =
    options.maxKeys === undefined && maxSize !== undefined
      ? undefined
      : countOption(options.maxKeys, 'maxKeys', 10_000)
  const sizer = maxSize === undefined ? undefined : new EntrySizer(maxSize, options.sizeOf ?? estimateSize)
  const lru = new LRUCache<string, Stored>({
    ...(maxKeys === undefined ? {} : { max: maxKeys }),
    ...(sizer === undefined ? {} : { maxSize: sizer.maxSize, sizeCalculation: sizer.sizeOfEntry }),
    // lru-cache checks expiry against this clock, read at every check (it is cached already).
    perf: { now },
    ttlResolution: 0,
  } as LRUCache.Options<string, Stored, unknown>)
  return { lru, sizer }
}

/** Measures entries for `maxSize`: the value's `sizeOf` plus its key (2 bytes a character). */
export class EntrySizer {
  constructor(
    readonly maxSize: number,
    private readonly sizeOf: (value: unknown, key: string) => number,
  ) {}

  /** The bytes an entry counts for (lru-cache's `sizeCalculation`; it refuses an entry over
   * `maxSize`, its default `maxEntrySize`). */
  readonly sizeOfEntry = (stored: Stored, key: string): number =>
    Math.max(1, this.sizeOf(stored === UNDEFINED ? undefined : stored, key) + key.length * 2)

  /**
   * The bytes of an entry; throws a `TypeError` for a `sizeOf` that answered no number of bytes,
   * and `CacheValueTooLargeError` for an entry over `maxSize` after calling `drop` (what the key
   * held is dropped, not kept stale, as lru-cache does when it refuses a value).
   */
  measure(key: string, value: unknown, stored: Stored, drop: (key: string) => void): number {
    const size = this.sizeOfEntry(stored, key)
    if (!Number.isSafeInteger(size) || size <= 0)
      throw new TypeError(
        `memory: sizeOf returned ${String(size)} for key ${JSON.stringify(key)} (expected a number of bytes)`,
      )
    if (size > this.maxSize) {
      drop(key)
      throw new CacheValueTooLargeError(key, estimateSize(value), this.maxSize)
    }
    return size
  }
}
