import type { CacheBackend } from '@cache/core'
import { isCallerError } from './caller-error.js'
import type { LevelHealth } from './health.js'
import type { Level } from './level.js'

/**
 * Routes writes through a chain: the slowest level that answers first (so a value it refuses is
 * stored nowhere), then the faster ones. Levels skipped or failing remember the keys, to be
 * repaired before they are used again.
 */
export class LevelWriter {
  constructor(
    private readonly levels: readonly Level[],
    private readonly health: LevelHealth,
  ) {}

  /** Writes to the slowest level that answers first, then to the faster ones in parallel. */
  async all<R>(
    operation: string,
    keys: string | readonly string[],
    run: (backend: CacheBackend) => Promise<R>,
  ): Promise<R[]> {
    const { result, index } = await this.slowest(operation, keys, run)
    const rest = await this.faster(index, operation, keys, run)
    rest.push(result)
    return rest
  }

  /** Runs `run` on the slowest level that answers; slower levels it passed remember the keys. */
  async slowest<R>(
    operation: string,
    keys: string | readonly string[],
    run: (backend: CacheBackend) => Promise<R>,
    callerFailed?: () => boolean,
  ): Promise<{ result: R; index: number }> {
    let lastError: unknown
    for (let i = this.levels.length - 1; i >= 0; i--) {
      const level = this.levels[i]!
      if (!this.health.usable(level)) {
        missed(level, keys)
        continue
      }
      try {
        const result = await run(level.backend)
        level.breaker.success()
        count(level, operation, keys)
        return { result, index: i }
      } catch (error) {
        if (callerFailed?.()) throw error
        this.health.failed(level, operation, error, typeof keys === 'string' ? keys : undefined)
        missed(level, keys)
        lastError = error
      }
    }
    throw this.health.allDown(operation, lastError)
  }

  /** Runs `run` on the levels faster than `index`, in parallel; failures are counted, not thrown. */
  async faster<R>(
    index: number,
    operation: string,
    keys: string | readonly string[],
    run: (backend: CacheBackend) => Promise<R>,
  ): Promise<R[]> {
    const results: R[] = []
    const tasks: Promise<void>[] = []
    for (let i = 0; i < index; i++) {
      const level = this.levels[i]!
      if (!this.health.usable(level)) {
        missed(level, keys)
        continue
      }
      tasks.push(
        run(level.backend).then(
          (result) => {
            level.breaker.success()
            count(level, operation, keys)
            results.push(result)
          },
          (error) => {
            missed(level, keys)
            // A faster level refusing what the shared level took (say, too large for L1) must
            // not fail the write; it must not keep an older value either.
            this.health.failed(level, operation, error, typeof keys === 'string' ? keys : undefined, false)
            if (isCallerError(error)) this.evict(level, keys)
          },
        ),
      )
    }
    await Promise.all(tasks)
    return results
  }

  /** Deletes the keys from one level now, or remembers them if it is skipped or fails. */
  async evict(level: Level, keys: string | readonly string[]): Promise<void> {
    if (!level.closed) return missed(level, keys)
    try {
      if (typeof keys === 'string') await level.backend.delete(keys)
      else await level.backend.deleteMany(keys)
    } catch (error) {
      missed(level, keys)
      this.health.failed(level, 'evict', error, typeof keys === 'string' ? keys : undefined, false)
    }
  }
}

function missed(level: Level, keys: string | readonly string[]): void {
  if (typeof keys === 'string') level.missed(keys)
  else level.missedMany(keys)
}

function count(level: Level, operation: string, keys: string | readonly string[]): void {
  const n = typeof keys === 'string' ? 1 : keys.length
  if (operation === 'delete' || operation === 'deleteMany') level.stats.deletes += n
  else if (operation === 'set' || operation === 'setMany' || operation === 'add') level.stats.sets += n
}
