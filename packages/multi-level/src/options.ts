import type { CacheBackend, CacheLogger, Duration, MinimalBackend } from '@cache/core'
import type { BreakerOptions } from './breaker.js'
import type { InvalidationBus } from './bus.js'

/** Options of {@link multiLevel}. */
export interface MultiLevelOptions {
  /** The backends, fastest first (L1, L2, …). The last is the shared level. At least one. */
  levels: readonly (CacheBackend | MinimalBackend)[]
  /** When a failing level is skipped, and for how long. Defaults: 3 failures, `'1s'`. */
  breaker?: BreakerOptions
  /**
   * Keys remembered per level while it is skipped, to delete from it before it is used again.
   * Past this a faster level is cleared instead; the shared level never is (the keys past it keep
   * their values there, reported as an `error` event of operation `repair`). Default: 10000.
   */
  maxPendingKeys?: number
  /** Evicts keys from the faster levels of other processes. Default: none. */
  bus?: InvalidationBus
  /**
   * How long a faster level may keep a copy of invalidation state (the `__v:` keys behind
   * memoize's `clear()`, `invalidate()`, `invalidateTags()` and the HTTP cache's `clear()`) read
   * from the shared level. `0`: no copy, every lookup reads the shared level, and an invalidation
   * made by any process is seen at once. A longer time saves that read on hits, at the price of
   * seeing another process's invalidation up to that late (the bus evicts copies sooner). A copy
   * is used only while the shared level is in use; while it cannot answer, reading invalidation
   * state fails (memoize then runs the function uncached).
   * Seconds or a duration string. Default: `0` without a bus, `'1s'` with one.
   */
  stateTtl?: Duration | 0
  /**
   * Scope of bus messages: only chains with the same namespace evict for each other. Default:
   * the last level's `namespace` property, else `''`.
   */
  namespace?: string
  /** `close()` closes the levels too. Default: true. */
  closeLevels?: boolean
  /**
   * Where the chain reports a level's breaker opening (the level is skipped) and closing (it is
   * back), once each: any object with `warn` and `error` (pino, winston), or `false`. Default:
   * the process-wide logger (`console` unless `setCacheLogger` or `configureCache({ logger })`
   * changed it).
   */
  logger?: CacheLogger | false
  /** Clock in epoch ms, for tests. Default: `Date.now`. */
  now?: () => number
}
