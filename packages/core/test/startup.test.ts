import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'

const core = pathToFileURL(join(__dirname, '../dist/index.js')).href
/** A directory without node_modules: only @cache/core (imported by path) is there. */
const bare = mkdtempSync(join(tmpdir(), 'cache-startup-'))
afterAll(() => rmSync(bare, { recursive: true, force: true }))

/**
 * An app that memoizes a function with the default cache, configured from the environment only,
 * then "starts serving". Runs in a fresh process; its exit code and output are what a user sees.
 */
function start(env: Record<string, string>, cwd: string, configureInCode = false) {
  const script = `
    const { cached, configureCache } = await import(${JSON.stringify(core)})
    const getUser = cached(async (id) => ({ id }), { name: 'getUser', ttl: 60 })
    if (${configureInCode}) {
      const rows = new Map()
      configureCache({ get: (k) => rows.get(k), set: (k, v) => void rows.set(k, v), delete: (k) => rows.delete(k) })
    }
    console.log('listening')
    console.log(JSON.stringify(await getUser(1)))
  `
  const { NODE_PATH: _, ...base } = process.env
  for (const name of Object.keys(base)) if (name.startsWith('CACHE_')) delete base[name]
  const result = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    cwd,
    env: { ...base, ...env },
    timeout: 15_000,
  })
  return { code: result.status, stdout: result.stdout.toString(), stderr: result.stderr.toString() }
}

describe('a bad CACHE_* variable with configuration from the environment only', () => {
  it.each([
    ['CACHE_BACKEND', 'memcache', 'CACHE_BACKEND: unknown backend "memcache"'],
    ['CACHE_DEFAULT_TTL', '5 parsecs', 'CACHE_DEFAULT_TTL: "5 parsecs" is not a duration'],
    ['CACHE_MAX_KEYS', 'lots', 'CACHE_MAX_KEYS: "lots" is not a positive whole number'],
    ['CACHE_BACKEND', 'memory,redis', 'CACHE_BACKEND: install @cache/redis to use "redis"'],
  ])('%s=%j stops the app before it serves, naming the variable', (name, value, message) => {
    // A directory whose node_modules has @cache/memory (not @cache/redis), as an application's has.
    const { code, stdout, stderr } = start({ [name]: value }, join(__dirname, '../../express'))
    expect(code).not.toBe(0)
    expect(stdout).not.toContain('listening')
    expect(stderr).toMatch(/^Cache(Config|MissingPackage)Error: .*$/m)
    expect(stderr).toContain(message)
  })

  it('lets an app that has only @cache/core and configures its cache in code after defining functions start', () => {
    // No CACHE_BACKEND and no @cache/memory: nothing to build from the environment, nothing wrong.
    const { code, stdout, stderr } = start({}, bare, true)
    expect(stderr).toBe('')
    expect(stdout).toBe('listening\n{"id":1}\n')
    expect(code).toBe(0)
  })

  it('starts with good variables (here, defaults) and serves', () => {
    // A directory whose node_modules has @cache/memory, as an application's has.
    const { code, stdout } = start({ CACHE_DEFAULT_TTL: '1m30s' }, join(__dirname, '../../express'))
    expect(stdout).toBe('listening\n{"id":1}\n')
    expect(code).toBe(0)
  })
})
