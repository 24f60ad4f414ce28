import { configureCache, resetCache } from '@cache/core'
import { MemoryBackend } from '@cache/memory'
import { afterEach, describe, expect, it } from 'vitest'
import { cacheResponse } from '../src/index.js'
import { EXPRESS, memory, serveEach } from './http.js'

const serve = serveEach()

afterEach(async () => {
  await resetCache()
})

describe.each(EXPRESS)('%s', (_name, express) => {
  it('says "; stored" on a streamed response that it stores', async () => {
    const app = express()
    let calls = 0
    app.get('/stream', cacheResponse({ backend: memory() }), async (_req: any, res: any) => {
      calls++
      res.set('content-type', 'text/plain')
      for (const part of ['one ', 'two ', 'three']) {
        res.write(part)
        await new Promise((resolve) => setTimeout(resolve, 5))
      }
      res.end()
    })
    const r = await serve(app)
    const miss = await r.request('/stream')
    expect(miss.headers['cache-status']).toBe('@cache; fwd=uri-miss; stored')
    const hit = await r.request('/stream')
    expect(hit.headers['cache-status']).toMatch(/^@cache; hit/)
    expect(hit.body.toString()).toBe('one two three')
    expect(calls).toBe(1)
  })

  it('does not say "; stored" on a streamed response whose declared length is over maxBodySize', async () => {
    const app = express()
    app.get('/big', cacheResponse({ backend: memory(), maxBodySize: 8 }), (_req: any, res: any) => {
      res.set({ 'content-type': 'text/plain', 'content-length': '20' })
      res.write('0123456789')
      res.end('0123456789')
    })
    const r = await serve(app)
    const reply = await r.request('/big')
    expect(reply.headers['cache-status']).toBe('@cache; fwd=uri-miss; detail=too-large')
  })

  it('keeps a response for its own ttl on a default cache whose default TTL is shorter', async () => {
    configureCache(new MemoryBackend({ defaultTtl: 0.05 }))
    const app = express()
    let calls = 0
    app.get('/report', cacheResponse({ ttl: '1h' }), (_req: any, res: any) => {
      calls++
      res.send(`report ${calls}`)
    })
    const r = await serve(app)
    expect((await r.request('/report')).body.toString()).toBe('report 1')
    await new Promise((resolve) => setTimeout(resolve, 150))
    const later = await r.request('/report')
    expect(later.headers['cache-status']).toMatch(/^@cache; hit/)
    expect(later.body.toString()).toBe('report 1')
  })
})

describe.each(EXPRESS)('Cache-Status tells the truth about storing, on %s', (_name, express) => {
  it('does not say "; stored" when Vary: * comes in the headers given to writeHead', async () => {
    const app = express()
    let calls = 0
    app.get('/star', cacheResponse({ backend: memory() }), (_req: any, res: any) => {
      calls++
      res.writeHead(200, { VARY: 'x-other, *' })
      res.end(`star ${calls}`)
    })
    const r = await serve(app)
    const first = await r.request('/star')
    expect(first.headers['cache-status']).toBe('@cache; fwd=uri-miss; detail=vary')
    const second = await r.request('/star')
    expect(second.body.toString()).toBe('star 2')
  })

  it('does not say "; stored" on the error response sent after a writeHead that threw', async () => {
    const app = express()
    app.get('/nested', cacheResponse({ backend: memory() }), (_req: any, res: any, next: any) => {
      try {
        res.writeHead(200, [['Vary', 'X-Theme']])
        res.end('never')
      } catch (error) {
        next(error)
      }
    })
    app.use((_error: unknown, _req: any, res: any, _next: any) => {
      res.status(500).send('failed')
    })
    const r = await serve(app)
    const reply = await r.request('/nested')
    expect(reply.status).toBe(500)
    expect(String(reply.headers['cache-status'] ?? '')).not.toContain('stored')
  })
})
