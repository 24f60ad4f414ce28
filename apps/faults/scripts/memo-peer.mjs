// One application process of the invalidation tests: it configures its cache as a user would
// (configureCache with a backend list, or a chain with an invalidation bus), memoizes a lookup
// of a "database" row, and does what the test process asks over IPC.
import { cache, cached, configureCache, getBackend, invalidateTags } from '@cache/core'
import { memoryBackend } from '@cache/memory'
import { multiLevel, redisBus } from '@cache/multi-level'
import { redisBackend } from '@cache/redis'

const spec = JSON.parse(process.argv[2])
let bus
let backend
if (spec.bus) {
  bus = redisBus(spec.redisUrl)
  backend = configureCache(
    multiLevel({
      levels: [memoryBackend(), redisBackend(spec.redisUrl, { namespace: spec.namespace })],
      bus,
    }),
  )
  await bus.ready()
} else {
  backend = configureCache({
    backend: spec.chain,
    namespace: spec.namespace,
    redisUrl: spec.redisUrl,
    memcachedServers: spec.memcachedServers,
    diskPath: spec.diskPath,
  })
}
// Failures of a level are counted and evented; this process has no logger to print them to.
backend.on?.('error', () => {})

/** The database: what the memoized function reads. Both processes are told every change. */
const rows = new Map()
let runs = 0
const row = cached(
  async function row(id) {
    runs++
    return { id, version: rows.get(id) }
  },
  { ttl: 600, tags: (id) => [`row:${spec.namespace}:${id}`] },
)

/**
 * A decorated service method, as one build of the application compiles it (the legacy form of
 * `@cache({ ttl: 600 })`). `spec.build` picks the source: two builds differ by one field, as a
 * rolling deploy's old and new processes do.
 */
const BUILDS = {
  v1: class Prices {
    async quote(sku) {
      return { sku, price: rows.get('price'), build: 'v1' }
    }
  },
  v2: class Prices {
    async quote(sku) {
      return { sku, price: rows.get('price'), build: 'v2', currency: 'EUR' }
    }
  },
}
const Prices = BUILDS[spec.build ?? 'v1']
Object.defineProperty(
  Prices.prototype,
  'quote',
  cache({ ttl: 600 })(Prices.prototype, 'quote', Object.getOwnPropertyDescriptor(Prices.prototype, 'quote')),
)
const prices = new Prices()
const other = cached(async (id) => id, { name: 'other', ttl: 600 })

const ops = {
  db: (id, version) => void rows.set(id, version),
  call: async (id) => (await row(id)).version,
  key: (id) => row.keyFor(id),
  clear: () => row.clear(),
  invalidate: (id) => row.invalidate(id),
  invalidateTags: (id) => invalidateTags([`row:${spec.namespace}:${id}`]),
  runs: () => runs,
  quote: async (sku) => (await prices.quote(sku)).price,
  quoteInvalidate: (sku) => prices.quote.invalidate(sku),
  quoteClear: () => prices.quote.clear(),
  other: (id) => other(id),
  backendClear: () => getBackend().clear(),
  levels: () => backend.levelStats?.() ?? [],
  close: async () => {
    await backend.close()
    await bus?.close()
  },
}

process.on('message', async ({ seq, op, args }) => {
  try {
    const result = await ops[op](...args)
    process.send({ seq, ok: true, result })
  } catch (error) {
    process.send({ seq, ok: false, error: { name: error?.name, message: error?.message } })
  }
  if (op === 'close') process.disconnect()
})
process.send({ ready: true })
