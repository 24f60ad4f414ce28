import Fastify from 'fastify'
import { memoryBackend } from '@cache/memory'
async function make(variant) {
  const { cachePlugin } = await import(`./${variant}/index.js`)
  const app = Fastify()
  await app.register(cachePlugin, { backend: memoryBackend() })
  app.get('/p', { config: { cache: { ttl: 600 } } }, async () => ({ hello: 'world' }))
  await app.ready()
  for (let i = 0; i < 3000; i++) await app.inject({ url: '/p' })
  return app
}
const order = process.argv[2] === 'rev' ? ['after','before'] : ['before','after']; const apps = {}; for (const v of order) apps[v] = await make(process.argv[3] === 'same' ? 'after' : v)
const total = { before: 0n, after: 0n }
const B = 1000, R = 30
for (let r = 0; r < R; r++)
  for (const v of r % 2 ? ['before', 'after'] : ['after', 'before']) {
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < B; i++) await apps[v].inject({ url: '/p' })
    total[v] += process.hrtime.bigint() - t0
  }
for (const v of ['before', 'after']) console.log(v, (Number(total[v]) / (B * R) / 1000).toFixed(2), 'µs/hit', apps[v].cache.routes.get('/p').stats.hits)
