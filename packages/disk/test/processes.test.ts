import { fork } from 'node:child_process'
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { diskBackend } from '../src/index.js'

const WORKER = new URL('./fixtures/worker.mjs', import.meta.url)
let dir: string

afterEach(() => {
  rmSync(dir, { recursive: true, force: true })
})

function newDir(): string {
  dir = mkdtempSync(join(tmpdir(), 'cache-disk-proc-'))
  return dir
}

/**
 * Runs workers to completion, started together once all are ready; rejects on a non-zero exit.
 * Resolves with the last message each worker sent.
 */
async function runWorkers(argsList: string[][]): Promise<unknown[]> {
  const children = argsList.map((args) =>
    fork(WORKER, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }),
  )
  const last: unknown[] = children.map(() => undefined)
  const ready = children.map(
    (child) => new Promise<void>((resolve) => child.once('message', () => resolve())),
  )
  const done = children.map(
    (child, i) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
        child.on('message', (message) => {
          last[i] = message
        })
        child.on('exit', (code, signal) => {
          clearTimeout(timer)
          if (code === 0) resolve()
          else reject(new Error(`worker ${argsList[i]!.join(' ')} exited with ${code ?? signal}`))
        })
      }),
  )
  await Promise.race([Promise.all(ready), Promise.all(done)])
  for (const child of children) child.send('go')
  await Promise.all(done)
  return last
}

describe('several processes on one directory', { timeout: 90_000 }, () => {
  it('4 processes × 2500 incr() give exactly 10 000', async () => {
    const path = newDir()
    // Create the database first so the workers race on operations, not on set-up.
    await diskBackend({ path }).close()
    await runWorkers([1, 2, 3, 4].map(() => [path, 'incr', '2500']))
    const cache = diskBackend({ path, namespace: 'shared' })
    expect(await cache.get('counter')).toBe(10_000)
    await cache.close()
  })

  it('4 processes × 250 async atomicUpdate() lose nothing', async () => {
    const path = newDir()
    await diskBackend({ path }).close()
    const reports = await runWorkers([1, 2, 3, 4].map((id) => [path, 'atomicUpdate', '250', String(id)]))
    const calls = reports.reduce<number>((sum, report) => sum + (report as { calls: number }).calls, 0)
    // More calls than updates means writers really collided and were retried.
    console.log(`atomicUpdate: ${calls} fn calls for 1000 updates`)
    const cache = diskBackend({ path, namespace: 'shared' })
    const list = (await cache.get<string[]>('list'))!
    expect(list).toHaveLength(1000)
    expect(new Set(list).size).toBe(1000)
    await cache.close()
  })

  it('an entry another process read is spared when this process evicts to maxSize', async () => {
    const path = newDir()
    const cache = diskBackend({ path, namespace: 'shared', maxSize: 3_100, pruneInterval: false })
    for (const key of ['a', 'b', 'c']) await cache.set(key, 'x'.repeat(998)) // 1 001 bytes each
    const [read] = await runWorkers([[path, 'read', '1', 'a']])
    expect(read).toEqual({ value: 'x'.repeat(998) })
    await cache.set('d', 'x'.repeat(998)) // over 3 100 bytes: one entry goes, not the one just read
    expect(await cache.getMany(['a', 'b', 'c', 'd'])).toEqual([
      'x'.repeat(998),
      undefined,
      'x'.repeat(998),
      'x'.repeat(998),
    ])
    await cache.close()
  })

  it('another process reading a key again makes it its most recently used, whatever it read in between', async () => {
    const path = newDir()
    const cache = diskBackend({ path, namespace: 'shared', maxSize: 3_100, pruneInterval: false })
    for (const key of ['c', 'a', 'b']) await cache.set(key, 'x'.repeat(998)) // 1 001 bytes each
    const [read] = await runWorkers([[path, 'read-in-order', '1', 'a,b,a']]) // order of use: c, b, a
    expect(read).toEqual({ values: ['x'.repeat(998), 'x'.repeat(998), 'x'.repeat(998)] })
    await cache.set('d', 'y'.repeat(1_998)) // 2 001 bytes, 5 004 in all: c, then b, go
    expect(await cache.getMany(['a', 'b', 'c', 'd'])).toEqual([
      'x'.repeat(998),
      undefined,
      undefined,
      'y'.repeat(1_998),
    ])
    await cache.close()
  })

  it('a writer killed with SIGKILL mid-write leaves a cache that opens, reads and writes', async () => {
    const path = newDir()
    const child = fork(WORKER, [path, 'write-forever', '0'], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    const exited = new Promise((resolve) => child.on('exit', resolve))
    await new Promise<void>((resolve, reject) => {
      child.on('message', () => resolve())
      child.on('exit', () => reject(new Error('worker stopped before writing')))
    })
    // Let it run into the middle of some writes, then kill it without warning.
    await new Promise((resolve) => setTimeout(resolve, 150))
    child.kill('SIGKILL')
    await exited

    const cache = diskBackend({ path, namespace: 'shared' })
    const writes = (await cache.get<number>('writes'))!
    expect(writes).toBeGreaterThan(50)
    expect(await cache.get('small:0')).toMatchObject({ text: 'x'.repeat(100) })
    const big = await cache.get<Buffer>('big:0')
    expect(Buffer.isBuffer(big) && big.length === 200_000 && big.every((b) => b === 7)).toBe(true)
    await cache.set('after', 'crash')
    expect(await cache.get('after')).toBe('crash')
    // Files of writes that never committed are swept; every referenced file survives.
    await cache.prune({ orphanAgeMs: 0 })
    expect(readdirSync(join(path, 'tmp'))).toEqual([])
    for (let i = 0; i < 20; i++) {
      const value = await cache.get<Buffer>(`big:${i}`)
      if (value !== undefined) expect(value.length).toBe(200_000)
    }
    await cache.close()
  })
})

describe('the cache directory removed under a running process', { timeout: 60_000 }, () => {
  const HOLDER = new URL('./fixtures/holder.mjs', import.meta.url)
  type Reply = { result?: unknown; failed?: string; errors: string[]; errorCount: number }

  /** A child process holding a backend on `path` open, answering one request at a time. */
  async function holder(path: string) {
    const child = fork(HOLDER, [path], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    const timer = setTimeout(() => child.kill('SIGKILL'), 50_000)
    child.on('exit', () => clearTimeout(timer))
    await new Promise((resolve) => child.once('message', resolve))
    const ask = (message: object) =>
      new Promise<Reply>((resolve) => {
        child.once('message', (reply) => resolve(reply as Reply))
        child.send(message)
      })
    const exit = () => new Promise((resolve) => child.once('exit', resolve).send({ op: 'exit' }))
    return { ask, exit }
  }

  it("a process that opens the path afterwards sees the first process's later deletes and sets", async () => {
    const path = join(newDir(), 'cache')
    const a = await holder(path)
    expect((await a.ask({ op: 'set', key: 'report', value: 'before' })).failed).toBeUndefined()
    rmSync(path, { recursive: true, force: true }) // a tmp cleaner, an `rm -rf` of the cache
    const b = diskBackend({ path, pruneInterval: false, logger: false })
    await b.set('report', 'computed-by-B') // B fills the fresh database
    const invalidated = await a.ask({ op: 'delete', key: 'report' }) // resolves in A
    expect(invalidated.failed).toBeUndefined()
    expect(await b.get('report')).toBeUndefined()
    const set = await a.ask({ op: 'set', key: 'plain', value: 'acked-by-A' })
    expect(set.failed).toBeUndefined()
    expect(await b.get('plain')).toBe('acked-by-A')
    // A said so, once: the reopening is an error event and counted.
    expect(set.errors).toHaveLength(1)
    expect(set.errors[0]).toMatch(/removed or replaced/)
    expect(set.errorCount).toBe(1)
    await b.close()
    await a.exit()
  })

  it('a process that keeps reading after the directory is removed sees the new database within the bound', async () => {
    const path = join(newDir(), 'cache')
    const a = await holder(path)
    await a.ask({ op: 'set', key: 'k', value: 'old' })
    rmSync(path, { recursive: true, force: true })
    const b = diskBackend({ path, pruneInterval: false, logger: false })
    await b.set('k', 'new')
    // Reads check the path at most once a second (see the README): poll for at most 5 s.
    let seen: unknown
    for (let i = 0; i < 50 && seen !== 'new'; i++) {
      seen = (await a.ask({ op: 'get', key: 'k' })).result
      if (seen !== 'new') await new Promise((resolve) => setTimeout(resolve, 100))
    }
    expect(seen).toBe('new')
    await b.close()
    await a.exit()
  })
})
