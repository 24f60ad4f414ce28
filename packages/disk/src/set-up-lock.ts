import {
  closeSync,
  existsSync,
  linkSync,
  lstatSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  type Stats,
  writeSync,
} from 'node:fs'
import { hostname } from 'node:os'
import { basename, dirname, join } from 'node:path'
import { threadId } from 'node:worker_threads'

/**
 * A set-up lock whose date is further than this from now, either way, was left by a process that
 * died holding it (it is held 0.2 ms median, 12 ms at most, measured on ext4 under load), or dated
 * by a clock since stepped back. The rule for a lock taken on another host: one of this host names its
 * process, checked at once.
 */
const SET_UP_LOCK_STALE_MS = 10_000

/**
 * A lock that names no holder this version can check (empty, unreadable, or written by
 * @cache/disk 0.1.0, which wrote no start time), once this old, is left over: this version's lock
 * has its text before it appears, and 0.1.0 wrote its text right after the create.
 */
const UNREADABLE_LOCK_GRACE_MS = 500

/**
 * A lock taken by another thread of this process, once this old, was left by a thread that is gone
 * (a worker terminated while it created the database: `worker.terminate()` stops it at once, its
 * `finally` never runs). A thread holds it for milliseconds: only one starved for half a second
 * would lose it, and the taker's own work is then redone by the next (the file is made once).
 */
const OTHER_THREAD_GRACE_MS = 500

/**
 * How long a running backend (reopening a path whose database was removed) waits for the lock,
 * at most, with its event loop blocked; then the operation fails and the next one tries again.
 */
export const RUNNING_LOCK_WAIT_MS = 50

/** Abandoned locks removed in one call at most: each is another process's lock, taken and left since. */
const MAX_REMOVALS = 16

const pause = new Int32Array(new SharedArrayBuffer(4))

/** Who took a lock: what its text says. `start` is absent in 0.1.0's text, empty where unknown. */
interface Holder {
  pid: number
  host: string
  start?: string
  thread?: number
}

/**
 * Creates the database file `file` (private, 0600) unless another process did first. A log and
 * index without their database belong to one that is gone (deleted alone, by a cleaner of `*.db`):
 * SQLite would replay that log onto the new file, so they are removed first — under a lock file
 * (`<file>.set-up`), taken exclusively: processes creating one new database at once would otherwise
 * remove the log and index another had just made and opened ("disk I/O error", "file is not a
 * database"). Waits for the lock until `deadline` (checked every turn), synchronously: the
 * constructor opens synchronously, and a lock is held for a fraction of a millisecond. A lock whose
 * holder is gone is removed at once (see {@link isAbandoned}); something at the lock's path that
 * is not a regular file fails at once.
 */
export function createDatabaseFile(file: string, deadline: number): void {
  const lock = `${file}.set-up`
  let removals = 0
  for (let attempt = 0; ; attempt++) {
    if (takeLock(lock)) {
      try {
        removeLeftOwnFiles(lock)
        if (existsSync(file)) return
        rmSync(`${file}-wal`, { force: true })
        rmSync(`${file}-shm`, { force: true })
        closeSync(openSync(file, 'a', 0o600))
      } finally {
        rmSync(lock, { force: true })
      }
      return
    }
    if (existsSync(file)) return
    const found = lstatSync(lock, { throwIfNoEntry: false })
    if (found !== undefined && !found.isFile()) throw new Error(notALock(lock, found))
    const holder = found === undefined ? undefined : readHolder(lock)
    if (found !== undefined && removals < MAX_REMOVALS && isAbandoned(found, holder, Date.now())) {
      // Only the lock looked at: another process may have removed it and taken a new one since.
      if (lstatSync(lock, { throwIfNoEntry: false })?.ino === found.ino) rmSync(lock, { force: true })
      removals++
      continue
    }
    if (Date.now() >= deadline) throw new Error(stillHeld(lock, found, holder))
    // Gone since the look: try again at once.
    if (found !== undefined) Atomics.wait(pause, 0, 0, Math.min(2 ** attempt, 20))
  }
}

/**
 * Takes the lock `lock`, with its holder's identity already in it: the text is written to a file
 * of this process's own, then linked into place (a link, like an exclusive create, fails if the
 * lock exists), so a taker killed at any moment never leaves an empty lock. False if it is held.
 * Where the file system has no hard links, an exclusive create then a write (an empty lock is then
 * possible, and removed after the grace).
 */
function takeLock(lock: string): boolean {
  const text = identity()
  const own = `${lock}.${process.pid}-${threadId}`
  try {
    writeNew(own, text, 'w')
    try {
      linkSync(own, lock)
      return true
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      if (code === 'EEXIST') return false
      if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw error
    }
  } finally {
    rmSync(own, { force: true })
  }
  try {
    writeNew(lock, text, 'wx')
    return true
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw error
  }
}

/**
 * Removes the files takers write their text to before linking it into place (`<lock>.<pid>-<thread>`)
 * left by takers that are gone (a worker terminated, a process killed between the write and the
 * removal): one whose process is gone, or older than {@link OTHER_THREAD_GRACE_MS} (it lives for
 * microseconds). Run under the lock, so rarely: once per database created.
 */
function removeLeftOwnFiles(lock: string): void {
  const prefix = `${basename(lock)}.`
  let names: string[]
  try {
    names = readdirSync(dirname(lock))
  } catch {
    return
  }
  const now = Date.now()
  for (const name of names) {
    const match = name.startsWith(prefix) ? /^(\d+)-\d+$/.exec(name.slice(prefix.length)) : null
    if (match === null) continue
    const path = join(dirname(lock), name)
    const found = lstatSync(path, { throwIfNoEntry: false })
    if (found === undefined || !found.isFile()) continue
    const pid = Number(match[1])
    const gone = pid !== process.pid && processState(pid) === 'gone'
    if (gone || Math.abs(now - found.mtimeMs) > OTHER_THREAD_GRACE_MS) rmSync(path, { force: true })
  }
}

function writeNew(path: string, text: string, flags: 'w' | 'wx'): void {
  const fd = openSync(path, flags, 0o600)
  try {
    writeSync(fd, text)
  } finally {
    closeSync(fd)
  }
}

let ownIdentity: string | undefined

/**
 * This thread's identity, as a lock holds it, one a line: pid, host name, the process's start time
 * (clock ticks after boot, from `/proc/<pid>/stat`; empty without `/proc`), thread id.
 */
function identity(): string {
  ownIdentity ??= `${process.pid}\n${hostname()}\n${startTimeOf(process.pid) ?? ''}\n${threadId}\n`
  return ownIdentity
}

/** The holder the lock names, or undefined if its text cannot be read as one (empty, garbage, gone). */
function readHolder(lock: string): Holder | undefined {
  let text: string
  try {
    text = readFileSync(lock, 'utf8')
  } catch {
    return undefined
  }
  const lines = text.split('\n')
  const pid = Number(lines[0])
  const host = lines[1]
  if (!/^[1-9]\d*$/.test(lines[0]!) || !Number.isSafeInteger(pid) || !host) return undefined
  // 0.1.0 wrote "pid\nhost\n".
  if (lines.length === 3 && lines[2] === '') return { pid, host }
  if (lines.length !== 5 || lines[4] !== '' || !/^\d*$/.test(lines[2]!) || !/^\d+$/.test(lines[3]!))
    return undefined
  return { pid, host, start: lines[2], thread: Number(lines[3]) }
}

/**
 * True if the lock (as `found` then, naming `holder`) was left by a taker that is gone:
 * - dated more than {@link SET_UP_LOCK_STALE_MS} from now, either way (the only rule for a lock
 *   of another host: processes on hosts sharing the directory must have different host names);
 * - naming no holder that can be checked (see {@link UNREADABLE_LOCK_GRACE_MS}), once that old;
 * - naming a process of this host that is not running: gone, a zombie (killed, not yet reaped), or
 *   started at another time than the taker (its pid reused; not told on a host without `/proc`,
 *   where the age rule is left); this process's own pid from another start (a container restarted
 *   with the same pid), or this very thread (it holds the lock only inside
 *   {@link createDatabaseFile}, synchronously).
 */
function isAbandoned(found: Stats, holder: Holder | undefined, now: number): boolean {
  const age = now - found.mtimeMs
  if (Math.abs(age) > SET_UP_LOCK_STALE_MS) return true
  if (holder === undefined) return Math.abs(age) > UNREADABLE_LOCK_GRACE_MS
  if (holder.host !== hostname()) return false
  if (holder.pid === process.pid) {
    if (holder.start === undefined) return true
    if (holder.start !== (startTimeOf(process.pid) ?? '') || holder.thread === threadId) return true
    // Another thread of this process: whether it still runs cannot be asked (a worker's exit is
    // known to its parent alone), and a live one holds the lock for milliseconds.
    return Math.abs(age) > OTHER_THREAD_GRACE_MS
  }
  const running = processState(holder.pid)
  if (running === 'gone') return true
  if (holder.start === undefined) return Math.abs(age) > UNREADABLE_LOCK_GRACE_MS
  return running !== 'unknown' && holder.start !== '' && running.start !== holder.start
}

/**
 * Whether the process `pid` of this host runs, and since when (see {@link startTimeOf}): `gone`
 * if it does not or is a zombie; `unknown` if it runs but `/proc` does not show it (no `/proc`,
 * or another user's process hidden by `hidepid`).
 */
function processState(pid: number): { start: string } | 'gone' | 'unknown' {
  const fields = procStat(pid)
  if (fields !== undefined) {
    // Z: a zombie, exited and not yet reaped (signal 0 still reaches it); X: being reaped.
    if (fields[0] === 'Z' || fields[0] === 'X') return 'gone'
    return { start: fields[19] ?? '' }
  }
  try {
    process.kill(pid, 0)
    return 'unknown'
  } catch (error) {
    // EPERM: alive, another user's.
    return (error as NodeJS.ErrnoException).code === 'ESRCH' ? 'gone' : 'unknown'
  }
}

/** The start time of process `pid` (clock ticks after boot: field 22 of `/proc/<pid>/stat`), if shown. */
function startTimeOf(pid: number): string | undefined {
  return procStat(pid)?.[19]
}

/** Fields 3 on of `/proc/<pid>/stat` (the name before them may hold spaces and parentheses). */
function procStat(pid: number): string[] | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'latin1')
    return text.slice(text.lastIndexOf(')') + 2).split(' ')
  } catch {
    return undefined
  }
}

function notALock(lock: string, found: Stats): string {
  const what = found.isDirectory() ? 'a directory' : found.isSymbolicLink() ? 'a symbolic link' : 'not a file'
  return `${lock} is ${what}, not a set-up lock (this library's is a regular file): remove it`
}

function stillHeld(lock: string, found: Stats | undefined, holder: Holder | undefined): string {
  if (found === undefined) return `${lock} could not be taken: it kept appearing and disappearing`
  const age = `${Math.round(Date.now() - found.mtimeMs)} ms old`
  if (holder === undefined) return `${lock} is held (${age}; its text names no holder yet)`
  return `${lock} is held by process ${holder.pid} on ${holder.host} (${age})`
}
