import type { CacheObserver, Codec } from '@cache/core/backend'
import type { CallOrder } from './call-order.js'
import type { ValueFiles } from './files.js'
import type { InFlight } from './in-flight.js'
import type { StoreLock } from './lock.js'
import type { DiskSettings } from './options.js'
import type { EntryStore } from './store.js'

/** Rows a clear, prune or key listing reads or deletes per statement. */
export const BATCH = 500

/** What the parts of a disk backend share: its namespace, database, value files, call order and settings. */
export interface DiskContext {
  /** The namespace column of this backend's rows (`''` without a namespace). */
  readonly ns: string
  readonly store: EntryStore
  /** Runs a short synchronous SQLite step; on a busy lock, waits without blocking and retries. */
  readonly lock: StoreLock
  readonly files: ValueFiles
  readonly order: CallOrder
  /** Operations running outside the call order: close() waits for them too. */
  readonly inFlight: InFlight
  readonly observer: CacheObserver
  readonly codec: Codec
  readonly settings: DiskSettings
  isClosed(): boolean
}
