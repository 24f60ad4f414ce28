import { describe, expect, it } from 'vitest'
import { cacheResponse } from '../src/index.js'
import { EXPRESS, memory, serveEach } from './http.js'

const serve = serveEach()

describe.each(EXPRESS)(
  '%s: headers the handler sets are its own, whatever was there before',
  (_name, express) => {
    it('replays a Content-Language the handler set to the value a layer before the cache had set on the miss', async () => {
      const app = express()
      // i18n before the cache: the client's language, on every request.
      app.use((req: any, res: any, next: any) => {
        res.set('Content-Language', String(req.get('accept-language') ?? 'en').slice(0, 2))
        next()
      })
      app.get('/fr-only', cacheResponse({ ttl: 60, backend: memory() }), (_req: any, res: any) => {
        res.set('Content-Language', 'fr')
        res.send('<p>Bonjour</p>')
      })
      const r = await serve(app)
      const miss = await r.request('/fr-only', { headers: { 'accept-language': 'fr' } })
      expect(miss.headers['content-language']).toBe('fr')
      const hit = await r.request('/fr-only', { headers: { 'accept-language': 'en' } })
      expect(hit.headers['cache-status']).toMatch(/hit/)
      expect(hit.headers['content-language']).toBe('fr')
    })

    it('removes on hits a header the handler removed, even when it was absent on the miss', async () => {
      const app = express()
      // A layer before the cache adds a debug header for some clients only.
      app.use((req: any, res: any, next: any) => {
        if (req.get('x-debug') !== undefined) res.set('X-Debug-Backend', 'node-7')
        next()
      })
      app.get('/page', cacheResponse({ ttl: 60, backend: memory() }), (_req: any, res: any) => {
        res.removeHeader('X-Debug-Backend')
        res.send('page')
      })
      const r = await serve(app)
      const miss = await r.request('/page')
      expect(miss.headers['x-debug-backend']).toBeUndefined()
      const hit = await r.request('/page', { headers: { 'x-debug': '1' } })
      expect(hit.headers['cache-status']).toMatch(/hit/)
      expect(hit.headers['x-debug-backend']).toBeUndefined()
    })
  },
)
