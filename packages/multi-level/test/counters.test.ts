import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { diskBackend } from '@cache/disk'
import { memcachedBackend } from '@cache/memcached'
import { memoryBackend } from '@cache/memory'
import { redisBackend } from '@cache/redis'
import {
  type FaultProxy,
  type RedisServer,
  startFaultProxy,
  startMemcached,
  startRedis,
  until,
} from '@cache/test-servers'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type MultiLevelEvent, multiLevel } from '../src/index.js'

const WORKER = fileURLToPath(new URL('./fixtures/counter-worker.mjs', import.meta.url))

let redis: RedisServer
let admin: Redis
beforeAll(async () => {
  // Its own server: these tests freeze it.
  redis = await startRedis({ spawn: true })
  admin = new Redis(redis.url)
})
afterAll(async () => {
  admin?.disconnect()
  await redis?.stop()
})

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
let n = 0

/** Keeps Redis busy for `ms` (a Lua loop): commands sent meanwhile wait, then run. */
function stall(ms: number): Promise<unknown> {
  return admin.eval(
    `local t = redis.call('TIME')
     while true do
       local now = redis.call('TIME')
       if (now[1] - t[1]) * 1000000 + (now[2] - t[2]) > ${ms * 1000} then return 1 end
     end`,
    0,
  )
}

/** A chain in this process, and a client of the same Redis namespace standing for another process. */
function counters(timeout = '150ms') {
  const namespace = `counters${++n}`
  // Failures in a row do not open the breaker here: Redis stays in use (see the outage tests below).
  const chain = multiLevel({
    levels: [memoryBackend(), redisBackend(redis.url, { namespace, timeout })],
    breaker: { failureThreshold: 10 },
  })
  const errors: MultiLevelEvent[] = []
  chain.on('error', (event) => errors.push(event))
  const other = redisBackend(redis.url, { namespace, timeout: '5s' })
  return { chain, other, errors, close: () => Promise.all([chain.close(), other.close()]) }
}

/** Runs `call` while Redis stalls longer than the chain's timeout; resolves what it settled to. */
async function duringStall<T>(call: () => Promise<T>): Promise<PromiseSettledResult<T>> {
  const stalled = stall(400)
  await sleep(30)
  const [settled] = await Promise.allSettled([call()])
  await stalled
  // What the chain's background repair did with a failed write would be done by now.
  await sleep(300)
  return settled
}

describe('multiLevel(memory, redis): incr and atomicUpdate when Redis fails once (breaker closed)', () => {
  it('rejects an incr that timed out, and the counter keeps every increment of the other processes', async () => {
    const { chain, other, errors, close } = counters()
    try {
      for (let i = 0; i < 100; i++) await other.incr('hits')
      await chain.get('warm') // connected
      const settled = await duringStall(() => chain.incr('hits'))
      expect(settled).toMatchObject({ status: 'rejected', reason: { code: 'CACHE_TIMEOUT' } })
      expect(errors[0]).toMatchObject({ operation: 'incr', level: 1, error: { code: 'CACHE_TIMEOUT' } })
      expect(errors.length).toBeLessThanOrEqual(2)
      expect(chain.levelStats()[1]).toMatchObject({ state: 'closed', pendingKeys: 0 })
      // The timed-out INCR waited in Redis and ran after the stall: applied, but reported failed;
      // once the redis backend finds that out, the chain tells it (its only other error event).
      const shared = await other.get<number>('hits')
      expect(shared === 100 || shared === 101).toBe(true)
      for (const late of errors.slice(1))
        expect(late).toMatchObject({
          operation: 'incr',
          key: 'hits',
          level: 1,
          error: { code: 'CACHE_ERROR' },
        })
      if (errors.length > 1)
        expect(String(errors[1]!.error)).toMatch(/applied although it was reported failed/)
      expect(await other.incr('hits')).toBe(shared! + 1)
      expect(await chain.incr('hits')).toBe(shared! + 2)
      expect(await chain.get('hits')).toBe(shared! + 2)
    } finally {
      await close()
    }
  })

  it('rejects an atomicUpdate that timed out, and loses no update of the other processes', async () => {
    const { chain, other, close } = counters()
    try {
      for (let i = 0; i < 20; i++) await other.atomicUpdate<number[]>('marks', (v) => [...(v ?? []), i])
      await chain.get('marks') // L1 holds a copy
      const settled = await duringStall(() =>
        chain.atomicUpdate<number[]>('marks', (v) => [...(v ?? []), 100]),
      )
      expect(settled.status).toBe('rejected')
      const shared = (await other.get<number[]>('marks'))!
      expect(shared.slice(0, 20)).toEqual(Array.from({ length: 20 }, (_, i) => i))
      expect(shared.length === 20 || shared.length === 21).toBe(true)
      expect(await other.atomicUpdate<number[]>('marks', (v) => [...(v ?? []), 200])).toEqual([
        ...shared,
        200,
      ])
      // The chain reads what Redis holds, not a copy from before the failed call.
      expect(await chain.get('marks')).toEqual([...shared, 200])
    } finally {
      await close()
    }
  })

  it('never grants a lock another process holds, nor takes it from it, when add or compareAndDelete time out', async () => {
    const { chain, other, close } = counters()
    try {
      expect(await other.add('lock', 'theirs', 60)).toBe(true)
      await chain.get('warm')
      const added = await duringStall(() => chain.add('lock', 'mine', 60))
      expect(added.status).toBe('rejected')
      const released = await duringStall(() => chain.compareAndDelete('lock', 'theirs'))
      expect(released.status).toBe('rejected')
      // The delete was queued in Redis and ran: that one is the other's to see. A new lock is not erased.
      expect(await other.add('lock', 'again', 60)).toBe(true)
      await duringStall(() => chain.add('lock', 'mine', 60))
      expect(await other.get('lock')).toBe('again')
      expect(await chain.add('lock', 'mine', 60)).toBe(false)
    } finally {
      await close()
    }
  })
})

describe('multiLevel(memory, redis): a lock taken right after a failed write of its key', () => {
  it('is not deleted by the repair of that write: no other process gets it too', async () => {
    const { chain, other, close } = counters()
    try {
      await chain.set('lock', 'old')
      await redis.process!.freeze()
      const failed = await Promise.allSettled([chain.set('lock', 'x')])
      redis.process!.thaw()
      expect(failed[0]!.status).toBe('rejected')
      // Within the 50 ms before the repair of the failed set: the lock is freed, then taken here.
      await other.delete('lock')
      expect(await chain.add('lock', 'A', 30)).toBe(true)
      await sleep(300)
      expect(await other.get('lock')).toBe('A')
      expect(await other.add('lock', 'B', 30)).toBe(false)
      expect(await chain.get('lock')).toBe('A')
      // Released here by compare-and-delete: the repair does not bring anything back either.
      await redis.process!.freeze()
      await Promise.allSettled([chain.set('lock', 'y')])
      redis.process!.thaw()
      await other.set('lock', 'A')
      expect(await chain.compareAndDelete('lock', 'A')).toBe(true)
      expect(await other.add('lock', 'C', 30)).toBe(true)
      await sleep(300)
      expect(await other.get('lock')).toBe('C')
    } finally {
      redis.process!.thaw()
      await close()
    }
  })
})

describe('multiLevel(memory, memcached): calls that wait behind a slow atomicUpdate fn of this process', () => {
  it('fail unsent without opening the breaker: counters stay on memcached', async () => {
    const server = await startMemcached({ spawn: true })
    const namespace = `slow${++n}`
    const chain = multiLevel({
      levels: [memoryBackend(), memcachedBackend(server.server, { namespace, timeout: 0.2, logger: false })],
      breaker: { failureThreshold: 2 },
      logger: false,
    })
    const other = memcachedBackend(server.server, { namespace, logger: false })
    try {
      for (let i = 0; i < 100; i++) await other.incr('hits')
      await chain.set('cart', [])
      const slow = chain.atomicUpdate<string[]>('cart', async (items = []) => {
        await sleep(600)
        return [...items, 'sku']
      })
      const queued = await Promise.allSettled([
        chain.set('cart', ['a']),
        chain.set('cart', ['b']),
        chain.set('cart', ['c']),
      ])
      // Reported as not taken by the shared level, as any write that did not reach it.
      expect(queued.map((q) => q.status)).toEqual(['rejected', 'rejected', 'rejected'])
      expect(chain.levelStats()[1]!.state).toBe('closed')
      expect(await chain.incr('hits')).toBe(101)
      expect(await slow).toEqual(['sku'])
      expect(await other.get('cart')).toEqual(['sku'])
      expect(await chain.get('cart')).toEqual(['sku'])
    } finally {
      await chain.close()
      await other.close()
      await server.stop()
    }
  })
})

describe('multiLevel(memory, redis): incr when the link drops after Redis ran it', () => {
  let proxy: FaultProxy
  beforeAll(async () => {
    proxy = await startFaultProxy({ port: redis.port })
  })
  afterAll(async () => {
    await proxy?.close()
  })

  it('reports an increment whose outcome is unknown as failed, and hands out no number twice', async () => {
    const namespace = `dropped${++n}`
    const shared = redisBackend(`redis://127.0.0.1:${proxy.port}`, {
      namespace,
      timeout: '300ms',
      logger: false,
    })
    const chain = multiLevel(memoryBackend(), shared)
    chain.on('error', () => {})
    const other = redisBackend(redis.url, { namespace })
    try {
      for (let i = 0; i < 10; i++) await other.incr('hits')
      expect(await chain.incr('hits')).toBe(11)
      // The reply is lost and the link cannot come back within the timeout, so the redis backend
      // cannot find out whether the INCR ran: the call fails.
      const dropped = proxy.dropNextReply()
      await proxy.refuse()
      await expect(chain.incr('hits')).rejects.toMatchObject({ code: 'CACHE_UNAVAILABLE' })
      await dropped
      expect(await other.get('hits')).toBe(12) // applied, and reported failed
      await proxy.listen()
      await shared.ready('5s')
      expect(await chain.incr('hits')).toBe(13)
      expect(await other.incr('hits')).toBe(14)
    } finally {
      await chain.close()
      await other.close()
    }
  })

  it("tells on the chain's error event, with the level, when Redis finds an incr it reported failed applied", async () => {
    const namespace = `late${++n}`
    const shared = redisBackend(`redis://127.0.0.1:${proxy.port}`, {
      namespace,
      timeout: '300ms',
      logger: false,
    })
    const chain = multiLevel(memoryBackend(), shared)
    const errors: MultiLevelEvent[] = []
    chain.on('error', (event) => errors.push(event))
    const other = redisBackend(redis.url, { namespace })
    try {
      expect(await chain.incr('hits')).toBe(1)
      const dropped = proxy.dropNextReply()
      await proxy.refuse()
      await expect(chain.incr('hits')).rejects.toMatchObject({ code: 'CACHE_UNAVAILABLE' })
      await dropped
      await proxy.listen()
      expect(await other.get('hits')).toBe(2) // applied: a retry would count it twice
      // Before: said only on the redis backend's own emitter, nothing on the chain's.
      await until(() =>
        errors.some((e) => /was applied although it was reported failed/.test(String(e.error))),
      )
      expect(errors.find((e) => /was applied although/.test(String(e.error)))).toMatchObject({
        backend: 'redis',
        level: 1,
        key: 'hits',
        operation: 'incr',
      })
      expect(chain.stats.errors).toBe(errors.length)
    } finally {
      await proxy.listen().catch(() => {})
      await chain.close()
      await other.close()
    }
  })
})

describe('multiLevel(memory, redis): incr while Redis is down (breaker open)', () => {
  let proxy: FaultProxy
  beforeAll(async () => {
    proxy = await startFaultProxy({ port: redis.port })
  })
  afterAll(async () => {
    await proxy?.close()
  })

  it('counts in L1 meanwhile, then drops that count and keeps the shared counter when Redis is back', async () => {
    const namespace = `outage${++n}`
    const chain = multiLevel({
      levels: [
        memoryBackend(),
        redisBackend(`redis://127.0.0.1:${proxy.port}`, {
          namespace,
          timeout: '100ms',
          maxReconnectDelay: '50ms',
          logger: false,
        }),
      ],
      breaker: { failureThreshold: 1, openFor: '100ms' },
      logger: false,
    })
    chain.on('error', () => {})
    const other = redisBackend(redis.url, { namespace })
    try {
      for (let i = 0; i < 100; i++) await other.incr('hits')
      expect(await chain.incr('hits')).toBe(101)
      await proxy.refuse()
      proxy.dropAll()
      // Not known down yet: reported, not answered from L1.
      await expect(chain.incr('hits')).rejects.toMatchObject({ code: 'CACHE_UNAVAILABLE' })
      expect(chain.levelStats()[1]!.state).toBe('open')
      // Known down: this process counts on its own (documented), Redis keeps the others' counts.
      expect(await chain.incr('hits')).toBe(1)
      expect(await chain.incr('hits')).toBe(2)
      expect(await chain.get('hits')).toBe(2)
      for (let i = 0; i < 5; i++) await other.incr('hits')
      expect(chain.levelStats()[1]).toMatchObject({ pendingKeys: 0, divergedKeys: 1 })
      await proxy.listen()
      await until(() => {
        void chain.get('probe').catch(() => {})
        return chain.levelStats()[1]!.state === 'closed'
      })
      expect(await other.get('hits')).toBe(106)
      expect(await chain.get('hits')).toBe(106)
      expect(await chain.incr('hits')).toBe(107)
      expect(chain.levelStats()[1]).toMatchObject({ pendingKeys: 0, divergedKeys: 0 })
    } finally {
      await chain.close()
      await other.close()
    }
  })
})

describe('multiLevel(memory, disk, redis): incr while Redis is down (breaker open)', () => {
  let proxy: FaultProxy
  const dir = mkdtempSync(join(tmpdir(), 'cache-multi-level-counters-'))
  beforeAll(async () => {
    proxy = await startFaultProxy({ port: redis.port })
  })
  afterAll(async () => {
    await proxy?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('counts on disk meanwhile, then drops that count from disk and memory and keeps the Redis counter', async () => {
    const namespace = `outage3-${++n}`
    const disk = diskBackend({ path: join(dir, namespace) })
    const chain = multiLevel({
      levels: [
        memoryBackend(),
        disk,
        redisBackend(`redis://127.0.0.1:${proxy.port}`, {
          namespace,
          timeout: '100ms',
          maxReconnectDelay: '50ms',
          logger: false,
        }),
      ],
      breaker: { failureThreshold: 1, openFor: '100ms' },
      logger: false,
    })
    chain.on('error', () => {})
    const other = redisBackend(redis.url, { namespace })
    try {
      for (let i = 0; i < 50; i++) await other.incr('hits')
      expect(await chain.get('hits')).toBe(50) // copied into disk and memory
      await proxy.refuse()
      proxy.dropAll()
      await expect(chain.incr('hits')).rejects.toMatchObject({ code: 'CACHE_UNAVAILABLE' })
      expect(await chain.incr('hits')).toBe(1) // disk held no copy any more: evicted on the failure
      expect(await chain.incr('hits')).toBe(2)
      for (let i = 0; i < 5; i++) await other.incr('hits')
      await proxy.listen()
      await until(() => {
        void chain.get('probe').catch(() => {})
        return chain.levelStats()[2]!.state === 'closed'
      })
      expect(await other.get('hits')).toBe(55)
      expect(await chain.get('hits')).toBe(55)
      expect(await chain.incr('hits')).toBe(56)
      expect(await disk.get('hits')).toBeUndefined() // evicted by the incr on Redis
    } finally {
      await chain.close()
      await other.close()
    }
  })
})

/** A child process counting through its own chain (fixtures/counter-worker.mjs). */
function startWorker(namespace: string, id: string, rounds: number, timeout: string) {
  const child: ChildProcess = spawn(
    process.execPath,
    [WORKER, redis.url, namespace, id, String(rounds), timeout],
    {
      stdio: ['pipe', 'pipe', 'inherit'],
    },
  )
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]()
  const next = async () => (await lines.next()).value as string
  return { child, ready: next(), next }
}

interface WorkerReport {
  counted: number[]
  countFailures: number
  updated: string[]
  updateFailures: string[]
  otherErrors: string[]
}

describe('three processes counting through multiLevel(memory, redis) while Redis stalls past their timeout', () => {
  it('hand out no number twice, lose no acknowledged increment or update, and report the rest failed', async () => {
    const namespace = `procs${++n}`
    const workers = ['a', 'b', 'c'].map((id) => startWorker(namespace, id, 150, '25ms'))
    try {
      await Promise.all(workers.map((w) => w.ready))
      const reports = workers.map(async (w) => JSON.parse(await w.next()) as WorkerReport)
      for (const w of workers) w.child.stdin!.write('go\n')
      let done = false
      const all = Promise.all(reports).finally(() => {
        done = true
      })
      // 60 ms stalls every ~100 ms: every call in flight then times out.
      for (let i = 0; i < 40 && !done; i++) {
        await stall(60)
        await sleep(40)
      }
      const results = await all
      const check = redisBackend(redis.url, { namespace })
      const stored = (await check.get<number>('hits')) ?? 0
      const marks = (await check.get<string[]>('marks')) ?? []
      await check.close()

      const counted = results.flatMap((r) => r.counted)
      const countFailures = results.reduce((sum, r) => sum + r.countFailures, 0)
      const updated = results.flatMap((r) => r.updated)
      const updateFailures = new Set(results.flatMap((r) => r.updateFailures))
      console.log(
        `3 processes, 25 ms timeout, Redis stalled 60 ms every ~100 ms: ${counted.length} incr acknowledged, ${countFailures} reported failed, ${stored} stored; ` +
          `${updated.length} atomicUpdate acknowledged, ${updateFailures.size} reported failed, ${marks.length} stored`,
      )
      expect(results.flatMap((r) => r.otherErrors)).toEqual([])
      expect(new Set(counted).size).toBe(counted.length) // no number handed out twice
      expect(Math.max(0, ...counted)).toBeLessThanOrEqual(stored)
      // Every acknowledged increment is stored; of the failed ones, some ran (a timeout does not say).
      expect(stored).toBeGreaterThanOrEqual(counted.length)
      expect(stored).toBeLessThanOrEqual(counted.length + countFailures)
      expect(new Set(marks).size).toBe(marks.length)
      expect(updated.filter((mark) => !marks.includes(mark))).toEqual([])
      expect(marks.filter((mark) => !updated.includes(mark) && !updateFailures.has(mark))).toEqual([])
      expect(countFailures + updateFailures.size).toBeGreaterThan(0) // the stalls did hit calls
    } finally {
      for (const w of workers) w.child.kill()
    }
  }, 60_000)
})
