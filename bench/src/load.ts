import { existsSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The bench package directory (dist/ is one level below it). */
export const BENCH_DIR = join(dirname(fileURLToPath(import.meta.url)), '..')

const require = createRequire(join(BENCH_DIR, 'package.json'))

/** True when an @cache package has been built (its ESM entry exists): rows that need it are skipped until then. */
export function isBuilt(name: string): boolean {
  const dir = packageDir(name)
  if (!dir) return false
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'))
  const entry = pkg.exports?.['.']?.import?.default ?? pkg.exports?.['.']?.default ?? pkg.module ?? pkg.main
  return typeof entry === 'string' && existsSync(join(dir, entry))
}

/** The exact installed version of a dependency of the bench package. */
export function versionOf(name: string): string {
  const dir = packageDir(name)
  if (!dir) return 'not installed'
  return JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).version
}

function packageDir(name: string): string | undefined {
  const dir = join(BENCH_DIR, 'node_modules', name)
  if (existsSync(join(dir, 'package.json'))) return dir
  try {
    return dirname(require.resolve(`${name}/package.json`))
  } catch {
    return undefined
  }
}
