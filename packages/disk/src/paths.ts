import { existsSync, readFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { dirname, join, resolve } from 'node:path'

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
