/**
 * Configuration from the environment, tested as a user meets it: a node process with a bad
 * variable must exit non-zero at start-up with the variable's name in stderr.
 */
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'

const APP = join(dirname(fileURLToPath(import.meta.url)), '..', 'scripts', 'env-app.mjs')
const root = mkdtempSync(join(tmpdir(), 'cache-faults-env-'))
const diskDir = join(root, 'disk')
afterAll(() => rmSync(root, { recursive: true, force: true }))

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs the env app with only `env` (plus PATH) set; bounded at 10 s. */
function runApp(env: Record<string, string>, entry: 'configure' | 'get'): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [APP, entry],
      { env: { PATH: process.env.PATH ?? '', ...env }, timeout: 10_000, cwd: dirname(APP) },
      (error, stdout, stderr) => {
        const code = error ? ((error as { code?: number }).code ?? 1) : 0
        resolve({ code: typeof code === 'number' ? code : 1, stdout, stderr })
      },
    )
  })
}

/** [variable, bad value, other variables the row needs]. */
const BAD: [string, string, Record<string, string>?][] = [
  ['CACHE_BACKEND', 'bogus'],
  ['CACHE_BACKEND', 'memory,memory'],
  ['CACHE_BACKEND', 'memory;redis'],
  ['CACHE_MAX_KEYS', 'abc'],
  ['CACHE_MAX_KEYS', '-5'],
  ['CACHE_MAX_KEYS', '0'],
  ['CACHE_MAX_KEYS', '1.5'],
  ['CACHE_MAX_SIZE', '1XB', { CACHE_BACKEND: 'memory-size' }],
  ['CACHE_MAX_SIZE', '-1GB', { CACHE_BACKEND: 'memory-size' }],
  ['CACHE_DISK_PATH', APP, { CACHE_BACKEND: 'disk' }],
  ['CACHE_DISK_PATH', '/sys/cache-faults/not-creatable', { CACHE_BACKEND: 'memory,disk' }],
  ['CACHE_DISK_MAX_SIZE', '1XB'],
  ['CACHE_DISK_MAX_SIZE', '1XB', { CACHE_BACKEND: 'disk', CACHE_DISK_PATH: diskDir }],
  ['CACHE_DISK_MAX_SIZE', 'lots'],
  ['REDIS_URL', 'http://127.0.0.1:6379'],
  ['REDIS_URL', 'not a url'],
  ['MEMCACHED_SERVERS', 'localhost'],
  ['MEMCACHED_SERVERS', '127.0.0.1:99999'],
  ['MEMCACHED_SERVERS', '127.0.0.1:11211,,bad host:1'],
  ['CACHE_DEFAULT_TTL', 'abc'],
  ['CACHE_DEFAULT_TTL', '-1'],
  ['CACHE_DEFAULT_TTL', '0'],
  ['CACHE_DEFAULT_TTL', '5 parsecs'],
  ['CACHE_NAMESPACE', 'has space'],
  ['CACHE_NAMESPACE', 'tab\there'],
  // Longer than a memcached key may be: memcached refuses it, and the error names the variable.
  ['CACHE_NAMESPACE', 'x'.repeat(300), { CACHE_BACKEND: 'memcached', MEMCACHED_SERVERS: '127.0.0.1:1' }],
]

const rows = BAD.flatMap(([name, value, extra]) =>
  (['configure', 'get'] as const).map(
    (entry) => [name, JSON.stringify(value), entry, value, extra ?? {}] as const,
  ),
)

describe('a bad environment variable fails at start-up, naming the variable', () => {
  it('a good environment starts and serves (control row)', async () => {
    for (const entry of ['configure', 'get'] as const) {
      const run = await runApp(
        { CACHE_BACKEND: 'memory', CACHE_MAX_KEYS: '50', CACHE_DEFAULT_TTL: '5m' },
        entry,
      )
      expect(run.stderr).toBe('')
      expect(run.code).toBe(0)
      expect(run.stdout.trim()).toBe('memory:ok')
    }
    const chain = await runApp({ CACHE_BACKEND: 'memory,disk', CACHE_DISK_PATH: diskDir }, 'configure')
    expect(chain.stderr).toBe('')
    expect(chain.stdout.trim()).toBe('multi-level:ok')
  })

  it.concurrent.each(rows)('%s=%s via %s', async (name, _label, entry, value, extra) => {
    const run = await runApp({ ...extra, [name]: value }, entry)
    expect(run.code, `stdout: ${run.stdout}`).not.toBe(0)
    expect(run.stdout).toBe('')
    expect(run.stderr).toContain(name)
    expect(run.stderr).toMatch(/CacheConfigError|RangeError/)
  })
})
