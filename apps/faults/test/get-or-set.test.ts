/**
 * `getOrSet` and memoize's grace, timeouts, refresh ahead and TTL from the result, used as an
 * app uses them, on memory, a real redis-server, memory → redis, a disk cache (a real SQLite
 * file) and a real memcached; across two real processes
 * where a guarantee spans processes. Each test runs through `getOrSet()` and through `cached()`:
 * they are one engine. Time is a fake clock (Date and timers; the peer process is told the fake
 * time with every request), so TTLs, grace periods and timeouts pass without waiting; Redis and
 * the processes run for real.
 */
import { type ChildProcess, fork } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  type CacheBackend,
  CacheError,
  type CacheEvent,
  CacheFunctionTimeoutError,
  cached,
  configureCache,
  getOrSet,
  invalidateKeys,
  invalidateTags,
  type LoadOptions,
  type MemoEventName,
  type MemoStats,
} from '@cache/core'
import { type MemcachedServer, type RedisServer, startMemcached, startRedis } from '@cache/test-servers'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const PEER = join(root, 'scripts', 'get-or-set-peer.mjs')

/** The real timer, kept before the tests fake them (`vi.waitFor` would advance the fake clock). */
const realSetTimeout = globalThis.setTimeout

/** Waits, in real time, until `check` holds: what real I/O (Redis, another process) needs. */
async function until(check: () => boolean, what: string): Promise<void> {
  const deadline = performance.now() + 5_000
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`${what}: not within 5 s`)
    await new Promise((resolve) => realSetTimeout(resolve, 2))
  }
}

/** The upstream a cached function reads: its value and failure are read when a call starts. */
class Upstream {
  calls = 0
  finished = 0
  value: unknown = 'v1'
  error: Error | undefined
  private gates: (() => void)[] | undefined

  readonly fn = async () => {
    this.calls++
    const { value, error } = this
    if (this.gates !== undefined) await new Promise<void>((resolve) => this.gates!.push(resolve))
    this.finished++
    if (error !== undefined) throw error
    return value
  }

  /** Calls from now on wait for `release()`. */
  hold(): void {
    this.gates = []
  }

  release(): void {
    const gates = this.gates ?? []
    this.gates = undefined
    for (const open of gates) open()
  }

  async started(count: number): Promise<void> {
    await until(() => this.calls >= count, `call ${count} of the function`)
    expect(this.calls).toBe(count)
  }

  async done(count: number): Promise<void> {
    await until(() => this.finished >= count, `return ${count} of the function`)
  }
}

type Options = LoadOptions<[], any> & { tags?: string[] }

/** A cached read of one key, as each front door offers it. */
interface Front {
  (): Promise<any>
  invalidate(): Promise<void>
  /** The key the value is stored under. */
  readonly key: string
  readonly stats: MemoStats
  on(event: MemoEventName, listener: (event: CacheEvent) => void): void
  off(event: MemoEventName, listener: (event: CacheEvent) => void): void
}

const FRONTS = {
  getOrSet(backend: CacheBackend, up: Upstream, options: Options, id: string): Front {
    const f = (() => getOrSet(backend, id, up.fn, options)) as Front
    return Object.defineProperties(f, {
      invalidate: { value: () => invalidateKeys([id], { backend }) },
      key: { value: id },
      stats: { get: () => getOrSet.stats },
      on: { value: getOrSet.on },
      off: { value: getOrSet.off },
    })
  },
  cached(backend: CacheBackend, up: Upstream, options: Options, id: string): Front {
    const memo = cached(up.fn, { ...options, backend, name: id })
    const f = (() => memo()) as Front
    return Object.defineProperties(f, {
      invalidate: { value: () => memo.invalidate() },
      key: { value: memo.keyFor() },
      stats: { get: () => memo.stats },
      on: { value: memo.on },
      off: { value: memo.off },
    })
  },
}
type FrontName = keyof typeof FRONTS

/** Another process of the app, driven over IPC; its clock follows this test's fake clock. */
class Peer {
  private seq = 0
  private readonly waiting = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>()

  private constructor(private readonly child: ChildProcess) {
    child.on('message', (message: { id: number; result?: unknown; error?: string }) => {
      const pending = this.waiting.get(message.id)
      this.waiting.delete(message.id)
      if (message.error === undefined) pending?.resolve(message.result)
      else pending?.reject(new Error(message.error))
    })
  }

  static async start(spec: CacheSpec): Promise<Peer> {
    const child = fork(PEER, [JSON.stringify(spec)], {
      cwd: root,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    await new Promise<void>((resolve, reject) => {
      child.once('message', () => resolve())
      child.once('exit', (code) => reject(new Error(`peer exited with ${code} before it was ready`)))
    })
    return new Peer(child)
  }

  request<T = unknown>(op: string, ...args: unknown[]): Promise<T> {
    const id = ++this.seq
    const answer = new Promise<T>((resolve, reject) =>
      this.waiting.set(id, { resolve: resolve as (value: unknown) => void, reject }),
    )
    this.child.send({ id, now: Date.now(), op, args })
    return answer
  }

  /** What the other process does for `invalidate()` of this front's key. */
  invalidate(front: FrontName, id: string): Promise<void> {
    return front === 'getOrSet' ? this.request('invalidateKey', id) : this.request('invalidate', id)
  }

  /** The other process reads the key, its own upstream down. */
  read(front: FrontName, id: string, options: Options): Promise<unknown> {
    return front === 'getOrSet' ? this.request('getOrSet', id, options) : this.request('call', id, options)
  }

  stop(): void {
    this.child.kill('SIGKILL')
  }
}

/** How both processes configure their cache. */
interface CacheSpec {
  chain: string
  namespace: string
  redisUrl?: string
  memcachedServers?: string
  diskPath?: string
}

const SETUPS = [
  { name: 'memory', chain: 'memory', shared: false },
  { name: 'redis', chain: 'redis', shared: true },
  { name: 'memory → redis', chain: 'memory,redis', shared: true },
  { name: 'disk', chain: 'disk', shared: true },
  { name: 'memcached', chain: 'memcached', shared: true },
] as const

let redis: RedisServer
let memcached: MemcachedServer
const diskPath = mkdtempSync(join(tmpdir(), 'cache-get-or-set-'))
let seq = 0
beforeAll(async () => {
  ;[redis, memcached] = await Promise.all([startRedis(), startMemcached()])
})
afterAll(async () => {
  await Promise.all([redis?.stop(), memcached?.stop()])
  rmSync(diskPath, { recursive: true, force: true })
})

describe.each(SETUPS)('on $name', (setup) => {
  const namespace = `gos${process.pid}-${setup.chain.replace(',', '-')}`
  let here: CacheBackend
  let peer: Peer | undefined

  beforeAll(async () => {
    const spec: CacheSpec = {
      chain: setup.chain,
      namespace,
      redisUrl: redis.url,
      memcachedServers: memcached.server,
      diskPath,
    }
    const { chain, ...options } = spec
    here = configureCache({ ...options, backend: chain })
    await here.get('warm-up')
    if (setup.shared) peer = await Peer.start(spec)
  })
  afterAll(async () => {
    peer?.stop()
    await here?.close()
  })
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['Date', 'setTimeout', 'clearTimeout'] })
  })
  afterEach(() => {
    vi.useRealTimers()
  })

  /** Lets writes a settled computation started reach the store (they are sent before this read). */
  async function settle(): Promise<void> {
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve))
    await here.get('settle-probe')
  }

  describe.each(Object.keys(FRONTS) as FrontName[])('through %s', (frontName) => {
    let up: Upstream
    let id: string
    const make = (options: Options) => FRONTS[frontName](here, up, options, id)
    /** How much a counter grew since `make` returned `f`. */
    const counter = (f: Front) => {
      const base = { ...f.stats }
      return (name: keyof MemoStats) => f.stats[name] - base[name]
    }
    /**
     * Moves the fake clock on, once the writes already sent have been answered: the backends'
     * own request timeouts run on the same fake timers, so jumping seconds ahead while a write is
     * on the wire would time it out (a 300 ms Redis timeout firing on a write Redis answers in 1 ms).
     */
    const advance = async (ms: number) => {
      await settle()
      await vi.advanceTimersByTimeAsync(ms)
    }
    const outcomeOf = (call: Promise<unknown>) =>
      call.then(
        (value) => ({ value }),
        (error: unknown) => ({ error }),
      )

    beforeEach(() => {
      up = new Upstream()
      id = `${frontName}-${++seq}`
    })

    it('runs the function once for concurrent callers and serves its stored result', async () => {
      const f = make({ ttl: 60 })
      expect(await Promise.all(Array.from({ length: 10 }, () => f()))).toEqual(Array(10).fill('v1'))
      expect(await f()).toBe('v1')
      expect(up.calls).toBe(1)
    })

    it('hands one failure to every concurrent caller, runs the function once, and stores nothing', async () => {
      const f = make({ ttl: 60 })
      up.error = new Error('upstream down')
      const outcomes = await Promise.all(Array.from({ length: 10 }, () => outcomeOf(f())))
      expect(outcomes).toEqual(Array(10).fill({ error: up.error }))
      expect(up.calls).toBe(1)
      up.error = undefined
      expect(await f()).toBe('v1')
      expect(up.calls).toBe(2)
    })

    describe('grace', () => {
      it('serves the last value past its ttl when the function fails, running it once for concurrent callers', async () => {
        const f = make({ ttl: 10, grace: 60 })
        const delta = counter(f)
        const events: CacheEvent[] = []
        const listener = (event: CacheEvent) => events.push(event)
        f.on('grace', listener)
        try {
          expect(await f()).toBe('v1')
          await advance(11_000)
          up.error = new Error('upstream down')
          up.value = 'v2'
          expect(await Promise.all(Array.from({ length: 5 }, () => f()))).toEqual(Array(5).fill('v1'))
          expect(up.calls).toBe(2)
          expect(delta('graced')).toBe(5)
          expect(events.filter((e) => e.key === f.key)).toHaveLength(5)
          expect(events[0]).toMatchObject({ key: f.key, operation: 'error', error: up.error })
        } finally {
          f.off('grace', listener)
        }
      })

      it('calls a failing function again no more often than graceBackoff', async () => {
        const f = make({ ttl: 10, grace: 60, graceBackoff: 5 })
        await f()
        await advance(11_000)
        up.error = new Error('upstream down')
        expect(await f()).toBe('v1')
        expect(up.calls).toBe(2)
        await advance(4_000)
        expect(await f()).toBe('v1')
        expect(await f()).toBe('v1')
        expect(up.calls).toBe(2)
        await advance(1_500)
        up.error = undefined
        up.value = 'v2'
        expect(await f()).toBe('v2')
        expect(up.calls).toBe(3)
      })

      it('stops serving the kept value once the grace period is over', async () => {
        const f = make({ ttl: 10, grace: 30 })
        await f()
        await advance(41_000)
        up.error = new Error('upstream down')
        await expect(f()).rejects.toBe(up.error)
      })

      it.each(['invalidate()', 'invalidateTags()'])(
        'never serves a value kept from before %s, even within grace',
        async (how) => {
          const tag = `tag-${id}`
          const f = make({ ttl: 10, grace: 60, tags: [tag] })
          await f()
          await advance(11_000)
          if (how === 'invalidate()') await f.invalidate()
          else await invalidateTags([tag], { backend: here })
          up.error = new Error('upstream down')
          await expect(f()).rejects.toBe(up.error)
        },
      )

      it('never serves the kept value when an invalidation resolved while the function ran', async () => {
        const f = make({ ttl: 10, grace: 60 })
        await f()
        await advance(11_000)
        up.error = new Error('upstream down')
        up.hold()
        const call = outcomeOf(f())
        await up.started(2)
        await f.invalidate()
        up.release()
        expect(await call).toEqual({ error: up.error })
      })
    })

    describe('timeouts', () => {
      it('soft timeout: answers with the kept value, then stores the late result', async () => {
        const f = make({ ttl: 10, grace: 60, timeout: '200ms' })
        const delta = counter(f)
        const events: CacheEvent[] = []
        const listener = (event: CacheEvent) => events.push(event)
        f.on('grace', listener)
        try {
          await f()
          await advance(11_000)
          up.value = 'v2'
          up.hold()
          const call = f()
          await up.started(2)
          await advance(200)
          expect(await call).toBe('v1')
          expect(delta('functionTimeouts')).toBe(1)
          expect(delta('graced')).toBe(1)
          expect(events[0]).toMatchObject({ key: f.key, operation: 'timeout' })
          expect(events[0]!.error).toBeInstanceOf(CacheFunctionTimeoutError)
          up.release()
          await until(() => delta('sets') === 2, 'the late result stored')
          expect(await f()).toBe('v2')
          expect(up.calls).toBe(2)
        } finally {
          f.off('grace', listener)
        }
      })

      it('soft timeout: a late result computed before an invalidation is never stored', async () => {
        const f = make({ ttl: 10, grace: 60, timeout: '200ms' })
        await f()
        await advance(11_000)
        up.value = 'v2'
        up.hold()
        const call = f()
        await up.started(2)
        await advance(200)
        expect(await call).toBe('v1')
        await f.invalidate()
        up.release()
        await up.done(2)
        await settle()
        up.value = 'v3'
        expect(await f()).toBe('v3')
        await settle()
        expect(await f()).toBe('v3')
        expect(up.calls).toBe(3)
      })

      it('soft timeout: never answers with a kept value invalidated while the caller waited', async () => {
        const f = make({ ttl: 10, grace: 60, timeout: '200ms' })
        await f()
        await advance(11_000)
        up.value = 'v2'
        up.hold()
        let answered: unknown
        const call = f().then((value) => (answered = value))
        await up.started(2)
        await f.invalidate()
        await advance(200)
        await settle()
        expect(answered).toBeUndefined()
        up.release()
        expect(await call).toBe('v2')
      })

      it('hard timeout: rejects with CacheFunctionTimeoutError when nothing is kept, and stores the late result', async () => {
        const f = make({ ttl: 10, hardTimeout: '1s' })
        const delta = counter(f)
        up.hold()
        let early = false
        const call = outcomeOf(f()).finally(() => (early = true))
        await up.started(1)
        await advance(999)
        await settle()
        expect(early).toBe(false)
        await advance(1)
        const { error } = (await call) as { error: CacheFunctionTimeoutError }
        expect(error).toBeInstanceOf(CacheFunctionTimeoutError)
        expect(error).toBeInstanceOf(CacheError)
        expect(error).toMatchObject({ code: 'CACHE_FUNCTION_TIMEOUT', key: f.key, timeoutMs: 1000 })
        up.release()
        await until(() => delta('sets') === 1, 'the late result stored')
        expect(await f()).toBe('v1')
        expect(up.calls).toBe(1)
      })

      it('hard timeout with grace: answers with the kept value', async () => {
        const f = make({ ttl: 10, grace: 60, hardTimeout: '1s' })
        await f()
        await advance(11_000)
        up.value = 'v2'
        up.hold()
        const call = f()
        await up.started(2)
        await advance(1_000)
        expect(await call).toBe('v1')
        up.release()
      })
    })

    describe('refresh ahead', () => {
      it('refreshes a hit in the last part of its ttl once, in the background, so the key never misses', async () => {
        const f = make({ ttl: 10, refreshAhead: '20%' })
        const delta = counter(f)
        expect(await f()).toBe('v1')
        await advance(7_000)
        expect(await f()).toBe('v1')
        expect(delta('refreshes')).toBe(0)
        await advance(1_500)
        up.value = 'v2'
        up.hold()
        // Answered at once, with the function still running.
        expect(await Promise.all(Array.from({ length: 5 }, () => f()))).toEqual(Array(5).fill('v1'))
        await up.started(2)
        expect(delta('refreshes')).toBe(1)
        up.release()
        await until(() => delta('sets') === 2, 'the late result stored')
        await advance(5_000) // past the first result's ttl
        expect(await f()).toBe('v2')
        expect(up.calls).toBe(2)
        expect(delta('misses')).toBe(1)
      })

      it('never stores a refresh that an invalidation overtook', async () => {
        const f = make({ ttl: 10, refreshAhead: '20%' })
        await f()
        await advance(8_500)
        up.value = 'v2'
        up.hold()
        expect(await f()).toBe('v1')
        await up.started(2)
        await f.invalidate()
        up.release()
        await up.done(2)
        await settle()
        up.value = 'v3'
        expect(await f()).toBe('v3')
        await settle()
        expect(await f()).toBe('v3')
        expect(up.calls).toBe(3)
      })
    })

    describe('ttl from the result', () => {
      it('keeps a result for the ttl it carries, at most maxTtl; 0 stores nothing', async () => {
        up.value = { token: 'abc', expiresIn: 30 }
        const ttlOf = (result: { expiresIn: number }) => result.expiresIn
        const f = make({ ttl: ttlOf })
        await f()
        // (A store whose clock is the real one is a few ms ahead of the frozen fake clock.)
        const left = (await here.getEntry(f.key))!.expiresAt! - Date.now()
        expect(left).toBeGreaterThan(28_000)
        expect(left).toBeLessThanOrEqual(31_000)
        id += '-capped'
        const capped = make({ ttl: ttlOf, maxTtl: '10s' })
        await capped()
        expect((await here.getEntry(capped.key))!.expiresAt! - Date.now()).toBeLessThanOrEqual(11_000)
        id += '-zero'
        const never = make({ ttl: () => 0 })
        await never()
        await never()
        expect(up.calls).toBe(4)
      })

      it('starts the grace period where the returned ttl ends', async () => {
        up.value = { token: 'abc', expiresIn: 30 }
        const f = make({ ttl: (result: { expiresIn: number }) => result.expiresIn, grace: 60 })
        await f()
        await advance(29_000)
        expect(await f()).toEqual(up.value)
        expect(up.calls).toBe(1)
        await advance(2_000)
        up.error = new Error('upstream down')
        expect(await f()).toEqual({ token: 'abc', expiresIn: 30 })
        expect(up.calls).toBe(2)
      })
    })

    if (setup.shared) {
      describe('with another process', () => {
        it.each(['its own invalidation', 'invalidateTags()'])(
          'never serves the kept value once the other process made %s while the function ran here',
          async (how) => {
            const tag = `tag-${id}`
            const f = make({ ttl: 10, grace: 60, tags: [tag] })
            await f()
            await advance(11_000)
            up.error = new Error('upstream down')
            up.hold()
            const call = outcomeOf(f())
            await up.started(2)
            if (how === 'invalidateTags()') await peer!.request('invalidateTags', tag)
            else await peer!.invalidate(frontName, id)
            up.release()
            expect(await call).toEqual({ error: up.error })
          },
        )

        it('never serves a soft-timeout result computed before the other process invalidated', async () => {
          const f = make({ ttl: 10, grace: 60, timeout: '200ms' })
          const delta = counter(f)
          await f()
          await advance(11_000)
          up.value = 'v2'
          up.hold()
          const call = f()
          await up.started(2)
          await advance(200)
          expect(await call).toBe('v1')
          await peer!.invalidate(frontName, id)
          up.release()
          // This process cannot know: it stores, under the generations it read before.
          await until(() => delta('sets') === 2, 'the late result stored')
          up.value = 'v3'
          expect(await f()).toBe('v3')
          expect(up.calls).toBe(3)
        })

        it('backs off in the other process too: it serves the kept value without calling its function', async () => {
          const options = { ttl: 10, grace: 60, graceBackoff: 30 }
          const f = make(options)
          await f()
          await advance(11_000)
          up.error = new Error('upstream down')
          expect(await f()).toBe('v1')
          const before = await peer!.request<number>('calls')
          expect(await peer!.read(frontName, id, options)).toBe('v1')
          expect(await peer!.request('calls')).toBe(before)
          // Once the back-off is over, the other process calls its function again (and, as it
          // fails, serves the kept value again).
          await advance(31_000)
          expect(await peer!.read(frontName, id, options)).toBe('v1')
          expect(await peer!.request('calls')).toBe(before + 1)
        })
      })
    }
  })
})
