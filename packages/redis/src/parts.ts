import type { CacheObserver } from '@cache/core/backend'
import type { RedisClient } from './client.js'
import type { Connection } from './connection.js'
import type { RedisFormat } from './format.js'
import type { NearCache } from './near-cache.js'
import type { Replication } from './replication.js'

/** What the parts of one backend (reads, batches, counters) share. */
export interface BackendParts {
  readonly client: RedisClient
  readonly connection: Connection
  readonly observer: CacheObserver
  readonly format: RedisFormat
  /** Values read, kept until Redis says they changed; undefined unless `nearCache` is on. */
  readonly near: NearCache | undefined
  /** Writes wait for this many replicas; undefined with `replicas: 0`. */
  readonly replication: Replication | undefined
}
