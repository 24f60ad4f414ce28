import type { CacheEntry } from '@cache/core'
import type { AccessTimes } from './access-times.js'
import type { DiskContext } from './context.js'
import type { LiveRow } from './store.js'

/** getMany reads at most this many keys with one statement. */
const MANY_CHUNK = 100

type Found<T> = CacheEntry<T> | undefined | Promise<CacheEntry<T> | undefined>

/**
 * The read path: a read waits only for the writes of its keys issued before it and not yet
 * committed; with nothing pending it is one prepared primary-key `SELECT`, synchronous unless the
 * value is in a file. Hits and misses are counted, and access times queued.
 */
export class Reads {
  constructor(
    private readonly ctx: DiskContext,
    private readonly accessTimes: AccessTimes,
  ) {}

  /** The live entry of `key`. */
  entry<T>(key: string): Found<T> {
    if (this.ctx.order.idle()) return this.lookup<T>(key)
    return this.ctx.order.inOrder([key], false, () => this.lookup<T>(key))
  }

  /** True if `key` holds a live entry (its value is not read). */
  async has(key: string): Promise<boolean> {
    const { ctx } = this
    const lookup = () => ctx.lock.run('has', key, () => ctx.store.get(ctx.ns, key))
    ctx.inFlight.start()
    try {
      const row = await (ctx.order.idle() ? lookup() : ctx.order.inOrder([key], false, lookup))
      return row !== undefined && (row[2] === null || row[2] > ctx.settings.now())
    } finally {
      ctx.inFlight.end()
    }
  }

  /** The values of `keys`: up to 100 keys a SQLite statement (a primary-key lookup a key), then a decode per hit. */
  many<T>(keys: readonly string[]): Promise<(T | undefined)[]> {
    if (this.ctx.order.idle()) return this.readMany<T>(keys)
    return this.ctx.order.inOrder(keys, false, () => this.readMany<T>(keys))
  }

  /** Reads every chunk, counted in flight throughout (two integer updates): close() waits for the last one. */
  private async readMany<T>(keys: readonly string[]): Promise<(T | undefined)[]> {
    const { ctx } = this
    const out = new Array<T | undefined>(keys.length)
    ctx.inFlight.start()
    try {
      for (let start = 0; start < keys.length; start += MANY_CHUNK) {
        const chunk = keys.length <= MANY_CHUNK ? keys : keys.slice(start, start + MANY_CHUNK)
        const lookup = () => ctx.store.getMany(ctx.ns, chunk)
        let rows: (LiveRow | undefined)[]
        try {
          ctx.lock.follow('get', false)
          rows = lookup()
        } catch (error) {
          rows = await ctx.lock.retry('get', undefined, error, lookup)
        }
        for (let i = 0; i < chunk.length; i++) {
          const entry = this.found<T>(chunk[i]!, rows[i], false)
          out[start + i] = entry instanceof Promise ? (await entry)?.value : entry?.value
        }
      }
    } finally {
      ctx.inFlight.end()
    }
    return out
  }

  private lookup<T>(key: string): Found<T> {
    const { ctx } = this
    let row: LiveRow | undefined
    try {
      ctx.lock.follow('get', false)
      row = ctx.store.get(ctx.ns, key)
    } catch (error) {
      return this.lookupAgain<T>(key, error)
    }
    return this.found<T>(key, row, false)
  }

  /** A read whose first attempt failed (a busy database): retried, counted in flight for close(). */
  private async lookupAgain<T>(key: string, error: unknown): Promise<CacheEntry<T> | undefined> {
    const { ctx } = this
    ctx.inFlight.start()
    try {
      const again = await ctx.lock.retry('get', key, error, () => ctx.store.get(ctx.ns, key))
      return await this.found<T>(key, again, false)
    } finally {
      ctx.inFlight.end()
    }
  }

  private found<T>(key: string, row: LiveRow | undefined, retried: boolean): Found<T> {
    const now = this.ctx.settings.now()
    const expiresAt = row?.[2]
    if (row === undefined || (expiresAt !== null && expiresAt! <= now)) {
      this.ctx.observer.miss(key)
      return undefined
    }
    if (row[1] !== null) return this.foundInFile<T>(key, row, retried)
    const value = this.ctx.codec.decode(row[0]!) as T
    this.accessTimes.read(key, row[3], now)
    this.ctx.observer.hit(key)
    return expiresAt === null ? { value } : { value, expiresAt: expiresAt! }
  }

  private async foundInFile<T>(
    key: string,
    row: LiveRow,
    retried: boolean,
  ): Promise<CacheEntry<T> | undefined> {
    const { ctx } = this
    // Counted in flight until the file is read and decoded: close() waits for it.
    ctx.inFlight.start()
    try {
      const file = row[1]!
      const bytes = await ctx.files.load('get', key, file, row[4] - key.length)
      if (bytes === undefined) {
        // The file went away: most likely another process replaced the entry meanwhile.
        const again = await ctx.lock.run('get', key, () => ctx.store.get(ctx.ns, key))
        if (!retried && again !== undefined && again[1] !== file) return this.found<T>(key, again, true)
        if (again?.[1] === file) await ctx.lock.run('get', key, () => ctx.store.dropIfFile(ctx.ns, key, file))
        ctx.observer.miss(key)
        return undefined
      }
      const value = ctx.codec.decode(bytes) as T
      this.accessTimes.read(key, row[3], ctx.settings.now())
      ctx.observer.hit(key)
      return row[2] === null ? { value } : { value, expiresAt: row[2] }
    } finally {
      ctx.inFlight.end()
    }
  }
}
