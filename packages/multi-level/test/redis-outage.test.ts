import { CacheError, CacheUnavailableError } from '@cache/core'
import { diskBackend } from '@cache/disk'
import { memoryBackend } from '@cache/memory'
import { redisBackend } from '@cache/redis'
import { type RedisServer, startRedis } from '@cache/test-servers'
import Database from 'better-sqlite3'
import { Redis } from 'ioredis'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type BreakerOptions, type MultiLevelEvent, multiLevel, redisBus } from '../src/index.js'

let redis: RedisServer
beforeAll(async () => {
  redis = await startRedis({ spawn: true })
})
afterAll(async () => {
  await redis?.stop()
})

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe('multiLevel(memory, redis) with Redis killed and restarted under load', () => {
  it('fails no read, reports writes Redis did not take, and uses Redis again once it is back', async () => {
    const namespace = `outage${Date.now()}`
    const cache = multiLevel({
      levels: [memoryBackend({ namespace }), redisBackend(redis.url, { namespace })],
      breaker: { failureThreshold: 3, openFor: '200ms' },
    })
    const events: { name: string; at: number; event: MultiLevelEvent }[] = []
    cache.on('level-down', (event) => events.push({ name: 'down', at: Date.now(), event }))
    cache.on('level-up', (event) => events.push({ name: 'up', at: Date.now(), event }))
    cache.on('error', () => {}) // counted in stats; listened to so the test sees them as events too

    const keys = Array.from({ length: 50 }, (_, i) => `k${i}`)
    for (const key of keys) await cache.set(key, key.toUpperCase(), 60)

    let stop = false
    let operations = 0
    const failures: unknown[] = []
    let unsharedWrites = 0
    // Four workers doing a bounded stream of reads (mostly), writes and deletes.
    const worker = async (seed: number) => {
      let i = seed
      const deadline = Date.now() + 20_000
      while (!stop && Date.now() < deadline && operations < 500_000) {
        const key = keys[(i * 7) % keys.length]!
        const write = i % 10 === 0 || i % 97 === 0
        try {
          if (i % 10 === 0) await cache.set(key, key.toUpperCase(), 60)
          else if (i % 97 === 0) await cache.delete(key)
          else await cache.get(key)
          operations++
        } catch (error) {
          // A write Redis did not take is applied to L1 and reported; anything else is a failure.
          if (write && error instanceof CacheUnavailableError) unsharedWrites++
          else failures.push(error)
        }
        i++
        // Paced so the count bound is not reached before Redis is back (L1 hits are very fast).
        if (i % 10 === 0) await sleep(1)
      }
    }
    const workers = [1, 2, 3, 4].map((seed) => worker(seed))

    await sleep(300)
    const l1HitsBefore = cache.levels[0]!.stats.hits
    await redis.process!.kill()
    const killedAt = Date.now()
    await sleep(1500)
    const l1HitsDuring = cache.levels[0]!.stats.hits - l1HitsBefore
    const stateDuring = cache.levels[1]!.breaker.state
    const l2SetsBefore = cache.levels[1]!.stats.sets

    await redis.process!.start()
    const restartedAt = Date.now()
    while (!events.some((e) => e.name === 'up') && Date.now() - restartedAt < 10_000) await sleep(10)
    const upAt = events.find((e) => e.name === 'up')?.at
    await sleep(300)
    stop = true
    await Promise.all(workers)

    const recoveryMs = upAt === undefined ? undefined : upAt - restartedAt
    console.log(
      `redis outage: ${operations} operations, ${failures.length} failed, ${unsharedWrites} writes reported as not shared, L1 hits during the outage ${l1HitsDuring}, ` +
        `breaker opened ${events.find((e) => e.name === 'down')!.at - killedAt} ms after the kill, ` +
        `Redis back in use ${recoveryMs} ms after the restart`,
    )
    expect(failures).toEqual([])
    expect(unsharedWrites).toBeGreaterThan(0)
    expect(stateDuring).not.toBe('closed')
    expect(l1HitsDuring).toBeGreaterThan(100)
    expect(recoveryMs).toBeDefined()
    expect(cache.levels[1]!.breaker.state).toBe('closed')
    expect(cache.levels[1]!.stats.sets).toBeGreaterThan(l2SetsBefore) // writes reach Redis again
    expect(cache.stats.errors).toBeGreaterThan(0)

    // What is written now is in Redis, seen by another process's chain.
    await cache.set('after', 'restart')
    const other = redisBackend(redis.url, { namespace })
    expect(await other.get('after')).toBe('restart')
    await other.close()
    await cache.close()
  }, 40_000)

  it('empties L1 when the invalidation bus reconnects: messages sent meanwhile may be lost', async () => {
    if (!redis.process!.running) await redis.process!.start()
    const namespace = `resync${Date.now()}`
    const l1 = memoryBackend({ namespace })
    const logged: string[] = []
    const logger = { warn: (m: string) => logged.push(m), error: (m: string) => logged.push(m) }
    const bus = redisBus(redis.url, { logger })
    const cache = multiLevel({ levels: [l1, redisBackend(redis.url, { namespace })], bus })
    // Listeners that throw where the link is being handled: the bus goes on all the same.
    const escaped: unknown[] = []
    const onEscaped = (error: unknown) => escaped.push(error)
    process.on('uncaughtException', onEscaped)
    const thrown = new Set<string>()
    for (const name of ['link-down', 'link-up'] as const)
      bus.on(name, () => {
        thrown.add(name)
        throw new Error(`${name} listener`)
      })
    try {
      await bus.ready()
      await cache.set('k', 'v')
      expect(await l1.has('k')).toBe(true)
      await redis.process!.kill()
      await redis.process!.start()
      const deadline = Date.now() + 10_000
      while ((await l1.has('k')) && Date.now() < deadline) await sleep(20)
      expect(await l1.has('k')).toBe(false)
      while (!thrown.has('link-up') && Date.now() < deadline) await sleep(20)
      expect([...thrown].sort()).toEqual(['link-down', 'link-up'])
      expect(escaped).toEqual([])
      for (const name of thrown)
        expect(logged.filter((line) => line.includes(`'${name}' listener threw`))).toHaveLength(1)
    } finally {
      process.off('uncaughtException', onEscaped)
      await cache.close()
      await bus.close()
    }
  }, 20_000)
})

describe('listeners of a chain that throw', () => {
  it('neither change what a call answers, nor keep the breaker shut, nor escape; each is logged once', async () => {
    const namespace = `throwing${Date.now()}`
    const logged: string[] = []
    const logger = { warn: (m: string) => logged.push(m), error: (m: string) => logged.push(m) }
    const cache = multiLevel({
      levels: [
        memoryBackend({ namespace }),
        redisBackend(redis.url, { namespace, timeout: 0.3, logger: false }),
      ],
      breaker: { failureThreshold: 2, openFor: '200ms' },
      logger,
    })
    const escaped: unknown[] = []
    const onEscaped = (error: unknown) => escaped.push(error)
    process.on('uncaughtException', onEscaped)
    process.on('unhandledRejection', onEscaped)
    const thrown: string[] = []
    for (const name of ['error', 'level-down', 'level-up'] as const)
      cache.on(name, () => {
        thrown.push(name)
        throw new Error(`${name} listener`)
      })
    try {
      await cache.set('kept', 'value', 60)
      await redis.process!.kill()
      // Served from the memory level while Redis is gone: the listener's failure is not the call's.
      for (let i = 0; i < 4; i++) {
        expect(await cache.get('kept')).toBe('value')
        expect(await cache.get(`absent${i}`)).toBeUndefined()
      }
      expect(thrown).toContain('error')
      // The breaker opened all the same, and its listener was told.
      expect(cache.levels[1]!.breaker.state).not.toBe('closed')
      expect(thrown).toContain('level-down')
      await redis.process!.start()
      const deadline = Date.now() + 10_000
      while (cache.levels[1]!.breaker.state !== 'closed' && Date.now() < deadline) {
        await cache.get('absent').catch(() => undefined)
        await sleep(20)
      }
      expect(cache.levels[1]!.breaker.state).toBe('closed')
      expect(thrown).toContain('level-up')
      await sleep(20)
      expect(escaped).toEqual([])
      for (const name of ['error', 'level-down', 'level-up'])
        expect(
          logged.filter((line) => line.includes(`'${name}' listener threw`)),
          name,
        ).toHaveLength(1)
    } finally {
      process.off('uncaughtException', onEscaped)
      process.off('unhandledRejection', onEscaped)
      await cache.close()
    }
  }, 30_000)
})

describe('a shared level that answers, but refuses one key', () => {
  it('throws that refusal to the caller (a key of another type, a key the ACL forbids) and stays in use for the other keys', async () => {
    if (!redis.process!.running) await redis.process!.start()
    const namespace = `refused${process.pid}`
    const raw = new Redis(redis.url)
    const user = `limited${process.pid}`
    await raw.call('ACL', 'SETUSER', user, 'on', '>secret', `~${namespace}:ok*`, '+@all')
    await raw.rpush(`${namespace}:ok-list`, 'x')
    const limited = redis.url.replace('redis://', `redis://${user}:secret@`)
    const cache = multiLevel({
      levels: [memoryBackend({ namespace }), redisBackend(limited, { namespace, logger: false })],
      breaker: { failureThreshold: 2, openFor: '10s' },
      logger: false,
    })
    try {
      for (let i = 0; i < 4; i++) {
        await expect(cache.get('ok-list'), 'WRONGTYPE').rejects.toThrow(/WRONGTYPE/)
        await expect(cache.get('forbidden'), 'NOPERM').rejects.toThrow(/NOPERM/)
        await expect(cache.set('forbidden', 1), 'NOPERM').rejects.toBeInstanceOf(CacheError)
      }
      expect(cache.levels[1]!.breaker.state).toBe('closed')
      // The other keys still reach Redis, where other processes read them.
      await cache.set('ok-shared', 'seen')
      expect(await raw.get(`${namespace}:ok-shared`)).toBe('"seen"')
      // A batch Redis applies in part: this process reads what Redis holds, not its old copy.
      expect(await cache.get('ok-shared')).toBe('seen')
      await expect(
        cache.setMany([
          { key: 'ok-shared', value: 'new' },
          { key: 'forbidden', value: 1 },
        ]),
      ).rejects.toThrow(/NOPERM/)
      expect(await raw.get(`${namespace}:ok-shared`)).toBe('"new"')
      expect(await cache.get('ok-shared')).toBe('new')
      await expect(cache.deleteMany(['ok-shared', 'forbidden'])).rejects.toThrow(/NOPERM/)
      expect(await raw.get(`${namespace}:ok-shared`)).toBeNull()
      expect(await cache.get('ok-shared')).toBeUndefined()
    } finally {
      raw.disconnect()
      await cache.close()
    }
  })

  it('a getMany it rejects counts and events no read of the call, though memory answered its other keys', async () => {
    if (!redis.process!.running) await redis.process!.start()
    const namespace = `refusedmany${process.pid}`
    const raw = new Redis(redis.url)
    await raw.rpush(`${namespace}:list`, 'x')
    const cache = multiLevel({
      levels: [memoryBackend({ namespace }), redisBackend(redis.url, { namespace, logger: false })],
      logger: false,
    })
    try {
      await cache.set('held', 1)
      const events: string[] = []
      for (const name of ['hit', 'miss'] as const)
        cache.on(name, (event) => events.push(`${name} ${event.key}`))
      const before = { ...cache.stats }
      await expect(cache.getMany(['held', 'list', 'absent'])).rejects.toThrow(/WRONGTYPE/)
      expect(cache.stats.hits - before.hits, 'hits').toBe(0)
      expect(cache.stats.misses - before.misses, 'misses').toBe(0)
      expect(events).toEqual([])
      // The same keys without the refused one: every read counted once.
      expect(await cache.getMany(['held', 'absent'])).toEqual([1, undefined])
      expect(cache.stats.hits - before.hits).toBe(1)
      expect(cache.stats.misses - before.misses).toBe(1)
      expect(events).toEqual(['hit held', 'miss absent'])
    } finally {
      raw.disconnect()
      await cache.close()
    }
  })
})

describe('a process that stays idle after its write failed during an outage', () => {
  /** Two processes' chains on one namespace (`idle` fails a write and then makes no call; `busy` counts). */
  function twoProcesses(namespace: string, options: { timeout?: string; breaker?: BreakerOptions } = {}) {
    const chain = () => {
      const made = multiLevel({
        levels: [
          memoryBackend({ namespace }),
          redisBackend(redis.url, {
            namespace,
            logger: false,
            ...(options.timeout ? { timeout: options.timeout } : {}),
          }),
        ],
        ...(options.breaker ? { breaker: options.breaker } : {}),
        logger: false,
      })
      made.on('error', () => {})
      return made
    }
    return { idle: chain(), busy: chain() }
  }

  /** Waits (at most `ms`) until `chain` has repaired its shared level by itself; returns its report. */
  async function repairedBySelf(chain: ReturnType<typeof multiLevel>, ms: number) {
    const from = Date.now()
    const repaired = () =>
      chain.levelStats()[1]!.pendingKeys === 0 && chain.levels[1]!.breaker.state === 'closed'
    while (!repaired() && Date.now() - from < ms) await sleep(20)
    return chain.levelStats()[1]
  }

  it('repairs Redis by itself once it answers again after a freeze, though failures in flight pushed its probe back', async () => {
    const { idle, busy } = twoProcesses(`frozen-idle${Date.now()}`, { timeout: '300ms' })
    try {
      await idle.set('ctr', 0)
      await redis.process!.freeze()
      // One call after another while Redis is frozen: each fails at its timeout; the breaker opens,
      // and the write of ctr is skipped (a write that failed while Redis was in use, sent and
      // applied on thaw, is repaired only if Redis still holds the value it replaced).
      for (const key of ['x1', 'x2', 'x3', 'ctr'])
        await expect(idle.set(key, 1)).rejects.toBeInstanceOf(CacheUnavailableError)
      await sleep(1500 - 4 * 300)
      redis.process!.thaw()
      // Before: still open with its repairs pending, until the process's next call.
      expect(await repairedBySelf(idle, 6000)).toMatchObject({ pendingKeys: 0, state: 'closed' })
      for (let i = 0; i < 20; i++) await busy.incr('ctr')
      await idle.get('something else')
      await sleep(100)
      expect(await busy.levels[1]!.backend.get('ctr')).toBe(20)
    } finally {
      redis.process!.thaw()
      await idle.close()
      await busy.close()
    }
  })

  it('probes Redis by itself after an outage that only reads saw: its next incr and add are answered by Redis, not by its own memory', async () => {
    const { idle, busy } = twoProcesses(`read-idle${Date.now()}`, { timeout: '300ms' })
    try {
      await busy.set('ctr', 100)
      await busy.set('lock:job', 'busy')
      await redis.process!.freeze()
      // Reads only: the breaker opens, no write was missed, so no repair is due.
      for (const key of ['a', 'b', 'c']) await idle.get(key)
      expect(idle.levels[1]!.breaker.state).toBe('open')
      redis.process!.thaw()
      // Before: still open 15 s later, with nothing to probe it until the next call.
      expect(await repairedBySelf(idle, 4000)).toMatchObject({ state: 'closed' })
      // Before: 1 (counted in this process's memory; then dropped), and true (a lock Redis holds for another).
      expect(await idle.incr('ctr')).toBe(101)
      expect(await idle.add('lock:job', 'idle')).toBe(false)
      expect(await busy.levels[1]!.backend.get('ctr')).toBe(101)
    } finally {
      redis.process!.thaw()
      await idle.close()
      await busy.close()
    }
  })

  it('an atomicUpdate answered by memory while Redis was skipped, still running when the probe closed the level: its private result is dropped, Redis answers', async () => {
    const { idle, busy } = twoProcesses(`late-private${Date.now()}`, { timeout: '300ms' })
    try {
      await busy.set('c', 100)
      await redis.process!.freeze()
      for (const key of ['a', 'b', 'd']) await idle.get(key)
      expect(idle.levels[1]!.breaker.state).toBe('open')
      // Runs on memory (Redis skipped); its function outlasts the open period and the probe: it
      // returns only once the probe has closed the level (at most 8 s), however slow the machine.
      const update = idle.atomicUpdate<number>('c', async (current) => {
        const from = Date.now()
        while (idle.levels[1]!.breaker.state !== 'closed' && Date.now() - from < 8000) await sleep(20)
        return (current ?? 0) + 1
      })
      redis.process!.thaw()
      expect(await update).toBe(1) // the documented private answer while Redis was skipped
      expect(idle.levels[1]!.breaker.state).toBe('closed')
      // Before: 1 for good (marked to drop on a level already closed), while Redis holds 100.
      expect(await idle.get('c')).toBe(100)
      expect(idle.levelStats()[1]).toMatchObject({ divergedKeys: 0 })
    } finally {
      redis.process!.thaw()
      await idle.close()
      await busy.close()
    }
  })

  it('a probe whose repair Redis refuses (MISCONF while its saves fail) opens the level again, and it is used once Redis accepts writes', async () => {
    const saves = mkdtempSync(join(tmpdir(), 'cache-misconf-'))
    const own = await startRedis({ spawn: true, args: ['--dir', saves, '--save', '3600 1'] })
    const cli = new Redis(own.url)
    const chain = multiLevel({
      levels: [memoryBackend(), redisBackend(own.url, { timeout: '200ms', logger: false })],
      breaker: { failureThreshold: 1, openFor: '300ms' },
      logger: false,
    })
    const errors: MultiLevelEvent[] = []
    chain.on('error', (event) => errors.push(event))
    try {
      await chain.get('warm')
      // The next background save fails (its directory is gone): Redis refuses writes (MISCONF).
      rmSync(saves, { recursive: true, force: true })
      await cli.bgsave()
      await sleep(300)
      await own.process!.freeze()
      await chain.get('x') // the breaker opens
      await expect(chain.set('k', 'v')).rejects.toBeInstanceOf(CacheUnavailableError) // a repair is due
      own.process!.thaw()
      await sleep(800) // the probe meets MISCONF
      expect(errors.some((event) => event.operation === 'probe')).toBe(true)
      expect(chain.levels[1]!.breaker.state).toBe('open')
      await cli.config('SET', 'stop-writes-on-bgsave-error', 'no')
      const from = Date.now()
      while (chain.levels[1]!.breaker.state !== 'closed' && Date.now() - from < 8000) await sleep(50)
      // Before: half-open for good; every write rejected, other processes' values unseen.
      expect(chain.levels[1]!.breaker.state).toBe('closed')
      await chain.set('y', 1)
    } finally {
      own.process!.thaw()
      cli.disconnect()
      await chain.close()
      await own.process!.kill('SIGKILL') // a server whose saves fail refuses SIGTERM
      rmSync(saves, { recursive: true, force: true })
    }
  })

  it('a stall that a background repair outlives: the level opened meanwhile is still probed when the process stays idle', async () => {
    const { idle, busy } = twoProcesses(`stall-repair${Date.now()}`)
    try {
      await idle.get('warm')
      await busy.set('ctr', 100, 3600)
      // The stall must outlast the write's timeout: on a loaded machine the deadline's timer may
      // fire only after the thaw, and the write succeed. Then the stall is made again (at most
      // three times), once the chain is repaired.
      let failed: unknown
      for (let attempt = 0; attempt < 3 && !(failed instanceof CacheUnavailableError); attempt++) {
        if (attempt > 0) await repairedBySelf(idle, 4000)
        await redis.process!.freeze()
        const start = Date.now()
        // A write fails with the breaker still closed: a repair starts 50 ms later, into the stall.
        const write = idle.set(`k${attempt}`, 'v').catch((error: unknown) => error)
        await sleep(100)
        // Reads fail meanwhile and open the breaker, while that repair is in flight.
        const reads = Promise.all([idle.get('x'), idle.get('y')])
        await sleep(Math.max(0, 520 - (Date.now() - start)))
        redis.process!.thaw()
        failed = await write
        await reads
      }
      expect(failed).toBeInstanceOf(CacheUnavailableError)
      // Before: open with no probe timer once the repair succeeded, for as long as the process idled.
      expect(await repairedBySelf(idle, 4000)).toMatchObject({ state: 'closed' })
      expect(await idle.incr('ctr')).toBe(101)
    } finally {
      redis.process!.thaw()
      await idle.close()
      await busy.close()
    }
  })

  it('an add answered by a shared disk level while Redis was skipped, the probe closing meanwhile: its private lock is not copied to memory', async () => {
    const namespace = `private-lock${Date.now()}`
    const dir = mkdtempSync(join(tmpdir(), 'cache-private-lock-'))
    const chain = () =>
      multiLevel({
        levels: [
          memoryBackend({ namespace }),
          diskBackend({ path: dir, namespace, lockTimeout: '5s', logger: false }),
          redisBackend(redis.url, { namespace, timeout: '300ms', logger: false }),
        ],
        logger: false,
      })
    const a = chain()
    const b = chain()
    a.on('error', () => {})
    b.on('error', () => {})
    try {
      await a.get('warm')
      await redis.process!.freeze()
      for (const key of ['x', 'y', 'z']) await a.get(key)
      expect(a.levels[2]!.breaker.state).toBe('open')
      redis.process!.thaw()
      // Another connection holds the disk's write lock: A's add (on disk, Redis skipped) waits.
      const other = new Database(join(dir, 'cache.db'))
      other.prepare('BEGIN IMMEDIATE').run()
      const taken = a.add('lock', 'A', 3600)
      // Meanwhile A's probe closes Redis, and B takes the lock there.
      const from = Date.now()
      while (a.levels[2]!.breaker.state !== 'closed' && Date.now() - from < 8000) await sleep(20)
      await b.levels[2]!.backend.add('lock', 'B', 3600)
      other.prepare('COMMIT').run()
      other.close()
      await taken
      // Before: 'A' from memory (the private lock copied there), while Redis holds B's.
      expect(await a.get('lock')).toBe('B')
    } finally {
      redis.process!.thaw()
      await a.close()
      await b.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('a steady stream of writes while the level is half-open: the probe still closes it', async () => {
    const { idle: writer } = twoProcesses(`write-stream${Date.now()}`, {
      timeout: '300ms',
      breaker: { failureThreshold: 1, openFor: '200ms' },
    })
    let writing = true
    let accepted = 0
    try {
      await redis.process!.freeze()
      await writer.get('x') // opens the breaker
      redis.process!.thaw()
      // One set per turn of the event loop, each on a new key.
      const loop = (async () => {
        for (let i = 0; writing && i < 200_000; i++) {
          await writer.set(`k${i}`, i).then(
            () => accepted++,
            () => {},
          )
          await new Promise((resolve) => setImmediate(resolve))
        }
      })()
      const from = Date.now()
      while (writer.levels[1]!.breaker.state !== 'closed' && Date.now() - from < 8000) await sleep(50)
      writing = false
      await loop
      // Before: half-open for good (each replay found new keys written meanwhile), no write accepted.
      expect(writer.levels[1]!.breaker.state).toBe('closed')
      expect(accepted).toBeGreaterThan(0)
    } finally {
      writing = false
      redis.process!.thaw()
      await writer.close()
    }
  })

  it('repairs Redis once it is back, by itself, and never deletes what other processes wrote since', async () => {
    const { idle, busy } = twoProcesses(`idle${Date.now()}`, {
      breaker: { failureThreshold: 1, openFor: '200ms' },
    })
    try {
      await idle.set('hits', 0)
      await redis.process!.kill()
      // The idle process resets the counter while Redis is down: reported, remembered for repair.
      await expect(idle.set('hits', 0)).rejects.toBeInstanceOf(CacheUnavailableError)
      expect(idle.levels[1]!.breaker.state).toBe('open')
      await redis.process!.start()
      // The idle process makes no call; its repair must not wait for one.
      expect(await repairedBySelf(idle, 5000)).toMatchObject({ pendingKeys: 0, state: 'closed' })
      // Another process counts, acknowledged by Redis.
      for (let i = 0; i < 50; i++) await busy.incr('hits')
      // The idle process's next call, on any key. Before: its probe ran only now and deleted the
      // counter the other process had taken to 50.
      await idle.get('something else')
      await sleep(100)
      expect(await busy.levels[1]!.backend.get('hits')).toBe(50)
    } finally {
      await idle.close()
      await busy.close()
    }
  })
})
