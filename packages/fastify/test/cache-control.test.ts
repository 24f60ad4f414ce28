import { memoryBackend } from '@cache/memory'
import Fastify from 'fastify'
import { afterEach, describe, expect, it } from 'vitest'
import { cachePlugin } from '../src/index.js'

const apps: ReturnType<typeof Fastify>[] = []
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()))
})

describe('cacheControl on a relayed response that came with an Age', () => {
  it('max-age − Age is the freshness this cache has left, on the miss and on a hit 20 s later', async () => {
    let now = 1_000_000_000_000
    const app = Fastify()
    apps.push(app)
    await app.register(cachePlugin, { backend: memoryBackend(), now: () => now })
    app.get('/relay', { config: { cache: { ttl: 60, cacheControl: true } } }, async (_request, reply) =>
      reply.header('age', '50').send('relayed from upstream'),
    )
    const base = await app.listen({ port: 0, host: '127.0.0.1' })
    const downstream = (response: Response) =>
      Number(/max-age=(\d+)/.exec(response.headers.get('cache-control') ?? '')?.[1]) -
      Number(response.headers.get('age'))
    const miss = await fetch(`${base}/relay`)
    await miss.arrayBuffer()
    expect(downstream(miss)).toBe(60)
    now += 20_000
    const hit = await fetch(`${base}/relay`)
    await hit.arrayBuffer()
    expect(hit.headers.get('age')).toBe('70')
    expect(hit.headers.get('cache-status')).toBe('@cache; hit; ttl=40')
    expect(downstream(hit)).toBe(40)
  })
})
