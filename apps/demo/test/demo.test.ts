/**
 * End to end: builds the demo, starts it as a child process on a free port and exercises every
 * route over HTTP. Runs on the default memory,disk chain, and on memory,redis with a real
 * redis-server when one is installed.
 */
import { execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type RedisServer, requireBinary, startRedis } from '@cache/test-servers'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Demo, demoDir, startDemo } from './start-demo.js'

function redisInstalled(): boolean {
  try {
    requireBinary('redis-server')
    return existsSync(join(demoDir, 'node_modules/@cache/redis/dist'))
  } catch {
    return false
  }
}

const setups = ['memory,disk', ...(redisInstalled() ? ['memory,redis'] : [])]

beforeAll(() => {
  execFileSync('pnpm', ['run', 'build'], { cwd: demoDir, stdio: 'ignore' })
}, 60_000)

describe.each(setups)('the demo on %s', (backendList) => {
  let demo: Demo
  let diskPath: string
  let redis: RedisServer | undefined

  beforeAll(async () => {
    diskPath = mkdtempSync(join(tmpdir(), 'cache-demo-'))
    const env: Record<string, string> = { CACHE_BACKEND: backendList, CACHE_DISK_PATH: diskPath }
    if (backendList.includes('redis')) {
      redis = await startRedis({ spawn: true })
      env.REDIS_URL = redis.url
    }
    demo = await startDemo(env)
  }, 30_000)

  afterAll(async () => {
    await demo?.stop()
    await redis?.stop()
    rmSync(diskPath, { recursive: true, force: true })
  })

  const get = (path: string, init?: RequestInit) => fetch(`${demo.base}${path}`, init)
  const post = (path: string, body?: unknown) =>
    fetch(`${demo.base}${path}`, {
      method: 'POST',
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
  const stats = async () => (await (await get('/stats.json')).json()) as any

  it('serves the index page', async () => {
    const res = await get('/')
    expect(res.status).toBe(200)
    expect(await res.text()).toContain('@cache demo')
  })

  it('caches the product list: a miss that is stored, then hits', async () => {
    const miss = await get('/api/products')
    expect(miss.headers.get('cache-status')).toBe('@cache; fwd=uri-miss; stored')
    const body = await miss.json()
    expect(body).toHaveLength(4)
    const hit = await get('/api/products')
    expect(hit.headers.get('cache-status')).toMatch(/^@cache; hit; ttl=\d+$/)
    expect(hit.headers.get('age')).toMatch(/^\d+$/)
    expect(await hit.json()).toEqual(body)
    const head = await get('/api/products', { method: 'HEAD' })
    expect(head.headers.get('cache-status')).toMatch(/hit/)
  })

  it('answers a conditional request with 304', async () => {
    const first = await get('/api/products?category=kitchen')
    const etag = first.headers.get('etag')!
    expect(etag).toBeTruthy()
    const again = await get('/api/products?category=kitchen', { headers: { 'if-none-match': etag } })
    expect(again.status).toBe(304)
  })

  it('does not store a 404', async () => {
    expect((await get('/api/products/999')).status).toBe(404)
    const again = await get('/api/products/999')
    expect(again.status).toBe(404)
    expect(again.headers.get('cache-status')).toBe('@cache; fwd=uri-miss; detail=status')
  })

  it('serves a PDF byte for byte from the cache', async () => {
    const miss = await get('/report.pdf')
    expect(miss.headers.get('content-type')).toBe('application/pdf')
    const original = Buffer.from(await miss.arrayBuffer())
    expect(original.subarray(0, 5).toString()).toBe('%PDF-')
    const hit = await get('/report.pdf')
    expect(hit.headers.get('cache-status')).toMatch(/hit/)
    expect(hit.headers.get('content-length')).toBe(String(original.length))
    expect(Buffer.from(await hit.arrayBuffer()).equals(original)).toBe(true)
  })

  it('answers a re-fetched page from the memoized service after its response is invalidated', async () => {
    await get('/api/products/2')
    const queries = (await stats()).catalogQueries
    const removed = await (await post('/admin/invalidate?url=/api/products/2')).json()
    expect(removed).toEqual({ url: '/api/products/2', removed: true })
    const res = await get('/api/products/2')
    expect(res.headers.get('cache-status')).toBe('@cache; fwd=uri-miss; stored')
    expect((await stats()).catalogQueries).toBe(queries)
    expect((await post('/admin/invalidate?url=nope')).status).toBe(400)
  })

  it('invalidates memoized results and cached pages by tag when a price changes', async () => {
    await get('/api/products/3')
    const put = await fetch(`${demo.base}/api/products/3/price`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ priceCents: 4200 }),
    })
    expect(put.status).toBe(200)
    const res = await get('/api/products/3')
    expect(res.headers.get('cache-status')).toContain('fwd=uri-miss')
    expect(((await res.json()) as { priceCents: number }).priceCents).toBe(4200)
    const bad = await fetch(`${demo.base}/api/products/3/price`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ priceCents: 'free' }),
    })
    expect(bad.status).toBe(400)
  })

  it('invalidates by tag and by prefix from the admin endpoints', async () => {
    await get('/api/products/4')
    expect((await get('/api/products/4')).headers.get('cache-status')).toMatch(/hit/)
    await post('/admin/invalidate/tag/product:4')
    expect((await get('/api/products/4')).headers.get('cache-status')).toContain('fwd=uri-miss')
    await get('/report.pdf')
    expect((await get('/report.pdf')).headers.get('cache-status')).toMatch(/hit/)
    await post('/admin/invalidate/prefix/pages')
    expect((await get('/report.pdf')).headers.get('cache-status')).toContain('fwd=uri-miss')
  })

  it('counts likes with atomicUpdate without losing concurrent updates', async () => {
    const replies = await Promise.all(Array.from({ length: 20 }, () => post('/api/products/1/like')))
    const counts = await Promise.all(replies.map(async (r) => ((await r.json()) as { likes: number }).likes))
    expect(new Set(counts).size).toBe(20)
    expect(Math.max(...counts)).toBe(20)
    expect(await (await get('/api/products/1/likes')).json()).toEqual({ id: '1', likes: 20 })
  })

  it('rate-limits with incr: 5 quotes, then 429', async () => {
    for (let i = 0; i < 5; i++) {
      const res = await get('/api/quote')
      expect(res.status).toBe(200)
      expect(res.headers.get('ratelimit-remaining')).toBe(String(4 - i))
    }
    const limited = await get('/api/quote')
    expect(limited.status).toBe(429)
    expect(limited.headers.get('retry-after')).toBe('60')
  })

  it('shows hits and misses per level on the stats page', async () => {
    const snapshot = await stats()
    expect(snapshot.levels.map((l: { name: string }) => l.name)).toEqual(backendList.split(','))
    expect(snapshot.responses.find((r: any) => r.name === 'productPages').stats.hits).toBeGreaterThan(0)
    expect(
      snapshot.memoized.find((m: any) => m.name === 'ProductService.product').stats.misses,
    ).toBeGreaterThan(0)
    const html = await (await get('/stats')).text()
    for (const name of backendList.split(',')) expect(html).toContain(`<td>${name}</td>`)
    expect(html).toContain('ProductService.product')
  })

  it('flushes the cache', async () => {
    await get('/api/products')
    expect(await (await post('/admin/flush')).json()).toEqual({ flushed: true })
    expect((await get('/api/products')).headers.get('cache-status')).toContain('fwd=uri-miss')
  })
})
