/**
 * Express routes several spellings of one URL to the same handler (another case, a trailing
 * slash, percent-escapes, an empty query pair). Each keeps its own entry, but invalidating any
 * spelling reaches them all.
 */
import { connect } from 'node:net'
import { FORWARDED_HOST_SPELLINGS, HOST_SPELLINGS as SHARED_HOST_SPELLINGS } from '@cache/testing'
import { describe, expect, it } from 'vitest'
import { cacheResponse, invalidateResponse, invalidateResponsePrefix } from '../src/index.js'
import { EXPRESS, memory, type Reply, serveEach } from './http.js'

const serve = serveEach()
const json = (reply: Reply) => JSON.parse(reply.body.toString())
const isHit = (reply: Reply) => /hit|collapsed/.test(String(reply.headers['cache-status']))

/** A request with a target in absolute form (`GET http://host/path`), as a client sends a proxy. */
function absoluteForm(port: number, target: string, host: string): Promise<{ head: string; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () =>
      socket.write(`GET ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`),
    )
    let text = ''
    socket.setEncoding('latin1')
    socket.on('data', (chunk: string) => {
      text += chunk
    })
    socket.on('error', reject)
    socket.on('end', () => {
      const split = text.indexOf('\r\n\r\n')
      resolve({ head: text.slice(0, split), body: text.slice(split + 4) })
    })
  })
}

const PATHS = ['/products/1', '/products/1/', '/Products/1', '/products/%31', '/PRODUCTS/%31/']
const QUERIES = ['/product?id=1', '/product?id=%31', '/product?id=1&', '/product?&id=1', '/product?id=1&&']
/** Hosts not in the spelling a URL gives them, each with the spelling stored: the shared table and four more. */
const HOST_SPELLINGS: readonly (readonly [string, string])[] = [
  ...SHARED_HOST_SPELLINGS,
  ['shop.test:0080', 'shop.test:80'],
  ['[0::1]:08080', '[::1]:8080'],
  ['0177.0.0.1', '127.0.0.1'],
  ['2130706433:080', '127.0.0.1'],
]

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

    /** `?ids=1,2` and `?ids=1&ids=2` alike, as `qs` with `comma: true` parses them. */
    const commaParser = (query: string) => {
      const out: Record<string, string[]> = {}
      for (const [name, value] of new URLSearchParams(query)) (out[name] ??= []).push(...value.split(','))
      return out
    }

    it("bypasses a request with a query under the app's own query parser: one spelling's invalidation could not reach another", async () => {
      const a = express()
      a.set('query parser', commaParser)
      let price = 10
      const backend = memory()
      a.get('/prices', cacheResponse({ ttl: 300, backend }), (req: any, res: any) =>
        res.json({ ids: req.query.ids, price }),
      )
      const r = await serve(a)
      const comma = await r.request('/prices?ids=1,2')
      expect(String(comma.headers['cache-status'])).toContain('detail=querystring-parser')
      await r.request('/prices?ids=1&ids=2')
      price = 8
      await invalidateResponse(`${r.url}/prices?ids=1&ids=2`, { backend })
      expect(json(await r.request('/prices?ids=1,2')).price).toBe(8)
      // No query: nothing for the parser to read, cached.
      await r.request('/prices')
      expect(isHit(await r.request('/prices'))).toBe(true)
    })

    it("stores nothing a sub-app with its own query parser answers behind a cache of the main app's", async () => {
      const a = express()
      const sub = express()
      sub.set('query parser', commaParser)
      let price = 10
      sub.get('/prices', (req: any, res: any) => res.json({ ids: req.query.ids, price }))
      a.use(cacheResponse({ ttl: 300, backend: memory() }))
      a.use('/api', sub)
      const r = await serve(a)
      await r.request('/api/prices?ids=1,2')
      price = 8
      expect(json(await r.request('/api/prices?ids=1,2')).price).toBe(8)
    })

    it("caches under Express's own query parsers", async () => {
      for (const parser of ['extended', 'simple', false]) {
        const a = express()
        a.set('query parser', parser)
        a.get('/prices', cacheResponse({ ttl: 300, backend: memory() }), (req: any, res: any) =>
          res.json({ query: req.query }),
        )
        const r = await serve(a)
        await r.request('/prices?a[b]=1')
        expect(isHit(await r.request('/prices?a[b]=1')), String(parser)).toBe(true)
      }
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

    it('invalidateResponse(url), without a backend or keyPrefix, renews every path spelling from any spelling given', async () => {
      const { a, prices } = app()
      const r = await serve(a)
      for (const path of PATHS) await r.request(path)
      for (const path of PATHS) expect(isHit(await r.request(path)), path).toBe(true)
      prices[1] = 99
      await invalidateResponse(`${r.url}/PRODUCTS/1/`)
      for (const path of PATHS) expect(json(await r.request(path)).price, path).toBe(99)
    })

    it('invalidateResponsePrefix still reaches every spelling', async () => {
      const { a, backend, prices } = app()
      const r = await serve(a)
      for (const path of [...PATHS, ...QUERIES]) await r.request(path)
      prices[1] = 99
      await invalidateResponsePrefix('http', { backend })
      for (const path of [...PATHS, ...QUERIES]) expect(json(await r.request(path)).price, path).toBe(99)
    })

    it('a Host with its default port spelled out (shop.test:80) is reached from the host without it, and back', async () => {
      const { a, backend, prices } = app()
      const r = await serve(a)
      const at = (host: string) => r.request('/products/1', { headers: { host } })
      const invalidations = [
        () => invalidateResponse('/products/1', { host: 'shop.test', backend }),
        () => invalidateResponse('http://shop.test:80/products/1', { backend }),
        () => invalidateResponse('/products/1', { host: 'shop.test:80', backend }),
        () => invalidateResponse('https://shop.test/products/1', { backend }),
      ]
      for (const [i, invalidate] of invalidations.entries()) {
        for (const host of ['shop.test:80', 'shop.test']) await at(host)
        for (const host of ['shop.test:80', 'shop.test']) expect(isHit(await at(host)), host).toBe(true)
        prices[1] = 100 + i
        await invalidate()
        for (const host of ['shop.test:80', 'shop.test'])
          expect(json(await at(host)).price, `${i} ${host}`).toBe(100 + i)
      }
    })

    it('a Host not spelled as a URL spells it (port 080, 127.1, [0:0:0:0:0:0:0:1]) bypasses: invalidating the URL could not reach its entry', async () => {
      const { a, prices } = app()
      const r = await serve(a)
      for (const [host] of HOST_SPELLINGS) {
        const first = await r.request('/products/1', { headers: { host } })
        expect(String(first.headers['cache-status']), host).toMatch(/fwd=request; detail=url/)
        prices[1] = Number(prices[1]) + 1
        expect(json(await r.request('/products/1', { headers: { host } })).price, host).toBe(prices[1])
      }
    })

    it('the same through X-Forwarded-Host under trust proxy (shop.test:080 over http, shop.test:0443 over https)', async () => {
      const { a, prices } = app()
      a.set('trust proxy', true)
      const r = await serve(a)
      for (const [proto, host] of FORWARDED_HOST_SPELLINGS) {
        const headers = { 'x-forwarded-host': host, 'x-forwarded-proto': proto }
        await r.request('/products/1', { headers })
        prices[1] = Number(prices[1]) + 1
        expect(json(await r.request('/products/1', { headers })).price, host).toBe(prices[1])
      }
    })

    it('the host as a URL spells it is stored, and reached from any spelling of it in the URL or in `host`', async () => {
      const { a, backend, prices } = app()
      const r = await serve(a)
      for (const [other, host] of HOST_SPELLINGS) {
        for (const invalidate of [
          () => invalidateResponse(`http://${other}/products/1`, { backend }),
          () => invalidateResponse('/products/1', { host: other, backend }),
        ]) {
          await r.request('/products/1', { headers: { host } })
          expect(isHit(await r.request('/products/1', { headers: { host } })), host).toBe(true)
          prices[1] = Number(prices[1]) + 1
          await invalidate()
          expect(
            json(await r.request('/products/1', { headers: { host } })).price,
            `${other} -> ${host}`,
          ).toBe(prices[1])
        }
      }
    })

    it('an absolute-form target (GET http://shop.test/products/1) bypasses: no invalidation could reach its key', async () => {
      const { a, prices } = app()
      const r = await serve(a)
      const first = await absoluteForm(r.port, 'http://shop.test/products/1', 'shop.test')
      expect(first.head).toMatch(/cache-status: @cache; fwd=request; detail=url/i)
      expect(JSON.parse(first.body).price).toBe(10)
      prices[1] = 20
      expect(
        JSON.parse((await absoluteForm(r.port, 'http://shop.test/products/1', 'shop.test')).body).price,
      ).toBe(20)
    })

    it('invalidating ?id=1 reaches ?id=1&=x and ?id=1&= (Express 4 drops a pair without a name)', async () => {
      const { a, backend, prices } = app()
      const r = await serve(a)
      const spellings = ['/product?id=1&=x', '/product?id=1&=', '/product?=&id=1']
      for (const path of spellings) await r.request(path)
      for (const path of spellings) expect(isHit(await r.request(path)), path).toBe(true)
      prices[1] = 99
      await invalidateResponse(`${r.url}/product?id=1`, { backend })
      for (const path of spellings) expect(json(await r.request(path)).price, path).toBe(99)
    })

    it('invalidating one spelling of a list reaches every other one (Express 4 reads ids=1&ids=2, ids[]=1&ids[]=2 and ids[0]=1&ids[1]=2 as one list)', async () => {
      const { a, backend } = app()
      let price = 10
      a.get('/list', cacheResponse({ ttl: 300, backend }), (req: any, res: any) =>
        res.json({ ids: req.query.ids, price }),
      )
      const r = await serve(a)
      const lists = [
        ['/list?ids[]=1', '/list?ids[0]=1', '/list?ids%5B0%5D=1'],
        [
          '/list?ids=1&ids=2',
          '/list?ids[]=1&ids[]=2',
          '/list?ids%5B%5D=1&ids%5B%5D=2',
          '/list?ids[0]=1&ids[1]=2',
          '/list?ids=1&ids[]=2',
        ],
      ]
      for (const spellings of lists) {
        for (const given of spellings) {
          for (const path of spellings) await r.request(path)
          for (const path of spellings) expect(isHit(await r.request(path)), path).toBe(true)
          price++
          await invalidateResponse(`${r.url}${given}`, { backend })
          for (const path of spellings)
            expect(json(await r.request(path)).price, `${given} -> ${path}`).toBe(price)
        }
      }
    })
  },
)
