/**
 * Express reads one header under two spellings: `req.get('referer')` and `req.get('referrer')`
 * both answer `Referrer` before `Referer`. A variant keyed on one spelling must be keyed on both,
 * or a client sending the other spelling plants its variant for every client without it.
 */
import { describe, expect, it } from 'vitest'
import { cacheResponse } from '../src/index.js'
import { EXPRESS, memory, type Reply, serveEach } from './http.js'

const serve = serveEach()
const body = (reply: Reply) => reply.body.toString()
const isHit = (reply: Reply) => /hit|collapsed/.test(String(reply.headers['cache-status']))

describe.each(EXPRESS)('Referer and Referrer are one header in the key, on %s', (_name, express) => {
  function app() {
    const a = express()
    const backend = memory()
    const page = (req: any, res: any) => res.send(`<a href="${req.get('referer') ?? '/'}">back</a>`)
    const other = (req: any, res: any) => res.send(`<a href="${req.get('referrer') ?? '/'}">back</a>`)
    a.get('/vary', cacheResponse({ ttl: 60, backend }), (req: any, res: any) => {
      res.vary('Referer')
      page(req, res)
    })
    a.get('/vary-referrer', cacheResponse({ ttl: 60, backend }), (req: any, res: any) => {
      res.vary('Referrer')
      other(req, res)
    })
    a.get('/option', cacheResponse({ ttl: 60, backend, vary: ['referer'] }), page)
    a.get('/option-referrer', cacheResponse({ ttl: 60, backend, vary: ['Referrer'] }), other)
    return a
  }
  const ROUTES = ['/vary', '/vary-referrer', '/option', '/option-referrer']

  for (const path of ROUTES)
    for (const spelling of ['referrer', 'referer'])
      it(`never answers a client without a Referer with a ${spelling} variant (${path})`, async () => {
        const r = await serve(app())
        expect(body(await r.request(path, { headers: { [spelling]: 'javascript:alert(1)' } }))).toBe(
          '<a href="javascript:alert(1)">back</a>',
        )
        const victim = await r.request(path)
        expect(body(victim)).toBe('<a href="/">back</a>')
        expect(isHit(victim)).toBe(false)
        const again = await r.request(path, { headers: { [spelling]: 'javascript:alert(1)' } })
        expect(isHit(again)).toBe(true)
      })

  for (const path of ROUTES)
    it(`never answers a client whose Referrer overrides its Referer with the Referer variant (${path})`, async () => {
      const r = await serve(app())
      expect(body(await r.request(path, { headers: { referer: 'https://a.test/' } }))).toBe(
        '<a href="https://a.test/">back</a>',
      )
      const both = await r.request(path, {
        headers: { referer: 'https://a.test/', referrer: 'javascript:alert(1)' },
      })
      expect(body(both)).toBe('<a href="javascript:alert(1)">back</a>')
      expect(isHit(both)).toBe(false)
      // The plain Referer variant still answers its own clients.
      expect(isHit(await r.request(path, { headers: { referer: 'https://a.test/' } }))).toBe(true)
    })

  it('never hands a concurrent Referrer request the response made for a request without one', async () => {
    const a = express()
    a.get('/slow', cacheResponse({ ttl: 60, backend: memory() }), async (req: any, res: any) => {
      await new Promise((resolve) => setTimeout(resolve, 150))
      res.vary('Referer')
      res.send(`<a href="${req.get('referer') ?? '/'}">back</a>`)
    })
    const r = await serve(a)
    const [plain, other] = await Promise.all([
      r.request('/slow'),
      new Promise<void>((resolve) => setTimeout(resolve, 30)).then(() =>
        r.request('/slow', { headers: { referrer: 'javascript:alert(1)' } }),
      ),
    ])
    expect(body(plain)).toBe('<a href="/">back</a>')
    expect(body(other)).toBe('<a href="javascript:alert(1)">back</a>')
  })
})
