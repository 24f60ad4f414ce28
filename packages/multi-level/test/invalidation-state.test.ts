import { CacheUnavailableError, cached, invalidateTags } from '@cache/core'
import { generationKey } from '@cache/core/backend'
import { memoryBackend } from '@cache/memory'
import { redisBackend } from '@cache/redis'
import { type RedisServer, startRedis } from '@cache/test-servers'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { multiLevel } from '../src/index.js'
import { chaos } from './chaos.js'

let redis: RedisServer
beforeAll(async () => {
  redis = await startRedis()
})
afterAll(async () => {
  await redis?.stop()
})

let n = 0
const namespace = () => `state${process.pid}-${Date.now()}-${++n}`
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Polls `check` until it holds or `ms` pass; returns whether it held. */
async function eventually(check: () => Promise<boolean>, ms = 3000): Promise<boolean> {
  const deadline = Date.now() + ms
  for (;;) {
    if (await check()) return true
    if (Date.now() > deadline) return false
    await sleep(20)
  }
}

/** Two chains on one Redis, each with its own L1 and no bus: two processes in miniature. */
function twoChains() {
  const ns = namespace()
  const a = multiLevel(memoryBackend(), redisBackend(redis.url, { namespace: ns }))
  const b = multiLevel(memoryBackend(), redisBackend(redis.url, { namespace: ns }))
  const db = { value: 'old' }
  const options = { name: 'lookup', tags: (id: number) => [`row:${ns}:${id}`] }
  const fa = cached(async (id: number) => `${db.value} ${id}`, { ...options, backend: a })
  const fb = cached(async (id: number) => `${db.value} ${id}`, { ...options, backend: b })
  return { a, db, fa, fb, tag: `row:${ns}:1`, close: () => Promise.all([a.close(), b.close()]) }
}

describe('invalidation state in a chain without a bus', () => {
  type Chains = ReturnType<typeof twoChains>
  it.each([
    ['clear()', ({ fa }: Chains) => fa.clear()],
    ['invalidate()', ({ fa }: Chains) => fa.invalidate(1)],
    ['invalidateTags()', ({ a, tag }: Chains) => invalidateTags([tag], { backend: a })],
  ])(
    '%s in one chain is seen at once by another chain whose L1 holds the result',
    async (_label, invalidate) => {
      const chains = twoChains()
      const { db, fa, fb } = chains
      expect(await fa(1)).toBe('old 1')
      expect(await fb(1)).toBe('old 1')
      // Several rounds: the first invalidation creates the state that later ones must change.
      for (const value of ['new', 'newer', 'newest']) {
        db.value = value
        await invalidate(chains)
        expect(await fb(1)).toBe(`${value} 1`)
        expect(await fb(1)).toBe(`${value} 1`) // now a hit in b's L1
        expect(await fa(1)).toBe(`${value} 1`)
      }
      await chains.close()
    },
  )

  it('never copies invalidation state into L1 (without stateTtl)', async () => {
    const { a, fa, close } = twoChains()
    await fa(1)
    const l1 = a.levels[0]!.backend
    const state = [generationKey('fn', 'memo', 'lookup'), generationKey('fn', 'memo', 'lookup', '1')]
    for (const key of state) expect(await l1.has(key)).toBe(false)
    for (const key of state) expect(await a.has(key)).toBe(true)
    await close()
  })
})

describe('a write that fails once on the shared level (breaker still closed)', () => {
  function chain() {
    const ns = namespace()
    const shared = chaos(redisBackend(redis.url, { namespace: ns }))
    const cache = multiLevel({ levels: [memoryBackend(), shared], breaker: { failureThreshold: 5 } })
    // Another process, reading the shared level.
    const other = redisBackend(redis.url, { namespace: ns })
    return { shared, cache, other, close: () => Promise.all([cache.close(), other.close()]) }
  }

  // The chain cannot tell whether the level applied the write (a lost reply) nor what other
  // processes wrote since: it repairs nothing there, and reads what the level holds, as the others
  // do. The caller, told the write was not taken, writes again.
  it('delete: is reported, this process reads what Redis holds as the others do, and a retry that resolves removes it everywhere', async () => {
    const { shared, cache, other, close } = chain()
    await cache.set('k', 'old')
    shared.failNext('delete')
    await expect(cache.delete('k')).rejects.toBeInstanceOf(CacheUnavailableError)
    expect(cache.levels[1]!.breaker.state).toBe('closed')
    expect(await other.get('k')).toBe('old')
    expect(await cache.get('k')).toBe('old')
    expect(cache.levelStats()[1]!.pendingKeys).toBe(0)
    await cache.delete('k')
    expect(await cache.get('k')).toBeUndefined()
    expect(await cache.getMany(['k'])).toEqual([undefined])
    expect(await other.get('k')).toBeUndefined()
    await close()
  })

  it('set: is reported, this process reads what Redis holds as the others do, and a retry that resolves stores it everywhere', async () => {
    const { shared, cache, other, close } = chain()
    await cache.set('k', 'old')
    shared.failNext('set')
    await expect(cache.set('k', 'new')).rejects.toBeInstanceOf(CacheUnavailableError)
    expect(await cache.get('k')).toBe(await other.get('k'))
    await cache.set('k', 'new')
    expect(await cache.get('k')).toBe('new')
    expect(await other.get('k')).toBe('new')
    await close()
  })

  it('memoize invalidate(): is reported, and the old result is served neither here nor elsewhere', async () => {
    const { shared, cache, other, close } = chain()
    const elsewhere = multiLevel(memoryBackend(), other)
    let db = 'old'
    const here = cached(async (id: number) => `${db} ${id}`, { backend: cache, name: 'failOnce' })
    const there = cached(async (id: number) => `${db} ${id}`, { backend: elsewhere, name: 'failOnce' })
    expect(await here(1)).toBe('old 1')
    expect(await there(1)).toBe('old 1')
    db = 'new'
    shared.failNext('set')
    await expect(here.invalidate(1)).rejects.toBeInstanceOf(CacheUnavailableError)
    expect(await here(1)).toBe('new 1')
    expect(await eventually(async () => (await there(1)) === 'new 1')).toBe(true)
    await elsewhere.close()
    await close()
  })
})

describe('copies of invalidation state (stateTtl)', () => {
  it('are not trusted while the shared level cannot answer: the call computes instead', async () => {
    const ns = namespace()
    const shared = chaos(redisBackend(redis.url, { namespace: ns }))
    const cache = multiLevel({
      levels: [memoryBackend(), shared],
      stateTtl: '10s',
      breaker: { failureThreshold: 1, openFor: '10s' },
    })
    cache.on('error', () => {})
    let db = 'old'
    const f = cached(async (id: number) => `${db} ${id}`, { backend: cache, name: 'copied' })
    try {
      expect(await f(1)).toBe('old 1')
      expect(await f(1)).toBe('old 1') // served with the state copied into L1
      // Another process clears while this one cannot reach the shared level (or the bus).
      const other = redisBackend(redis.url, { namespace: ns })
      db = 'new'
      await cached(async () => 0, { backend: other, name: 'copied' }).clear()
      await other.close()
      shared.down = true
      // A read this process makes meanwhile finds the shared level down: its breaker opens.
      await cache.get('unrelated')
      await expect(cache.getMany(['x', generationKey('fn', 'memo', 'copied')])).rejects.toBeInstanceOf(
        CacheUnavailableError,
      )
      expect(cache.levelStats()[1]!.state).not.toBe('closed')
      expect(await f(1)).toBe('new 1')
    } finally {
      shared.down = false
      await cache.close()
    }
  })
})
