import {
  cacheAtomicUpdate,
  cacheFlush,
  cacheGet,
  type CacheBackend,
  type CacheStats,
  getBackend,
  invalidateTags,
  memoized,
} from '@cache/core'
import { cacheResponse, invalidateResponse, invalidateResponsePrefix } from '@cache/express'
import express, { type Express, type NextFunction, type Request, type Response } from 'express'
import { ProductService, SlowCatalog } from './catalog.js'
import { rateLimit } from './rate-limit.js'
import { reportPdf } from './report.js'
import { homePage } from './home-page.js'
import { statsPage } from './stats-page.js'

export interface DemoOptions {
  /** How slow the pretend database is, in ms. Default: 300. */
  catalogDelayMs?: number
}

/** The demo app. Call `configureCache()` before using it: every cache here uses the default backend. */
export function createApp(options: DemoOptions = {}): Express {
  const catalog = new SlowCatalog(options.catalogDelayMs ?? 300)
  const service = new ProductService(catalog)
  const app = express()
  app.use(express.json())

  // Response caches: one per kind of page, each with its own key prefix and stats.
  const productPages = cacheResponse({
    ttl: 30,
    keyPrefix: 'pages:products',
    tags: (req: Request) => ['products', ...(req.params.id ? [`product:${req.params.id}`] : [])],
  })
  const reports = cacheResponse({ ttl: '5m', keyPrefix: 'pages:reports', tags: ['products'] })
  // Not memoized underneath: a miss costs the whole slow query, a hit none of it.
  const reviewPages = cacheResponse({
    ttl: 60,
    keyPrefix: 'pages:reviews',
    tags: (req: Request) => ['reviews', `product:${req.params.id}`],
  })
  const responseCaches = { productPages, reports, reviewPages }
  const keyPrefixes = ['pages:products', 'pages:reports', 'pages:reviews']

  app.get('/', (_req, res) => {
    res.type('html').send(homePage())
  })

  app.get('/api/products', productPages, async (req, res) => {
    const category = typeof req.query.category === 'string' ? req.query.category : undefined
    res.json(await service.products(category))
  })

  app.get('/api/products/:id', productPages, async (req, res) => {
    const product = await service.product(req.params.id)
    if (product === null) {
      res.status(404).json({ error: `no product ${req.params.id}` })
      return
    }
    res.json(product)
  })

  app.get('/api/products/:id/reviews', reviewPages, async (req, res) => {
    const reviews = await catalog.reviews(req.params.id)
    if (reviews === null) {
      res.status(404).json({ error: `no product ${req.params.id}` })
      return
    }
    res.json(reviews)
  })

  // A binary response, cached byte for byte.
  app.get('/report.pdf', reports, async (_req, res) => {
    const products = await service.products()
    const lines = products.map((p) => `${p.name} (${p.category}): $${(p.priceCents / 100).toFixed(2)}`)
    res.type('application/pdf').send(reportPdf(`Price list, ${new Date().toISOString()}`, lines))
  })

  // A write: changes the data, then invalidates memoized results and cached pages by tag.
  app.put('/api/products/:id/price', async (req, res) => {
    const priceCents = Number(req.body?.priceCents)
    if (!Number.isSafeInteger(priceCents) || priceCents < 0) {
      res.status(400).json({ error: 'priceCents must be a whole number of cents' })
      return
    }
    const product = await catalog.setPrice(req.params.id, priceCents)
    if (product === null) {
      res.status(404).json({ error: `no product ${req.params.id}` })
      return
    }
    await invalidateTags(['products'])
    res.json(product)
  })

  // atomicUpdate: a read-modify-write that loses no update under concurrency.
  app.post('/api/products/:id/like', async (req, res) => {
    const likes = await cacheAtomicUpdate<number>(`likes:${req.params.id}`, (current) => (current ?? 0) + 1)
    res.json({ id: req.params.id, likes })
  })

  app.get('/api/products/:id/likes', async (req, res) => {
    res.json({ id: req.params.id, likes: (await cacheGet<number>(`likes:${req.params.id}`)) ?? 0 })
  })

  // An incr-based rate limiter: 5 quotes per client per minute.
  app.get('/api/quote', rateLimit({ limit: 5, windowSeconds: 60 }), (_req, res) => {
    const quotes = ['There are only two hard things…', 'Cache rules everything around me.', 'Measure twice.']
    res.json({ quote: quotes[Math.floor(Math.random() * quotes.length)] })
  })

  // Invalidation endpoints (a real app would protect these).
  app.post('/admin/invalidate', async (req, res) => {
    const url = typeof req.query.url === 'string' ? req.query.url : undefined
    if (!url?.startsWith('/')) {
      res.status(400).json({ error: 'give ?url=/path' })
      return
    }
    // From whichever response cache holds it.
    let removed = false
    for (const keyPrefix of keyPrefixes)
      if (await invalidateResponse(url, { host: req.get('host'), keyPrefix })) removed = true
    res.json({ url, removed })
  })
  app.post('/admin/invalidate/tag/:tag', async (req, res) => {
    await invalidateTags([req.params.tag])
    res.json({ tag: req.params.tag, invalidated: true })
  })
  app.post('/admin/invalidate/prefix/:prefix', async (req, res) => {
    await invalidateResponsePrefix(req.params.prefix)
    res.json({ prefix: req.params.prefix, invalidated: true })
  })
  app.post('/admin/flush', async (_req, res) => {
    await cacheFlush()
    res.json({ flushed: true })
  })

  const latency = new LevelLatency()
  const snapshot = async () => {
    const backend = getBackend()
    const latencies = await latency.measure(backend)
    return statsSnapshot(backend, responseCaches, service, catalog, latencies, latency.probed)
  }
  app.get('/stats.json', async (_req, res) => {
    res.json(await snapshot())
  })
  app.get('/stats', async (_req, res) => {
    res.type('html').send(statsPage(await snapshot()))
  })

  app.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => {
    console.error(error)
    res.status(500).json({ error: 'internal error' })
  })
  return app
}

/** What the stats page shows. */
export interface StatsSnapshot {
  backend: string
  stats: CacheStats | undefined
  /** Per level: its counters and the median time of one read of a cached entry, in µs. */
  levels: { name: string; stats: Record<string, unknown>; readLatencyUs: number }[]
  responses: { name: string; stats: CacheStats }[]
  memoized: { name: string; stats: CacheStats }[]
  catalogQueries: number
}

function statsSnapshot(
  backend: CacheBackend,
  responseCaches: Record<string, { stats: CacheStats }>,
  service: ProductService,
  catalog: SlowCatalog,
  latencies: number[],
  probed: { hits: number; misses: number },
): StatsSnapshot {
  // A multi-level chain reports each level; a single backend is its own only level (minus the
  // latency probe's reads, which a chain's level stats never see).
  const chain = backend as CacheBackend & { levelStats?: () => { name: string }[] }
  const levels =
    typeof chain.levelStats === 'function'
      ? chain
          .levelStats()
          .map((level, i) => ({ name: level.name, stats: { ...level }, readLatencyUs: latencies[i]! }))
      : [
          {
            name: backend.name,
            stats: {
              ...backend.stats,
              hits: (backend.stats?.hits ?? 0) - probed.hits,
              misses: (backend.stats?.misses ?? 0) - probed.misses,
            },
            readLatencyUs: latencies[0]!,
          },
        ]
  return {
    backend: backend.name,
    stats: backend.stats === undefined ? undefined : { ...backend.stats },
    levels,
    responses: Object.entries(responseCaches).map(([name, c]) => ({ name, stats: { ...c.stats } })),
    memoized: [
      { name: 'ProductService.product', stats: { ...memoized(service, 'product').stats } },
      { name: 'ProductService.products', stats: { ...memoized(service, 'products').stats } },
    ],
    catalogQueries: catalog.queries,
  }
}

/**
 * Read latency per level, for the home page's chart. The backends in process (memory, disk) do
 * not time their operations, so the demo times reads of one entry it keeps in each level: the
 * median of a few, each refresh.
 */
class LevelLatency {
  static readonly KEY = 'demo:latency-probe'
  static readonly READS = 15
  /** The probe's hits and misses on a single (non-chain) backend, which count in its own stats. */
  readonly probed = { hits: 0, misses: 0 }

  async measure(backend: CacheBackend): Promise<number[]> {
    const chain = backend as CacheBackend & { levels?: readonly { backend: CacheBackend }[] }
    const levels = chain.levels?.map((level) => level.backend) ?? [backend]
    const before = { hits: backend.stats?.hits ?? 0, misses: backend.stats?.misses ?? 0 }
    const latencies = await Promise.all(levels.map((level) => this.time(level)))
    if (chain.levels === undefined) {
      this.probed.hits += (backend.stats?.hits ?? 0) - before.hits
      this.probed.misses += (backend.stats?.misses ?? 0) - before.misses
    }
    return latencies
  }

  private async time(level: CacheBackend): Promise<number> {
    if ((await level.get(LevelLatency.KEY)) === undefined) await level.set(LevelLatency.KEY, 'probe', '1h')
    const times: number[] = []
    for (let i = 0; i < LevelLatency.READS; i++) {
      const start = performance.now()
      await level.get(LevelLatency.KEY)
      times.push((performance.now() - start) * 1000)
    }
    return Math.round(times.sort((a, b) => a - b)[LevelLatency.READS >> 1]!)
  }
}
