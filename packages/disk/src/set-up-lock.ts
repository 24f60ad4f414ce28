import { closeSync, existsSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs'
import { hostname } from 'node:os'

const pause = new Int32Array(new SharedArrayBuffer(4))

/**
 * A set-up lock older than this was left by a process that died holding it (it is held for ms).
 * Only for a lock taken on another host: one taken on this host names its process, checked at once.
 */
const SET_UP_LOCK_STALE_MS = 10_000

/**
 * True if the set-up lock `lock` was taken by a process of this host that is no longer running.
 * The lock holds the taker's pid and host name, one a line. A lock with this process's own pid is
 * a dead one's (a container restarted with the same pid): this process holds it only inside
 * {@link createDatabaseFile}, synchronously. False when the lock is gone, empty (its taker between
 * the create and the write), or from another host (left to the age rule).
 */
function heldByDeadProcess(lock: string): boolean {
  let text: string
  try {
    text = readFileSync(lock, 'utf8')
  } catch {
    return false
  }
  const [pid, host] = text.split('\n')
  const holder = Number(pid)
  if (!Number.isSafeInteger(holder) || holder <= 0 || host !== hostname()) return false
  if (holder === process.pid) return true
  try {
    process.kill(holder, 0)
    return false
  } catch (error) {
    // EPERM: alive, another user's.
    return (error as { code?: unknown } | null)?.code === 'ESRCH'
  }
}

/**
 * Creates the database file `file` (private, 0600) unless another process did first. A log and
 * index without their database belong to one that is gone (deleted alone, by a cleaner of `*.db`):
 * SQLite would replay that log onto the new file, so they are removed first — under a lock file
 * (`<file>.set-up`, naming the taker's pid and host), taken with an exclusive create: processes
 * creating one new database at once would otherwise remove the log and index another had just made
 * and opened ("disk I/O error", "file is not a database"). Waits for the lock until `deadline`; a
 * lock left by a process of this host that died holding it is removed at once, one from another
 * host once stale.
 */
export function createDatabaseFile(file: string, deadline: number): void {
  const lock = `${file}.set-up`
  for (let wait = 1; ; wait = Math.min(wait * 2, 20)) {
    let fd: number
    try {
      fd = openSync(lock, 'wx', 0o600)
    } catch (error) {
      if ((error as { code?: unknown } | null)?.code !== 'EEXIST') throw error
      if (existsSync(file)) return
      const taken = statSync(lock, { throwIfNoEntry: false })
      if (taken === undefined) continue
      if (Date.now() - taken.mtimeMs > SET_UP_LOCK_STALE_MS || heldByDeadProcess(lock)) {
        // Only the lock looked at: another process may have removed it and taken a new one since.
        if (statSync(lock, { throwIfNoEntry: false })?.ino === taken.ino) rmSync(lock, { force: true })
      } else if (Date.now() >= deadline) throw error
      else Atomics.wait(pause, 0, 0, wait)
      continue
    }
    try {
      writeSync(fd, `${process.pid}\n${hostname()}\n`)
      if (existsSync(file)) return
      rmSync(`${file}-wal`, { force: true })
      rmSync(`${file}-shm`, { force: true })
      closeSync(openSync(file, 'a', 0o600))
    } finally {
      closeSync(fd)
      rmSync(lock, { force: true })
    }
    return
  }
}
