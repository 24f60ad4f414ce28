import { CacheClosedError, CacheError, CacheTimeoutError, CacheUnavailableError } from '@cache/core'
import type { CacheObserver, IncidentLog } from '@cache/core/backend'
import { setTimeout as sleep } from 'node:timers/promises'
import Database from 'better-sqlite3'
import { type EntryStore, isBusy, isCorruption, type Recovery } from './store.js'

/**
 * A read checks that the database file is still the one at the path at most this often: a
 * process whose cache directory was removed reads the deleted copy for at most this long
 * (writes check every transaction). One `stat` costs a few microseconds.
 */
export const READ_CHECK_MS = 1000

/**
 * Runs the backend's synchronous SQLite steps. better-sqlite3 blocks while SQLite waits for a
 * lock, so SQLite's own wait (`busyTimeout`) is kept short; past it the step is retried after an
 * asynchronous, jittered pause, until `lockTimeout` has passed (then `CacheTimeoutError`).
 * A damaged database is rebuilt once, then the step is retried on the new one.
 */
export class StoreLock {
  /** Where a damaged database was moved, if it had to be rebuilt. */
  recovered: string | undefined
  /** When a read last checked that the database file is still the one at the path. */
  private checkedAt = 0

  constructor(
    private readonly store: EntryStore,
    private readonly observer: CacheObserver,
    private readonly lockTimeoutMs: number,
    private readonly isClosed: () => boolean,
    private readonly log: IncidentLog,
  ) {}

  /**
   * Runs a step, after {@link follow}ing a removed or replaced database file: every write
   * (`write`) checks, a read at most every `READ_CHECK_MS`.
   */
  async run<R>(operation: string, key: string | undefined, step: () => R, write = false): Promise<R> {
    if (this.isClosed()) throw new CacheClosedError('disk')
    try {
      this.follow(operation, write)
      return write ? this.commit(operation, key, step) : step()
    } catch (error) {
      return this.retry(operation, key, error, step, write)
    }
  }

  /**
   * Runs a write step. One that took long enough for the directory to be removed meanwhile (a
   * large batch, a wait in SQLite's own busy handler behind another process's commit) is checked
   * again after: written to the removed copy, it fails with a counted `CacheUnavailableError`
   * instead of resolving. (A shorter one leaves a window of its own length, microseconds.)
   */
  private commit<R>(operation: string, key: string | undefined, step: () => R): R {
    const started = performance.now()
    const result = step()
    if (performance.now() - started >= LONG_COMMIT_MS && this.staleNow(operation))
      throw this.failed(operation, key, directoryGone(key))
    return result
  }

  /**
   * Called as a write that committed at `committedAt` (`performance.now()`) is about to resolve.
   * One whose answer was held up (the event loop blocked meanwhile: another backend of this
   * process reopening, waiting for SQLite's lock; an eviction after it) checks the path again: if
   * the directory was removed or replaced since, the write went to a copy no other process opens
   * and fails with a counted `CacheUnavailableError` instead of resolving (an `incr` would hand
   * out a count the database the others use never had).
   */
  confirm(operation: string, key: string | undefined, committedAt: number): void {
    if (performance.now() - committedAt >= LONG_COMMIT_MS && this.staleNow(operation))
      throw this.failed(operation, key, directoryGone(key))
  }

  /**
   * Reopens the path if the database file this connection has open was removed (the cache
   * directory deleted under the process: a tmp cleaner, an `rm -rf`) or replaced, so this process
   * and the ones that open the path afterwards share one database again. Counted, emitted as an
   * `error` event and logged once per reopening. `now`: check with a `stat` now; otherwise only
   * if the last check is `READ_CHECK_MS` old (the read path). Throws a counted
   * `CacheUnavailableError` if the path cannot be opened (the next operation tries again).
   */
  follow(operation: string, now: boolean): void {
    const at = Date.now()
    // A connection another backend of this process closed (see EntryStore.reopen) is opened first.
    if (!now && at - this.checkedAt < READ_CHECK_MS && !this.store.closedBySibling) return
    this.checkedAt = at
    this.reopenIfStale(operation)
  }

  /**
   * Checks the path now, after a write: true if its files were removed or replaced meanwhile (the
   * write went to the old copy); the path is then reopened and reported as by {@link follow}.
   */
  private staleNow(operation: string): boolean {
    try {
      return this.reopenIfStale(operation)
    } catch {
      return true // reported; the write is reported failed by the caller either way
    }
  }

  /**
   * Reopens the path, reported once, if its files are no longer this connection's: true if they
   * were not. Throws a counted `CacheUnavailableError` if the path cannot be opened.
   */
  private reopenIfStale(operation: string): boolean {
    if (!this.store.isStale()) return false
    // Closed by another backend of this process reopening the same files: that one reported it.
    const quiet = this.store.closedBySibling
    let recovery: Recovery | undefined
    try {
      recovery = this.store.reopen()
    } catch (error) {
      this.checkedAt = 0 // the next read tries again too
      const message = `disk: ${this.store.file} was removed or replaced, and reopening it failed: ${(error as Error).message}`
      throw this.failed(operation, undefined, new CacheUnavailableError('disk', message, { cause: error }))
    }
    if (recovery !== undefined) this.report(recovery, operation)
    if (quiet) return true
    const message = `disk: ${this.store.file} was removed or replaced while in use; reopened the path (entries written before are gone)`
    this.observer.error(operation, new CacheError(message))
    this.log.warn(message)
    return true
  }

  /** Counts, emits (as an `error` event) and logs (a warning) that the database was rebuilt. */
  report(recovery: Recovery, operation: string): void {
    this.recovered = recovery.movedTo
    const code = (recovery.cause as { code?: string }).code ?? 'unknown error'
    const message = `disk: ${this.store.file} was damaged (${code}); moved it to ${recovery.movedTo} and started an empty cache`
    this.observer.error(operation, new CacheError(message, { cause: recovery.cause }))
    this.log.warn(message)
  }

  /** Handles the error a first attempt of `step` threw: waits and retries, rebuilds, or rethrows typed. */
  async retry<R>(
    operation: string,
    key: string | undefined,
    error: unknown,
    step: () => R,
    write = false,
  ): Promise<R> {
    const started = Date.now()
    let rebuilt = false
    let lookedAgain = false
    for (let attempt = 1; ; attempt++) {
      // A step run on the closed connection (better-sqlite3: "The database connection is not open").
      if (this.isClosed()) throw new CacheClosedError('disk')
      if (isBusy(error)) {
        if (Date.now() - started >= this.lockTimeoutMs) {
          throw this.failed(
            operation,
            key,
            new CacheTimeoutError('disk', operation, this.lockTimeoutMs, { cause: error }),
          )
        }
        await sleep(Math.min(2 ** attempt, 25) * (0.5 + Math.random()))
      } else if (isCorruption(error) && !rebuilt) {
        // Files removed or replaced under this connection (its log's index deleted, another
        // cache's file moved in) read as damage through it: reopen the path, never move a healthy
        // database aside as damaged. Nor one that reads as damaged through this connection
        // alone (its view of the log out of date, the file made again by another process while
        // this one opened it): moved aside only if it still does through a new connection.
        if (this.reopenIfStale(operation)) rebuilt = true
        else if (!lookedAgain) {
          lookedAgain = true
          this.lookAgain(operation, error)
        } else {
          rebuilt = true
          this.recover(operation, error)
        }
      } else if (isShortRead(error) && !rebuilt && this.reopenIfStale(operation)) {
        // A log removed under this connection reads short: reopened above; try again.
        rebuilt = true
      } else if (error instanceof Database.SqliteError) {
        const message = `disk: ${operation} failed: ${error.message} (${error.code})`
        throw this.failed(operation, key, new CacheUnavailableError('disk', message, { cause: error }))
      } else {
        throw error
      }
      if (this.isClosed()) throw new CacheClosedError('disk')
      try {
        // A write that waited for the lock checks the path again: the directory may have been
        // removed meanwhile, and the write must go to the database the others open.
        if (write) this.follow(operation, true)
        return write ? this.commit(operation, key, step) : step()
      } catch (next) {
        error = next
      }
    }
  }

  /** Opens the path again after `cause` (damage met): rebuilds if the new connection reads it as damaged too. */
  private lookAgain(operation: string, cause: unknown): void {
    try {
      this.store.reconnect()
    } catch (error) {
      if (isCorruption(error)) this.recover(operation, error)
      else {
        this.checkedAt = 0 // the next read opens the path too
        const message = `disk: ${this.store.file} read as damaged (${(cause as { code?: string }).code}), and opening it again failed: ${(error as Error).message}`
        throw this.failed(operation, undefined, new CacheUnavailableError('disk', message, { cause: error }))
      }
    }
  }

  private recover(operation: string, cause: unknown): void {
    try {
      this.report(this.store.rebuild(cause), operation)
    } catch (error) {
      const message = `disk: the database is damaged and could not be rebuilt: ${(error as Error).message}`
      throw this.failed(operation, undefined, new CacheUnavailableError('disk', message, { cause: error }))
    }
  }

  private failed(operation: string, key: string | undefined, error: Error): Error {
    this.observer.error(operation, error, key)
    return error
  }
}

/** A write step that took this long (ms) is followed by a second check that the directory is still the one it wrote to. */
const LONG_COMMIT_MS = 2

/** A write made while the directory was removed or replaced: not kept. */
export function directoryGone(key: string | undefined): CacheUnavailableError {
  return new CacheUnavailableError(
    'disk',
    `disk: the cache directory was removed or replaced while this write was made${key === undefined ? '' : ` (key "${key}")`}: it was not kept`,
  )
}

/** An I/O error from SQLite: a log removed under the connection reads short. */
function isShortRead(error: unknown): boolean {
  return error instanceof Database.SqliteError && error.code.startsWith('SQLITE_IOERR')
}
