import { execFileSync } from 'node:child_process'
import { readdirSync, statSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/**
 * The multi-process tests run real child processes, which load the built package (dist): rebuild
 * it first when any source file is newer, so they never test stale code.
 */
export default function setup(): void {
  const root = join(dirname(fileURLToPath(import.meta.url)), '..')
  const built = statSync(join(root, 'dist/index.js'), { throwIfNoEntry: false })?.mtimeMs ?? 0
  const sources = readdirSync(join(root, 'src')).map((name) => statSync(join(root, 'src', name)).mtimeMs)
  if (Math.max(...sources) <= built) return
  const tsup = join(
    dirname(createRequire(import.meta.url).resolve('tsup/package.json')),
    'dist/cli-default.js',
  )
  execFileSync(process.execPath, [tsup, '--silent'], { cwd: root, stdio: 'inherit' })
}
