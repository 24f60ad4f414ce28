import { randomBytes } from 'node:crypto'
import { mkdirSync } from 'node:fs'
import { mkdir, open, readdir, readFile, rename, stat, unlink } from 'node:fs/promises'
import { join } from 'node:path'

/**
 * Large values, one file each under `<dir>/values/<2 hex>/<30 hex>.val`. Names are random and
 * never derived from a key. A file is written under `<dir>/tmp` and renamed into place, so a
 * reader never sees half a file; it is referenced by the index only after the rename.
 */
export class ValueFiles {
  readonly valuesDir: string
  readonly tmpDir: string
  private readonly madeDirs = new Set<string>()

  constructor(dir: string) {
    this.valuesDir = join(dir, 'values')
    this.tmpDir = join(dir, 'tmp')
    mkdirSync(this.valuesDir, { recursive: true, mode: 0o700 })
    mkdirSync(this.tmpDir, { recursive: true, mode: 0o700 })
  }

  /** Writes bytes to a new private file; returns its name relative to the values directory. */
  async write(bytes: Buffer): Promise<string> {
    const id = randomBytes(16).toString('hex')
    const bucket = id.slice(0, 2)
    const name = `${bucket}/${id.slice(2)}.val`
    const tmp = join(this.tmpDir, `${id}.tmp`)
    const handle = await open(tmp, 'wx', 0o600)
    try {
      await handle.writeFile(bytes)
    } finally {
      await handle.close()
    }
    try {
      if (!this.madeDirs.has(bucket)) {
        await mkdir(join(this.valuesDir, bucket), { recursive: true, mode: 0o700 })
        this.madeDirs.add(bucket)
      }
      await rename(tmp, join(this.valuesDir, name))
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
}
