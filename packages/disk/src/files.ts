import { CacheUnavailableError } from '@cache/core'
import type { CacheObserver } from '@cache/core/backend'
import { randomBytes } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { open, readdir, readFile, rename, stat, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { makeDirectory } from './paths.js'

/**
 * Large values, one file each under `<dir>/values/<2 hex>/<30 hex>.val`. Names are random and
 * never derived from a key. A file is written under `<dir>/tmp` and renamed into place, so a
 * reader never sees half a file; it is referenced by the index only after the rename.
 */
export class ValueFiles {
  readonly valuesDir: string
  readonly tmpDir: string
  private readonly madeDirs = new Set<string>()

  /** `observer`: where failed file reads, writes and removals are counted and emitted. */
  constructor(
    dir: string,
    private readonly observer: CacheObserver,
  ) {
    this.valuesDir = join(dir, 'values')
    this.tmpDir = join(dir, 'tmp')
    makeDirectory(this.valuesDir)
    makeDirectory(this.tmpDir)
  }

  /** {@link write} for a `set` of `key`; a failure (disk full, permissions) is a counted `CacheUnavailableError`. */
  /** Whether the value file `name` is (still) in the directory. */
  exists(name: string): boolean {
    return existsSync(join(this.valuesDir, name))
  }

  save(key: string, bytes: Buffer): Promise<string> {
    return this.reported('set', key, this.write(bytes))
  }

  /** {@link read} for `operation` on `key`; a failure other than a missing file is a counted `CacheUnavailableError`. */
  load(operation: string, key: string, name: string, length: number): Promise<Buffer | undefined> {
    return this.reported(operation, key, this.read(name, length))
  }

  /**
   * {@link load}, synchronously: for a read inside a write transaction (an `incr` of a counter
   * that was stored in a file).
   */
  loadNow(operation: string, key: string, name: string, length: number): Buffer | undefined {
    try {
      const bytes = readFileSync(join(this.valuesDir, name))
      return bytes.length === length ? bytes : undefined
    } catch (cause) {
      if ((cause as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw this.failure(operation, key, cause)
    }
  }

  /** Removes files after their entries are gone; a failure is reported, and the sweep retries later. */
  async discard(names: Iterable<string | null>): Promise<void> {
    try {
      await this.remove(names)
    } catch (error) {
      this.observer.error('unlink', error)
    }
  }

  /** Writes bytes to a new private file; returns its name relative to the values directory. */
  async write(bytes: Buffer): Promise<string> {
    const id = randomBytes(16).toString('hex')
    const bucket = id.slice(0, 2)
    const name = `${bucket}/${id.slice(2)}.val`
    const tmp = join(this.tmpDir, `${id}.tmp`)
    // The temp or value directory may have been removed under the process (a cleanup of the
    // cache directory): each is recreated once when missing, and the step retried.
    const handle = await open(tmp, 'wx', 0o600).catch(async (error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error
      makeDirectory(this.tmpDir)
      return open(tmp, 'wx', 0o600)
    })
    try {
      await handle.writeFile(bytes)
    } finally {
      await handle.close()
    }
    const bucketDir = join(this.valuesDir, bucket)
    try {
      if (!this.madeDirs.has(bucket)) {
        makeDirectory(bucketDir)
        this.madeDirs.add(bucket)
      }
      await rename(tmp, join(this.valuesDir, name)).catch(async (error: NodeJS.ErrnoException) => {
        if (error.code !== 'ENOENT') throw error
        makeDirectory(bucketDir)
        await rename(tmp, join(this.valuesDir, name))
      })
    } catch (error) {
      await unlink(tmp).catch(() => {})
      throw error
    }
    return name
  }

  /** The file's bytes, or `undefined` if it is gone (removed by another process) or not `length` long. */
  async read(name: string, length: number): Promise<Buffer | undefined> {
    try {
      const bytes = await readFile(join(this.valuesDir, name))
      return bytes.length === length ? bytes : undefined
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw error
    }
  }

  /** Removes files; ones already gone are fine. */
  async remove(names: Iterable<string | null>): Promise<void> {
    const pending: Promise<void>[] = []
    for (const name of names) {
      if (name === null) continue
      pending.push(
        unlink(join(this.valuesDir, name)).catch((error: NodeJS.ErrnoException) => {
          if (error.code !== 'ENOENT') throw error
        }),
      )
    }
    await Promise.all(pending)
  }

  /**
   * Removes files no entry references (left by a process killed between writing a file and
   * committing its entry, or between deleting an entry and its file) and stale temp files.
   * Only files older than `minAgeMs` are touched, so a write in flight in another process is safe.
   */
  async sweep(isReferenced: (name: string) => boolean, minAgeMs: number): Promise<number> {
    const cutoff = Date.now() - minAgeMs
    let removed = 0
    const removeIfOld = async (path: string) => {
      const info = await stat(path).catch(() => undefined)
      if (info === undefined || info.mtimeMs > cutoff) return
      await unlink(path).then(
        () => removed++,
        () => {},
      )
    }
    for (const name of await readdir(this.tmpDir).catch(() => [])) await removeIfOld(join(this.tmpDir, name))
    for (const bucket of await readdir(this.valuesDir).catch(() => [])) {
      const names = await readdir(join(this.valuesDir, bucket)).catch(() => [])
      for (const name of names) {
        const relative = `${bucket}/${name}`
        if (!isReferenced(relative)) await removeIfOld(join(this.valuesDir, relative))
      }
    }
    return removed
  }

  private async reported<R>(operation: string, key: string, task: Promise<R>): Promise<R> {
    try {
      return await task
    } catch (cause) {
      throw this.failure(operation, key, cause)
    }
  }

  /** A failed file operation as a counted `CacheUnavailableError`. */
  private failure(operation: string, key: string, cause: unknown): CacheUnavailableError {
    const message = `disk: ${operation} failed on a value file: ${(cause as Error).message}`
    const error = new CacheUnavailableError('disk', message, { cause })
    this.observer.error(operation, error, key)
    return error
  }
}
