#!/usr/bin/env node
// `pnpm demo`: builds what the demo needs with turbo (quietly: its output is shown only if the
// build fails), then starts the demo in this process, so the last line printed is its URL.
import { spawnSync } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')

console.log('@cache demo: building the packages it uses (about a minute the first time)…')
const build = spawnSync(
  'turbo',
  ['run', 'build', '--filter=@cache/demo...', '--output-logs=errors-only', '--no-update-notifier'],
  { cwd: root, encoding: 'utf8', env: { ...process.env, TURBO_TELEMETRY_DISABLED: '1' } },
)
if (build.error !== undefined || build.status !== 0) {
  process.stderr.write(build.stdout ?? '')
  process.stderr.write(build.stderr ?? '')
  console.error(`@cache demo: the build failed (${build.error?.message ?? `exit code ${build.status}`})`)
  process.exit(build.status || 1)
}

await import(pathToFileURL(join(root, 'apps/demo/dist/server.js')).href)
