import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { CacheBackend } from '@cache/core'
import { diskBackend } from '@cache/disk'
import { memoryBackend } from '@cache/memory'
import { redisBackend } from '@cache/redis'
import { type FaultProxy, type RedisServer, startFaultProxy, startRedis, until } from '@cache/test-servers'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type MultiLevelEvent, multiLevel } from '../src/index.js'

// A write the shared level ran but whose reply was lost (the link drops right after Redis
// answered): the chain reports it failed with Redis still in use (breaker closed). Meanwhile other
// processes (here: backends of their own on the same Redis, not going through the proxy) keep
// writing the key, with the very values this one replaced too. Nothing done afterwards in the
// background (a repair) may destroy what they wrote.

let redis: RedisServer
let proxy: FaultProxy
const dirs: string[] = []
beforeAll(async () => {
  redis = await startRedis({ spawn: true })
  proxy = await startFaultProxy({ port: redis.port })
})
afterAll(async () => {
  await proxy?.close()
  await redis?.stop()
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
let n = 0

type Layout = 'memory,redis' | 'memory,disk,redis'

/** This process's chain (its Redis link through the proxy) and another process's client of the same Redis. */
async function processes(layout: Layout, options: { maxPendingKeys?: number } = {}) {
  const namespace = `repair${process.pid}-${++n}`
  const shared = redisBackend(`redis://127.0.0.1:${proxy.port}`, {
    namespace,
    timeout: '300ms',
    maxReconnectDelay: '20ms',
    logger: false,
  })
  const levels: CacheBackend[] = [memoryBackend()]
  if (layout === 'memory,disk,redis') {
    const dir = mkdtempSync(join(tmpdir(), 'ml-repair-'))
    dirs.push(dir)
    levels.push(diskBackend({ path: join(dir, 'cache.db'), namespace }))
  }
  levels.push(shared)
  const chain = multiLevel({
    levels,
    breaker: { failureThreshold: 5 },
    logger: false,
    ...options,
  })
  const errors: MultiLevelEvent[] = []
  chain.on('error', (event) => errors.push(event))
  const other = redisBackend(redis.url, { namespace })
  const third = redisBackend(redis.url, { namespace })
  // Connected before the test's first call, which would otherwise wait its 300 ms for it.
  await Promise.all([shared.ready(), other.ready(), third.ready()])
  return {
    chain,
    shared,
    other,
    third,
    errors,
    close: () => Promise.all([chain.close(), other.close(), third.close()]),
  }
}

/** Runs `write` with the link dropped right after Redis's next reply: applied, reported failed. */
async function withReplyLost(write: () => Promise<unknown>): Promise<unknown> {
  const dropped = proxy.dropNextReply()
  const outcome = await write().then(
    () => undefined,
    (error: unknown) => error,
  )
  await dropped
  return outcome
}

/** Until the chain has no repair waiting on its shared level, and a little more for one in flight. */
async function repaired(chain: ReturnType<typeof multiLevel>): Promise<void> {
  await until(() => chain.levelStats().at(-1)!.pendingKeys === 0, 5000)
  await sleep(200)
}

describe.each<Layout>(['memory,redis', 'memory,disk,redis'])(
  'multiLevel(%s): the repair after a write whose reply was lost (breaker closed)',
  (layout) => {
    it('never deletes a lock another process took after this one released it', async () => {
      const { chain, other, third, close } = await processes(layout)
      try {
        expect(await chain.add('L', 'A', '20s')).toBe(true)
        // The release reaches Redis, the reply does not: reported failed.
        const failure = await withReplyLost(() => chain.delete('L'))
        expect(failure).toMatchObject({ code: 'CACHE_UNAVAILABLE' })
        expect(chain.levelStats().at(-1)!.state).toBe('closed')
        expect(await other.get('L')).toBeUndefined()
        // Another process takes the lock at once.
        expect(await other.add('L', 'B', '20s')).toBe(true)
        await repaired(chain)
        // B still holds it: a third process cannot take it too.
        expect(await other.get('L')).toBe('B')
        expect(await third.add('L', 'C', '20s')).toBe(false)
        expect(await chain.get('L')).toBe('B')
      } finally {
        await close()
      }
    })

    it("never erases the increments other processes made after this one's reset", async () => {
      const { chain, other, close } = await processes(layout)
      try {
        for (let i = 0; i < 5; i++) await other.incr('ctr')
        expect(await chain.get('ctr')).toBe(5) // L1 now holds a copy
        // The reset reaches Redis, the reply does not.
        const failure = await withReplyLost(() => chain.delete('ctr'))
        expect(failure).toMatchObject({ code: 'CACHE_UNAVAILABLE' })
        const confirmed: number[] = []
        for (let i = 0; i < 3; i++) confirmed.push(await other.incr('ctr'))
        expect(confirmed).toEqual([1, 2, 3])
        await repaired(chain)
        expect(await other.incr('ctr')).toBe(4)
        expect(await chain.get('ctr')).toBe(4)
      } finally {
        await close()
      }
    })

    it('never deletes a lock another process took with the same value after this one released it', async () => {
      const { chain, other, third, close } = await processes(layout)
      try {
        expect(await chain.add('L', true, '20s')).toBe(true)
        expect(await chain.get('L')).toBe(true) // a copy in the faster levels
        expect(await withReplyLost(() => chain.delete('L'))).toMatchObject({ code: 'CACHE_UNAVAILABLE' })
        // Another process takes the lock at once, with the same value.
        expect(await other.add('L', true, '20s')).toBe(true)
        await repaired(chain)
        expect(await third.add('L', true, '20s')).toBe(false)
        expect(await other.get('L')).toBe(true)
      } finally {
        await close()
      }
    })

    it('never erases increments that brought a counter back to the value this one reset', async () => {
      const { chain, other, close } = await processes(layout)
      try {
        for (let i = 0; i < 3; i++) await other.incr('ctr')
        expect(await chain.get('ctr')).toBe(3) // a copy in the faster levels
        expect(await withReplyLost(() => chain.set('ctr', 0))).toMatchObject({ code: 'CACHE_UNAVAILABLE' })
        const confirmed: number[] = []
        for (let i = 0; i < 3; i++) confirmed.push(await other.incr('ctr'))
        expect(confirmed).toEqual([1, 2, 3])
        await repaired(chain)
        expect(await other.incr('ctr')).toBe(4)
      } finally {
        await close()
      }
    })

    it('keeps the value its own write applied, and serves it once the link is back', async () => {
      const { chain, other, close } = await processes(layout)
      try {
        await chain.set('k', 'old')
        // Applied on Redis, reported failed: Redis holds the new value, not the old one.
        expect(await withReplyLost(() => chain.set('k', 'new'))).toMatchObject({ code: 'CACHE_UNAVAILABLE' })
        // Never the old value, here either (a miss while the link comes back is allowed).
        expect(await chain.get('k')).not.toBe('old')
        await repaired(chain)
        expect(await other.get('k')).toBe('new')
        expect(await chain.get('k')).toBe('new')
      } finally {
        await close()
      }
    })
  },
)

describe('multiLevel(memory, redis): a failed batch larger than maxPendingKeys (breaker closed)', () => {
  it("never clears the shared namespace: other processes' counters and locks stay", async () => {
    const { chain, other, errors, close } = await processes('memory,redis', { maxPendingKeys: 5 })
    const failedBefore = () => errors.filter((e) => e.level === 1 && e.operation === 'setMany').length
    try {
      for (let i = 0; i < 3; i++) await other.incr('ctr')
      expect(await other.add('lock', 'B', '20s')).toBe(true)
      const items = Array.from({ length: 6 }, (_, i) => ({ key: `k${i}`, value: i }))
      expect(await withReplyLost(() => chain.setMany(items))).toMatchObject({ code: 'CACHE_UNAVAILABLE' })
      expect(failedBefore()).toBe(1)
      expect(chain.levelStats()[1]!.state).toBe('closed')
      await sleep(500)
      expect(chain.levelStats()[1]!.pendingClear).toBe(false)
      expect(await other.get('ctr')).toBe(3)
      expect(await other.get('lock')).toBe('B')
      expect(await other.incr('ctr')).toBe(4)
      // The failure is said (evented with the level), and this process reads what Redis holds, as
      // the others do.
      expect(await chain.get('k0')).toBe(await other.get('k0'))
    } finally {
      await close()
    }
  })
})

describe("multiLevel(memory, redis without a namespace): a clear() Redis's backend refuses", () => {
  it('throws that error and leaves Redis in use: counters and locks stay shared with other processes', async () => {
    // Databases of their own: a namespace-less backend owns its database.
    const db = 9
    const shared = redisBackend(`${redis.url}/${db}`, { namespace: '', logger: false })
    const chain = multiLevel({
      levels: [memoryBackend(), shared],
      breaker: { failureThreshold: 3, openFor: '200ms' },
      logger: false,
    })
    const other = redisBackend(`${redis.url}/${db}`, { namespace: '', logger: false })
    try {
      expect(await other.incr('ctr')).toBe(1)
      expect(await other.add('lock', 'B', '20s')).toBe(true)
      await expect(chain.clear()).rejects.toMatchObject({ code: 'CACHE_CONFIG' })
      await sleep(600)
      expect(chain.levelStats()[1]).toMatchObject({ state: 'closed', pendingClear: false })
      expect(await chain.incr('ctr')).toBe(2)
      expect(await chain.add('lock', 'A', '20s')).toBe(false)
      expect(await other.get('ctr')).toBe(2)
    } finally {
      await other.delete('ctr')
      await other.delete('lock')
      await chain.close()
      await other.close()
    }
  })
})

describe('multiLevel(memory, redis without a namespace): a clear() missed while Redis was unreachable', () => {
  it('is not replayed on Redis, which is used again: counters stay shared', async () => {
    const db = 10
    const shared = redisBackend(`redis://127.0.0.1:${proxy.port}/${db}`, {
      namespace: '',
      timeout: '300ms',
      maxReconnectDelay: '20ms',
      logger: false,
    })
    const chain = multiLevel({
      levels: [memoryBackend(), shared],
      breaker: { failureThreshold: 1, openFor: '200ms' },
      logger: false,
    })
    const repairs: MultiLevelEvent[] = []
    chain.on('error', (e) => e.operation === 'repair' && repairs.push(e))
    const other = redisBackend(`${redis.url}/${db}`, { namespace: '', logger: false })
    try {
      for (let i = 0; i < 10; i++) await other.incr('hits')
      await chain.get('warm')
      await proxy.refuse()
      proxy.dropAll()
      await chain.get('a').catch(() => undefined)
      await until(() => chain.levelStats()[1]!.state !== 'closed', 3000)
      await other.set('lock', 'holder-A')
      await chain.clear().catch(() => undefined)
      // Never to be replayed on Redis.
      expect(chain.levelStats()[1]!.pendingClear).toBe(false)
      // Released while Redis was unreachable: repaired, although the clear before it is not.
      await expect(chain.delete('lock')).rejects.toMatchObject({ code: 'CACHE_UNAVAILABLE' })
      await proxy.listen()
      await until(() => chain.levelStats()[1]!.state === 'closed', 5000)
      expect(chain.levelStats()[1]!.pendingClear).toBe(false)
      expect(await chain.incr('hits')).toBe(11)
      expect(await other.get('lock')).toBeUndefined()
      expect(repairs.filter((e) => /clear\(\) it missed is not repaired/.test(String(e.error)))).toHaveLength(
        1,
      )
    } finally {
      await proxy.listen().catch(() => undefined)
      await other.delete('hits')
      await other.delete('lock')
      await chain.close()
      await other.close()
    }
  })
})
