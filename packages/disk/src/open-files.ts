import { readdirSync, readlinkSync, statSync } from 'node:fs'

/** Where Linux lists the files this process has open (absent elsewhere). */
const FD_DIR = '/proc/self/fd'
const DELETED = ' (deleted)'

/** Which of a database's files: the database itself, its log or the log's index. */
export type DatabaseFile = 'db' | 'wal' | 'shm'

/** A file of the database this process holds open: which one, its inode, and its links (0: removed). */
export interface OpenFile {
  which: DatabaseFile
  ino: number
  nlink: number
}

/**
 * The files of the database at `file` (its real path: the link target, not a symbolic link) that
 * this process has open, by descriptor, each with its inode: what a connection really opened,
 * even once the path names another file (removed, then made again by another process).
 * `undefined` where the process's open files cannot be listed (not Linux).
 */
export function openDatabaseFiles(file: string): Map<number, OpenFile> | undefined {
  let descriptors: string[]
  try {
    descriptors = readdirSync(FD_DIR)
  } catch {
    return undefined
  }
  const found = new Map<number, OpenFile>()
  for (const fd of descriptors) {
    let target: string
    try {
      target = readlinkSync(`${FD_DIR}/${fd}`)
    } catch {
      continue // closed since the listing
    }
    if (target.endsWith(DELETED)) target = target.slice(0, -DELETED.length)
    const which =
      target === file ? 'db' : target === `${file}-wal` ? 'wal' : target === `${file}-shm` ? 'shm' : undefined
    if (which === undefined) continue
    const stat = statSync(`${FD_DIR}/${fd}`, { throwIfNoEntry: false })
    if (stat !== undefined) found.set(Number(fd), { which, ino: stat.ino, nlink: stat.nlink })
  }
  return found
}

/**
 * The inode of each file a connection opened: the descriptors open after it that were not before
 * (another connection of this process to the same database may share its log's index: that one
 * is not listed as the new connection's).
 */
export function openedBetween(
  before: Map<number, OpenFile>,
  after: Map<number, OpenFile>,
): Partial<Record<DatabaseFile, number>> {
  const opened: Partial<Record<DatabaseFile, number>> = {}
  for (const [fd, file] of after) if (before.get(fd)?.ino !== file.ino) opened[file.which] ??= file.ino
  return opened
}
