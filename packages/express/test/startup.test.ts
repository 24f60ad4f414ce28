import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { describe, expect, it } from 'vitest'

const cacheExpress = pathToFileURL(join(__dirname, '../dist/index.js')).href

/**
 * An Express app configured from the environment only: a cached route, then `listen`. It runs in
 * a fresh process (in this package's directory, whose node_modules has express and @cache/memory,
 * as an application's has), answers one request and exits; its exit code and output are what a
 * user sees.
 */
function start(env: Record<string, string>) {
  const script = `
    const { default: express } = await import('express')
    const { cacheResponse, noteArrivals } = await import(${JSON.stringify(cacheExpress)})
    const app = express()
    app.get('/users/:id', cacheResponse({ ttl: 60 }), (req, res) => res.json({ id: req.params.id }))
    const server = noteArrivals(app.listen(0, '127.0.0.1', async () => {
      console.log('listening')
      const reply = await fetch('http://127.0.0.1:' + server.address().port + '/users/1')
      console.log(reply.status, reply.headers.get('cache-status'))
      server.close()
    }))
  `
  const { NODE_PATH: _, ...base } = process.env
  for (const name of Object.keys(base)) if (name.startsWith('CACHE_')) delete base[name]
  const result = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    cwd: join(__dirname, '..'),
    env: { ...base, ...env },
    timeout: 15_000,
  })
  return { code: result.status, stdout: result.stdout.toString(), stderr: result.stderr.toString() }
}

describe('an Express app whose CACHE_* variables are bad', () => {
  it.each([
    ['CACHE_BACKEND', 'memcache', 'CacheConfigError: CACHE_BACKEND: unknown backend "memcache"'],
    ['CACHE_MAX_KEYS', '10k', 'CacheConfigError: CACHE_MAX_KEYS: "10k" is not a positive whole number'],
    ['CACHE_DEFAULT_TTL', '1 month', 'CacheConfigError: CACHE_DEFAULT_TTL: "1 month" is not a duration'],
  ])('%s=%j stops it before it listens, naming the variable', (name, value, message) => {
    const { code, stdout, stderr } = start({ [name]: value })
    expect(stdout).not.toContain('listening')
    expect(stderr).toContain(message)
    expect(code).not.toBe(0)
  })

  it('starts and caches with good ones', () => {
    const { code, stdout, stderr } = start({ CACHE_BACKEND: 'memory', CACHE_DEFAULT_TTL: '5 minutes' })
    expect(stderr).toBe('')
    expect(stdout).toBe('listening\n200 @cache; fwd=uri-miss; stored\n')
    expect(code).toBe(0)
  })
})
