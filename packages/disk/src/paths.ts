import { existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, statSync } from 'node:fs'
import { homedir } from 'node:os'
import { dirname, join, parse, resolve, sep } from 'node:path'

/**
 * The directory a disk cache uses when no `path` is given: `CACHE_DISK_PATH` if set, else
 * `<cache home>/<app>` where the cache home is `XDG_CACHE_HOME` or `~/.cache`, and the app is
 * the `name` of the nearest package.json above `cwd` (`@acme/api` becomes `acme-api`), else `cache`.
 */
export function defaultCachePath(
  env: Record<string, string | undefined> = process.env,
  cwd: string = process.cwd(),
): string {
  const explicit = env.CACHE_DISK_PATH?.trim()
  if (explicit) return resolve(explicit)
  const xdg = env.XDG_CACHE_HOME?.trim()
  return join(xdg ? resolve(xdg) : join(homedir(), '.cache'), appName(cwd))
}

/** The name of the nearest package.json above `cwd`, made safe as one directory name; else `cache`. */
export function appName(cwd: string): string {
  for (let dir = resolve(cwd); ; dir = dirname(dir)) {
    const file = join(dir, 'package.json')
    if (existsSync(file)) {
      const name = readName(file)
      if (name !== undefined) return name
    }
    if (dirname(dir) === dir) return 'cache'
  }
}

function readName(file: string): string | undefined {
  try {
    const { name } = JSON.parse(readFileSync(file, 'utf8')) as { name?: unknown }
    if (typeof name !== 'string') return undefined
    const safe = name
      .replace(/^@/, '')
      .replace(/[^a-zA-Z0-9._-]+/g, '-')
      .replace(/^[.-]+/, '')
    return safe.length > 0 ? safe : undefined
  } catch {
    // An unreadable or malformed package.json says nothing about the app: keep looking upward.
    return undefined
  }
}

/** How many symbolic links {@link makeDirectory} follows before giving up (Linux's own limit). */
const MAX_LINKS = 40

/**
 * Makes a directory and its parents (owner-only). A symbolic link on the way whose target is gone
 * (a cache path linked to a faster disk, whose directory a cleaner removed) has its target made,
 * where it pointed: `mkdir -p` alone fails there for good. Several processes may do this at once:
 * one whose attempt failed while the link dangled finds the directory another process made
 * meanwhile, or tries once more when the link no longer dangles (about 1 open in 50 failed with
 * ENOENT, 8 processes opening one new link at once).
 */
export function makeDirectory(path: string, budget = { links: MAX_LINKS, retried: false }): void {
  try {
    mkdirSync(path, { recursive: true, mode: 0o700 })
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code !== 'ENOENT' && code !== 'EEXIST') throw error
    if (statSync(path, { throwIfNoEntry: false })?.isDirectory()) return
    if (budget.links-- <= 0) throw error
    const link = danglingLinkOn(path)
    if (link === undefined) {
      // Nothing dangles now, yet the path was not there: the links changed under this attempt.
      if (budget.retried) throw (code === 'ENOENT' && mkdirFailure(path)) || error
      budget.retried = true
      makeDirectory(path, budget)
      return
    }
    // The target may itself be a link to nothing: the same rule, with what is left to follow.
    makeDirectory(resolve(dirname(link), readlinkSync(link)), budget)
    makeDirectory(path, budget)
  }
}

/**
 * What making the first missing directory of `path` on its own fails with, if it does: Node's
 * recursive mkdir answers ENOENT for some failures, naming no cause (EROFS: a read-only file system).
 */
function mkdirFailure(path: string): Error | undefined {
  let missing = resolve(path)
  while (dirname(missing) !== missing && !existsSync(dirname(missing))) missing = dirname(missing)
  try {
    mkdirSync(missing, { mode: 0o700 })
    return undefined
  } catch (error) {
    return error as Error
  }
}

/** The first component of `path` that is a symbolic link to nothing, if any. */
function danglingLinkOn(path: string): string | undefined {
  const absolute = resolve(path)
  let at = parse(absolute).root
  for (const part of absolute.slice(at.length).split(sep)) {
    at = join(at, part)
    const entry = lstatSync(at, { throwIfNoEntry: false })
    if (entry === undefined) return undefined
    if (entry.isSymbolicLink() && statSync(at, { throwIfNoEntry: false }) === undefined) return at
  }
  return undefined
}
