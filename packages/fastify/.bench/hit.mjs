import Fastify from 'fastify'
import { memoryBackend } from '@cache/memory'
const variant = process.argv[2]
const { cachePlugin } = await import(`./${variant}/index.js`)
const app = Fastify()
await app.register(cachePlugin, { backend: memoryBackend() })
app.get('/p', { config: { cache: { ttl: 600 } } }, async () => ({ hello: 'world' }))
await app.ready()
await app.inject({ url: '/p' })
const N = 20000
for (let i = 0; i < 3000; i++) await app.inject({ url: '/p' })
const t0 = process.hrtime.bigint()
for (let i = 0; i < N; i++) await app.inject({ url: '/p' })
const ns = Number(process.hrtime.bigint() - t0) / N
const s = app.cache.routes.get('/p').stats
console.log(variant, (ns / 1000).toFixed(2), 'µs/hit', 'hits', s.hits)
await app.close()
