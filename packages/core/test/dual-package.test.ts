/**
 * An application that loads @cache/core both as ESM and as CommonJS (an ESM app with a CommonJS
 * dependency that memoizes) has one default cache: what `configureCache` sets through one build is
 * what the other uses.
 */
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { describe, expect, it } from 'vitest'

const esm = pathToFileURL(join(__dirname, '../dist/index.js')).href
const cjs = join(__dirname, '../dist/index.cjs')

describe('the default cache with the ESM and CommonJS builds in one process', () => {
  it('is one cache: configured through either build, used through the other', () => {
    const script = `
      import { createRequire } from 'node:module'
      const require = createRequire(import.meta.url)
      const fromEsm = await import(${JSON.stringify(esm)})
      const fromCjs = require(${JSON.stringify(cjs)})
      const store = new Map()
      const backend = { get: (k) => store.get(k), set: (k, v) => void store.set(k, v), delete: (k) => store.delete(k) }
      const configured = fromEsm.configureCache(backend)
      const seen = fromCjs.getBackend() === configured
      await fromCjs.cacheSet('k', 'set through CommonJS', 60)
      const read = await fromEsm.cacheGet('k')
      const other = fromCjs.configureCache({ get: () => 'other', set() {}, delete: () => false })
      console.log(JSON.stringify({ seen, read, back: fromEsm.getBackend() === other }))
    `
    const result = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      timeout: 20_000,
      encoding: 'utf8',
    })
    expect(result.stderr).toBe('')
    expect(JSON.parse(result.stdout)).toEqual({ seen: true, read: 'set through CommonJS', back: true })
  })
})
