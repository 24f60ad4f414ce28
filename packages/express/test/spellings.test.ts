/**
 * Express routes several spellings of one URL to the same handler (another case, a trailing
 * slash, percent-escapes, an empty query pair). Each keeps its own entry, but invalidating any
 * spelling reaches them all.
 */
import { describe, expect, it } from 'vitest'
import { cacheResponse, invalidateResponse, invalidateResponsePrefix } from '../src/index.js'
import { EXPRESS, memory, type Reply, serveEach } from './http.js'

const serve = serveEach()
const json = (reply: Reply) => JSON.parse(reply.body.toString())
const isHit = (reply: Reply) => /hit|collapsed/.test(String(reply.headers['cache-status']))

const PATHS = ['/products/1', '/products/1/', '/Products/1', '/products/%31', '/PRODUCTS/%31/']
const QUERIES = ['/product?id=1', '/product?id=%31', '/product?id=1&', '/product?&id=1', '/product?id=1&&']

describe.each(EXPRESS)(
  'invalidation reaches every spelling Express routes alike, on %s',
  (_name, express) => {
    function app() {
      const a = express()
      const backend = memory()
      const prices: Record<string, number> = { 1: 10 }
      const cache = cacheResponse({ ttl: 300, backend })
      a.get('/products/:id', cache, (req: any, res: any) =>
        res.json({ id: req.params.id, price: prices[req.params.id] }),
      )
      a.get('/product', cache, (req: any, res: any) =>
        res.json({ id: req.query.id, price: prices[req.query.id] }),
      )
      return { a, backend, prices, cache }
    }

    it('keeps one entry per spelling: a case-preserving parameter is never answered with another case', async () => {
      const { a } = app()
      const r = await serve(a)
      expect(json(await r.request('/products/1'))).toMatchObject({ id: '1' })
      const other = await r.request('/products/%31')
      expect(isHit(other)).toBe(false)
      expect(json(await r.request('/products/abc'))).toMatchObject({ id: 'abc' })
      expect(json(await r.request('/products/ABC'))).toMatchObject({ id: 'ABC' })
    })

    it('invalidate(path) renews every path spelling', async () => {
      const { a, prices, cache } = app()
      const r = await serve(a)
      for (const path of PATHS) await r.request(path)
      for (const path of PATHS) expect(isHit(await r.request(path)), path).toBe(true)
      prices[1] = 99
      await cache.invalidate('/products/1', { host: `127.0.0.1:${r.port}` })
      for (const path of PATHS) expect(json(await r.request(path)).price, path).toBe(99)
    })

    it('invalidateResponse(url) renews every query spelling, from any spelling given', async () => {
      const { a, backend, prices } = app()
      const r = await serve(a)
      for (const path of QUERIES) await r.request(path)
      for (const path of QUERIES) expect(isHit(await r.request(path)), path).toBe(true)
      prices[1] = 99
      await invalidateResponse(`${r.url}/product?id=%31&`, { backend })
      for (const path of QUERIES) expect(json(await r.request(path)).price, path).toBe(99)
    })

    it('invalidateResponsePrefix still reaches every spelling', async () => {
      const { a, backend, prices } = app()
      const r = await serve(a)
      for (const path of [...PATHS, ...QUERIES]) await r.request(path)
      prices[1] = 99
      await invalidateResponsePrefix('http', { backend })
      for (const path of [...PATHS, ...QUERIES]) expect(json(await r.request(path)).price, path).toBe(99)
    })
  },
)
