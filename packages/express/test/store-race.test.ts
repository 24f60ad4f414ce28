import { defineBackend } from '@cache/core'
import { describe, expect, it } from 'vitest'
import { cacheResponse } from '../src/index.js'
import { EXPRESS, listen } from './http.js'

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe.each(EXPRESS)('%s: a slow remote backend, after each clear()', (_, express) => {
  it('stores the new response and replays it: the handler runs once per clear', async () => {
    // A remote backend: reads take 150 ms, writes 50 ms.
    const rows = new Map<string, unknown>()
    const backend = defineBackend({
      get: async (key) => {
        await sleep(150)
        return rows.get(key) as never
      },
      set: async (key, value) => {
        await sleep(50)
        rows.set(key, value)
      },
      delete: async (key) => rows.delete(key),
      clear: async () => rows.clear(),
    })
    let runs = 0
    const app = express()
    const cache = cacheResponse({ ttl: 60, backend })
    app.get('/report', cache, (_req, res) => {
      runs++
      res.send(`report ${runs}`)
    })
    const server = await listen(app)
    try {
      for (let round = 1; round <= 3; round++) {
        // An entry from before an invalidation is still there: only the new one may answer.
        await cache.clear()
        const first = await server.request('/report')
        expect(first.body.toString()).toBe(`report ${round}`)
        const second = await server.request('/report')
        expect(second.headers['cache-status']).toMatch(/^@cache; hit/)
        expect(second.body.toString()).toBe(`report ${round}`)
      }
      expect(runs).toBe(3)
    } finally {
      await server.close()
    }
  })
})
