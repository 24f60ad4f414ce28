import { type ChildProcess, fork, spawn } from 'node:child_process'
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import { CacheConfigError, CacheUnavailableError } from '@cache/core'
import { afterEach, describe, expect, it } from 'vitest'
import { diskBackend } from '../src/index.js'

const HOLDER = new URL('./fixtures/set-up-lock-holder.mjs', import.meta.url)
const OPEN_ONCE = new URL('./fixtures/open-once.mjs', import.meta.url)
const pause = new Int32Array(new SharedArrayBuffer(4))
let dir: string
const started: ChildProcess[] = []

afterEach(() => {
  for (const child of started.splice(0)) if (child.exitCode === null) child.kill('SIGKILL')
  rmSync(dir, { recursive: true, force: true })
})

/** A new cache path (not made yet) in a new temporary directory. */
function newPath(): string {
  dir = mkdtempSync(join(tmpdir(), 'cache-disk-lock-'))
  return join(dir, 'cache')
}

/**
 * Starts a process opening a new cache at `path`, stopped inside its set-up lock (see the
 * fixture); resolves once it is stopped there. `release()` lets it go on.
 */
async function holder(path: string, mode: 'hold' | 'before-write') {
  const release = join(dir, `release-${started.length}`)
  const child = fork(HOLDER, [path, mode, release], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  started.push(child)
  await new Promise((resolve, reject) => {
    child.once('message', resolve)
    child.once('exit', (code) => reject(new Error(`the holder exited (${code}) before taking the lock`)))
  })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  return { child, exited, release: () => writeFileSync(release, '') }
}

/** A process of this host that has nothing to do with any cache (what a reused pid names). */
function bystander(): ChildProcess {
  const child = spawn('sleep', ['30'], { stdio: 'ignore' })
  started.push(child)
  return child
}

/** Fields 3 on of `/proc/<pid>/stat` (field 3, the state, first); undefined once it is gone. */
function procStat(pid: number): string[] | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return text.slice(text.lastIndexOf(')') + 2).split(' ')
  } catch {
    return undefined
  }
}

/** The lock's text as the README describes it: pid, host name, start time, thread id. */
function identity(pid: number, start: string): string {
  return `${pid}\n${hostname()}\n${start}\n0\n`
}

/** Opens the path in this process, sets and reads a key: how long the open blocked, and the outcome. */
async function openHere(path: string): Promise<{ blockedMs: number; outcome: unknown }> {
  const before = Date.now()
  let cache: ReturnType<typeof diskBackend>
  try {
    cache = diskBackend({ path, logger: false, pruneInterval: false })
  } catch (error) {
    return { blockedMs: Date.now() - before, outcome: String(error) }
  }
  const blockedMs = Date.now() - before
  await cache.set('k', 'v')
  const outcome = await cache.get('k')
  await cache.close()
  return { blockedMs, outcome }
}

/** Opens the path in another process (bounded: killed after 8 s): how long that took and how it ended. */
async function openElsewhere(
  path: string,
): Promise<{ ms: number; at?: number; value?: unknown; error?: string }> {
  const child = spawn(process.execPath, [fileURLToPath(OPEN_ONCE), path], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  started.push(child)
  const timer = setTimeout(() => child.kill('SIGKILL'), 8000)
  const begun = Date.now()
  let out = ''
  child.stdout!.on('data', (data) => {
    out += data
  })
  await new Promise((resolve) => child.once('close', resolve))
  clearTimeout(timer)
  const line = out.trim().split('\n').pop()
  return line ? JSON.parse(line) : { ms: Date.now() - begun, error: 'killed: never returned' }
}

/**
 * Runs `operations` together in a running process and watches its event loop with a 10 ms timer:
 * how long they took, the longest the timer was held up, and how each ended.
 */
async function watched(operations: () => Promise<unknown>[]) {
  let last = Date.now()
  let longestGapMs = 0
  const timer = setInterval(() => {
    const now = Date.now()
    longestGapMs = Math.max(longestGapMs, now - last)
    last = now
  }, 10)
  const begun = Date.now()
  const results = await Promise.allSettled(operations())
  const tookMs = Date.now() - begun
  clearInterval(timer)
  longestGapMs = Math.max(longestGapMs, Date.now() - last)
  const outcomes = results.map((result) =>
    result.status === 'fulfilled'
      ? 'done'
      : result.reason instanceof CacheUnavailableError
        ? 'unavailable'
        : String(result.reason),
  )
  return { tookMs, longestGapMs, outcomes }
}

describe('a set-up lock whose holder is gone', { timeout: 30_000 }, () => {
  // Before: process.kill(pid, 0) answers for a zombie as for a live process: the open blocked 5 s,
  // then failed (CacheConfigError … EEXIST).
  it('a holder SIGKILLed and not yet reaped (a zombie) is taken for dead: the open neither waits nor fails', async () => {
    const path = newPath()
    const { child } = await holder(path, 'hold')
    child.kill('SIGKILL')
    // Not reaped while this process runs synchronously: its exit is handled on a later turn.
    const until = Date.now() + 5000
    while (procStat(child.pid!)?.[0] !== 'Z' && Date.now() < until) Atomics.wait(pause, 0, 0, 5)
    expect(procStat(child.pid!)?.[0]).toBe('Z')
    const { blockedMs, outcome } = await openHere(path)
    expect({ outcome, blockedOverOneSecond: blockedMs > 1000 }).toEqual({
      outcome: 'v',
      blockedOverOneSecond: false,
    })
  })

  // Before: a worker_thread terminated while it created cache.db (worker.terminate(), as pools do on
  // a timeout) left a lock naming this live process, its start time and a dead thread: every open
  // in this process blocked 5 s and failed with CacheConfigError until the lock was 10 s old.
  it('a worker_thread of this process terminated holding it: an open in this process goes on within a second', async () => {
    const path = newPath()
    const worker = new Worker(
      `const { threadId, parentPort, workerData } = require('node:worker_threads')
       const fs = require('node:fs')
       const stat = fs.readFileSync('/proc/self/stat', 'latin1')
       const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]
       const text = process.pid + '\\n' + require('node:os').hostname() + '\\n' + start + '\\n' + threadId + '\\n'
       fs.mkdirSync(workerData, { recursive: true })
       fs.writeFileSync(workerData + '/cache.db.set-up.' + process.pid + '-' + threadId, text)
       fs.writeFileSync(workerData + '/cache.db.set-up', text)
       parentPort.postMessage(threadId)
       setInterval(() => {}, 1000)`,
      { eval: true, workerData: path },
    )
    const workerThread = await new Promise<number>((resolve) => worker.once('message', resolve))
    await worker.terminate()
    const stray = join(path, `cache.db.set-up.${process.pid}-${workerThread}`)
    const old = new Date(Date.now() - 1000)
    utimesSync(stray, old, old)
    expect(readFileSync(join(path, 'cache.db.set-up'), 'utf8')).toContain(`\n${workerThread}\n`)
    const { blockedMs, outcome } = await openHere(path)
    expect({ outcome, blockedOverOneSecond: blockedMs > 1000 }).toEqual({
      outcome: 'v',
      blockedOverOneSecond: false,
    })
    expect(existsSync(join(path, 'cache.db.set-up'))).toBe(false)
    expect(existsSync(stray)).toBe(false)
  })

  // Before: killed between the exclusive create and the write, it left an empty lock that was never
  // taken for dead: every open blocked 5 s and failed (EEXIST) until the lock was 10 s old.
  it('a taker killed before it wrote its pid leaves no lock that stops the next open', async () => {
    const path = newPath()
    const { child, exited } = await holder(path, 'before-write')
    child.kill('SIGKILL')
    await exited
    const { blockedMs, outcome } = await openHere(path)
    expect({ outcome, blockedOverOneSecond: blockedMs > 1000 }).toEqual({
      outcome: 'v',
      blockedOverOneSecond: false,
    })
  })

  // Before: any live pid counted as the holder: the open blocked 5 s, then failed (EEXIST).
  it('a lock naming a live process of this host started after the taker (a reused pid): the open neither waits nor fails', async () => {
    const path = newPath()
    mkdirSync(path)
    const other = bystander()
    const start = Number(procStat(other.pid!)![19])
    writeFileSync(join(path, 'cache.db.set-up'), identity(other.pid!, String(start - 1)))
    const { blockedMs, outcome } = await openHere(path)
    expect({ outcome, blockedOverOneSecond: blockedMs > 1000 }).toEqual({
      outcome: 'v',
      blockedOverOneSecond: false,
    })
  })

  // Before: a lock dated ahead of the clock was never old enough to be stale.
  it('a lock dated an hour ahead (the clock stepped back since): the open neither waits nor fails', async () => {
    const path = newPath()
    mkdirSync(path)
    const other = bystander()
    const lock = join(path, 'cache.db.set-up')
    writeFileSync(lock, identity(other.pid!, procStat(other.pid!)![19]!))
    const hourAhead = new Date(Date.now() + 3600_000)
    utimesSync(lock, hourAhead, hourAhead)
    const { blockedMs, outcome } = await openHere(path)
    expect({ outcome, blockedOverOneSecond: blockedMs > 1000 }).toEqual({
      outcome: 'v',
      blockedOverOneSecond: false,
    })
  })

  // Before: each of these blocked the open 5 s, then failed (EEXIST), until the lock was 10 s old.
  for (const [what, text] of [
    ['empty', ''],
    ['garbage', '\0\0garbage'],
    ["0.1.0's (pid and host only), naming a live process", 'bystander'],
  ] as const) {
    it(`a ${what} lock: the open waits at most half a second, then removes it and opens`, async () => {
      const path = newPath()
      mkdirSync(path)
      const content = text === 'bystander' ? `${bystander().pid}\n${hostname()}\n` : text
      writeFileSync(join(path, 'cache.db.set-up'), content)
      const { blockedMs, outcome } = await openHere(path)
      expect({ outcome, blockedOverOneSecond: blockedMs > 1000 }).toEqual({
        outcome: 'v',
        blockedOverOneSecond: false,
      })
    })
  }
})

describe('a set-up lock held by a live process', { timeout: 30_000 }, () => {
  it('is waited for: an open in another process goes on once the holder lets it go', async () => {
    const path = newPath()
    const held = await holder(path, 'hold')
    const opening = openElsewhere(path)
    await new Promise((resolve) => setTimeout(resolve, 1000))
    const releasedAt = Date.now()
    held.release()
    const result = await opening
    expect(await held.exited).toBe(0)
    expect({ value: result.value, endedAfterRelease: result.at! >= releasedAt }).toEqual({
      value: 1,
      endedAfterRelease: true,
    })
  })

  // Before: each set blocked the event loop (no timer tick for 5 s), then failed.
  it("a running process's directory removed and made again meanwhile: its sets fail fast, the event loop runs, and they succeed once the lock is let go", async () => {
    const path = newPath()
    const cache = diskBackend({ path, logger: false, pruneInterval: false })
    cache.on('error', () => {})
    await cache.set('a', 1)
    rmSync(path, { recursive: true, force: true })
    const held = await holder(path, 'hold')
    const during = await watched(() => [1, 2, 3, 4, 5].map((i) => cache.set(`k${i}`, i)))
    expect({
      outcomes: [...new Set(during.outcomes)],
      longestGapUnder500ms: during.longestGapMs < 500,
      tookUnder1s: during.tookMs < 1000,
    }).toEqual({ outcomes: ['unavailable'], longestGapUnder500ms: true, tookUnder1s: true })
    held.release()
    expect(await held.exited).toBe(0)
    await cache.set('b', 2)
    expect(await cache.get('b')).toBe(2)
    await cache.close()
  })

  // Before: each set blocked the event loop 5 s, then failed, until the lock was 10 s old.
  it('a garbage lock in the remade directory of a running process: its sets never block the event loop for long, and succeed within a second', async () => {
    const path = newPath()
    const cache = diskBackend({ path, logger: false, pruneInterval: false })
    cache.on('error', () => {})
    await cache.set('a', 1)
    rmSync(path, { recursive: true, force: true })
    mkdirSync(path)
    writeFileSync(join(path, 'cache.db.set-up'), '\0\0garbage')
    const until = Date.now() + 1500
    const gaps: number[] = []
    let outcome = ''
    while (outcome !== 'done' && Date.now() < until) {
      const round = await watched(() => [cache.set('b', 2)])
      gaps.push(round.longestGapMs)
      outcome = round.outcomes[0]!
      if (outcome !== 'done') await new Promise((resolve) => setTimeout(resolve, 50))
    }
    expect({ outcome, longestGapUnder500ms: Math.max(...gaps) < 500 }).toEqual({
      outcome: 'done',
      longestGapUnder500ms: true,
    })
    expect(await cache.get('b')).toBe(2)
    await cache.close()
  })
})

describe('something at cache.db.set-up that is not a lock', { timeout: 30_000 }, () => {
  // Before: the open spun forever (EEXIST, then stat found nothing: tried again at once), its event
  // loop frozen.
  it('a dangling symbolic link: the open fails at once with CacheConfigError saying so', async () => {
    const path = newPath()
    mkdirSync(path)
    symlinkSync(join(path, 'gone'), join(path, 'cache.db.set-up'))
    const result = await openElsewhere(path)
    expect(result.error).toMatch(
      /^CacheConfigError: .*cache\.db\.set-up is a symbolic link, not a set-up lock/,
    )
    expect(result.ms).toBeLessThan(2000)
  })

  // Before: CacheConfigError "… Path is a directory: rm returned EISDIR", at every open.
  it('a directory: the open fails with CacheConfigError saying so', async () => {
    const path = newPath()
    const lock = join(path, 'cache.db.set-up')
    mkdirSync(lock, { recursive: true })
    const old = new Date(Date.now() - 60_000)
    utimesSync(lock, old, old)
    expect(() => diskBackend({ path, logger: false, pruneInterval: false })).toThrow(CacheConfigError)
    expect(() => diskBackend({ path, logger: false, pruneInterval: false })).toThrow(
      /cache\.db\.set-up is a directory, not a set-up lock/,
    )
    expect(existsSync(lock)).toBe(true)
  })
})

describe('a cache directory on a read-only file system', { timeout: 30_000 }, () => {
  /**
   * Opens `<mount>/<below>` in another process, in a mount namespace of its own where `<mount>`
   * is a read-only file system (root: `unshare -m`; others: `unshare -rm`, a user namespace).
   */
  async function openReadOnly(below: string): Promise<string> {
    newPath()
    const mount = join(dir, 'ro')
    mkdirSync(mount)
    const script = 'mount -t tmpfs -o ro none "$1" && exec "$2" "$3" "$1/$4"'
    const flags = process.getuid?.() === 0 ? ['-m'] : ['-r', '-m']
    const child = spawn(
      'unshare',
      [...flags, 'sh', '-c', script, 'sh', mount, process.execPath, fileURLToPath(OPEN_ONCE), below],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    )
    started.push(child)
    let out = ''
    let err = ''
    child.stdout!.on('data', (data) => {
      out += data
    })
    child.stderr!.on('data', (data) => {
      err += data
    })
    await new Promise((resolve) => child.once('close', resolve))
    const line = out.trim().split('\n').pop()
    if (!line) throw new Error(`could not make a read-only file system here (unshare, mount): ${err}`)
    return JSON.parse(line).error
  }

  // Before: "ENOENT: no such file or directory, mkdir …" (Node's recursive mkdir reports ENOENT
  // for EROFS), for the cache directory and for its `values` directory alike.
  it('a new cache directory there: CacheConfigError names the read-only file system, not ENOENT', async () => {
    const error = await openReadOnly('cache')
    expect(error).toMatch(/^CacheConfigError: .*EROFS/)
    expect(error).not.toMatch(/ENOENT/)
  })

  it('the cache directory is the read-only mount itself: CacheConfigError names the read-only file system, not ENOENT', async () => {
    const error = await openReadOnly('')
    expect(error).toMatch(/^CacheConfigError: .*EROFS/)
    expect(error).not.toMatch(/ENOENT/)
  })
})
