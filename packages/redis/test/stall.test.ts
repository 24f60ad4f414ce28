import { CacheTimeoutError, CacheUnavailableError } from '@cache/core'
import {
  type FaultProxy,
  type RedisCluster,
  type RedisServer,
  startFaultProxy,
  startRedis,
  startRedisCluster,
} from '@cache/test-servers'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type RedisBackend, redisBackend } from '../src/index.js'
import { keysServedBy, useSingleAndCluster } from './servers.js'

const servers = useSingleAndCluster()

/** This process does 300 ms of synchronous work (a GC pause, a long loop): its timers and I/O wait. */
function stall(ms = 300): void {
  const until = performance.now() + ms
  while (performance.now() < until) {}
}

/** 12 gets, 4 sets and an incr, as one burst of calls. */
function burst(cache: RedisBackend, round: number): Promise<unknown>[] {
  return [
    ...Array.from({ length: 12 }, (_, i) => cache.get(`k${i}`)),
    ...Array.from({ length: 4 }, (_, i) => cache.set(`w${i}`, `round ${round}`)),
    cache.incr('counter'),
  ]
}

describe.each([
  ['one node', () => servers.singleUrl()],
  ['a cluster', () => servers.clusterUrl()],
])('%s: this process, not Redis, stalls past the timeout', (_name, url) => {
  it("resolves every call with Redis's answer: no timeout, no error event, no outage", async () => {
    const cache = redisBackend(url(), { namespace: 'stalled', timeout: '100ms', logger: false })
    const events: unknown[] = []
    cache.on('error', (event) => events.push(event.error))
    try {
      await cache.ready('10s')
      await cache.setMany(Array.from({ length: 12 }, (_, i) => ({ key: `k${i}`, value: `v${i}` })))
      await cache.delete('counter')
      const expected = [...Array.from({ length: 12 }, (_, i) => `v${i}`), ...new Array(4).fill(undefined)]
      for (let round = 0; round < 6; round++) {
        // A command of your own on the client the backend built is judged the same way.
        const calls = [...burst(cache, round), cache.client.get('stalled:k0')]
        // Even rounds: the commands are written, then the stall. Odd rounds: the stall comes in
        // the very tick of the calls, before they leave.
        if (round % 2 === 0) await new Promise((resolve) => setImmediate(resolve))
        stall()
        const settled = await Promise.allSettled(calls)
        const failures = settled.filter((s) => s.status === 'rejected').map((s) => String(s.reason))
        expect(failures, `round ${round}`).toEqual([])
        const values = settled.map((s) => (s as PromiseFulfilledResult<unknown>).value)
        expect(values.slice(0, -1), `round ${round}`).toEqual([...expected, round + 1])
        expect(values.at(-1), `round ${round}`).toContain('v0')
      }
      expect(await cache.get('w3')).toBe('round 5')
      expect(cache.stats.errors).toBe(0)
      expect(cache.stats.timeouts).toBe(0)
      expect(events).toEqual([])
    } finally {
      await cache.close()
    }
  })

  it('reads large replies still arriving after the stall: they get their timeout once more', async () => {
    const cache = redisBackend(url(), { namespace: 'stalled-large', timeout: '100ms', logger: false })
    try {
      await cache.ready('10s')
      const big = 'y'.repeat(900_000)
      await cache.setMany([0, 1, 2].map((i) => ({ key: `huge${i}`, value: big })))
      for (let round = 0; round < 4; round++) {
        const reads = [0, 1, 2].map((i) => cache.get(`huge${i}`))
        if (round % 2 === 0) await new Promise((resolve) => setImmediate(resolve))
        stall()
        for (const read of await Promise.allSettled(reads)) {
          expect(read.status, `round ${round}`).toBe('fulfilled')
          expect((read as PromiseFulfilledResult<unknown>).value, `round ${round}`).toBe(big)
        }
      }
      expect(cache.stats.errors).toBe(0)
    } finally {
      await cache.close()
    }
  })

  it('still fails a call at about its timeout when Redis does not answer (after a stall too)', async () => {
    const cache = redisBackend(url(), { namespace: 'slow', timeout: '100ms', logger: false })
    try {
      await cache.ready('10s')
      const raw = new Redis(firstPort(url()), '127.0.0.1')
      try {
        for (const withStall of [false, true]) {
          const key = cache.client.isCluster ? await keyOnNode(raw, 'slow') : 'slow:x'
          // Redis holds every other client's commands for 1 s (in force once it answered).
          await raw.call('CLIENT', 'PAUSE', '1000', 'ALL')
          const pausedAt = performance.now()
          const start = performance.now()
          const call = cache.get(key.slice('slow:'.length)).then(
            () => ({ ms: performance.now() - start, error: undefined as unknown }),
            (error: unknown) => ({ ms: performance.now() - start, error }),
          )
          if (withStall) stall(150)
          const { ms, error } = await call
          expect(error, `stall ${withStall}`).toBeInstanceOf(CacheTimeoutError)
          expect(ms, `stall ${withStall}`).toBeGreaterThanOrEqual(95)
          expect(ms, `stall ${withStall}`).toBeLessThan(withStall ? 150 + 2 * 100 + 80 : 2 * 100 + 80)
          await new Promise((resolve) =>
            setTimeout(resolve, Math.max(0, pausedAt + 1050 - performance.now())),
          )
        }
      } finally {
        raw.disconnect()
      }
    } finally {
      await cache.close()
    }
  })
})

/** The port of a `redis://` URL, or of the first seed node of a `redis+cluster://` one. */
function firstPort(url: string): number {
  return Number(/:(\d+)/.exec(url.replace(/^[a-z+]+:\/\//, ''))![1])
}

/** A key of namespace `slow` that the node `raw` serves (so that `raw`'s busy script holds it up). */
async function keyOnNode(raw: Redis, namespace: string): Promise<string> {
  const slots = (await raw.call('CLUSTER', 'SLOTS')) as [number, number, [string, number]][]
  const port = (raw.options.port ?? 6379) as number
  const { default: slotOf } = await import('cluster-key-slot')
  const ranges = slots.filter((range) => range[2][1] === port)
  for (let i = 0; ; i++) {
    const key = `${namespace}:x${i}`
    const slot = slotOf(key)
    if (ranges.some(([from, to]) => slot >= from && slot <= to)) return key
  }
}

describe('a frozen server or a silent link', () => {
  let server: RedisServer
  let proxy: FaultProxy
  beforeAll(async () => {
    server = await startRedis({ spawn: true })
    proxy = await startFaultProxy({ port: server.port })
  })
  afterAll(async () => {
    await proxy?.close()
    await server?.stop()
  })

  it('fails each call of a burst at about the timeout (SIGSTOP)', async () => {
    const cache = redisBackend(server.url, { namespace: 'frozen', timeout: '100ms', logger: false })
    try {
      await cache.set('k0', 'v')
      const pid = server.process!.pid!
      await server.process!.freeze()
      try {
        const start = performance.now()
        const own = cache.client.get('frozen:k0')
        const results = await Promise.all(
          [...burst(cache, 0), own].map((call) =>
            call.then(
              () => ({ ms: performance.now() - start, error: undefined as unknown }),
              (error: unknown) => ({ ms: performance.now() - start, error }),
            ),
          ),
        )
        // (an incr that times out asks the server what it did: a second deadline, see Exactly once)
        for (const { ms, error } of results.slice(0, -1)) {
          expect(error).toBeInstanceOf(CacheTimeoutError)
          expect(ms).toBeGreaterThanOrEqual(95)
          expect(ms).toBeLessThan(300)
        }
        // A command of your own on `backend.client` fails as ioredis's commandTimeout made it fail.
        expect((results.at(-1)!.error as Error).message).toBe('Command timed out')
        expect(results.at(-1)!.ms).toBeLessThan(250)
        expect(cache.stats.timeouts).toBeGreaterThan(0)
      } finally {
        process.kill(pid, 'SIGCONT')
      }
    } finally {
      await cache.close()
    }
  })

  it('fails gets queued behind a large reply trickling in within twice the timeout each', async () => {
    const cache = redisBackend(`redis://127.0.0.1:${proxy.port}`, {
      namespace: 'trickle',
      timeout: '300ms',
      logger: false,
    })
    try {
      // 32 MB: about 2 s over the slow link, so reply bytes keep arriving while every get waits.
      // Written straight to the server, with time to spare.
      const writer = redisBackend(server.url, { namespace: 'trickle', timeout: '10s', logger: false })
      await writer.set('big', 'x'.repeat(32_000_000))
      await writer.close()
      await cache.set('k', 'v')
      proxy.setMode('slow')
      const results: { ms: number; error: unknown }[] = []
      const timed = (call: Promise<unknown>) => {
        const start = performance.now()
        return call.then(
          () => void results.push({ ms: performance.now() - start, error: undefined }),
          (error: unknown) => void results.push({ ms: performance.now() - start, error }),
        )
      }
      const calls = [timed(cache.get('big'))]
      for (let i = 0; i < 40; i++) {
        await new Promise((resolve) => setTimeout(resolve, 10))
        calls.push(timed(cache.get('k')))
      }
      // Bounded: calls still waiting after 5 s are counted as such.
      await Promise.race([Promise.all(calls), new Promise((resolve) => setTimeout(resolve, 5000))])
      expect(results).toHaveLength(41)
      for (const { ms, error } of results) {
        expect(error).toBeInstanceOf(CacheTimeoutError)
        // README: at most twice the timeout (plus this process's stall) when bytes kept arriving.
        expect(ms).toBeLessThan(2 * 300 + 150)
      }
    } finally {
      proxy.setMode('pass')
      await cache.close()
    }
  })

  it('fails calls sent one after another on a black-holed link at about the timeout each', async () => {
    const cache = redisBackend(`redis://127.0.0.1:${proxy.port}`, {
      namespace: 'holed',
      timeout: '100ms',
      logger: false,
    })
    try {
      await cache.set('k', 'v')
      proxy.setMode('blackhole')
      const results: { ms: number; error: unknown }[] = []
      const calls: Promise<void>[] = []
      for (let i = 0; i < 10; i++) {
        const start = performance.now()
        calls.push(
          cache.get('k').then(
            () => void results.push({ ms: performance.now() - start, error: undefined }),
            (error: unknown) => void results.push({ ms: performance.now() - start, error }),
          ),
        )
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
      await Promise.all(calls)
      for (const { ms, error } of results) {
        expect(error).toBeInstanceOf(CacheUnavailableError)
        expect(ms).toBeGreaterThanOrEqual(95)
        expect(ms).toBeLessThan(250)
      }
    } finally {
      proxy.setMode('pass')
      await cache.close()
    }
  })
})

describe('a frozen cluster master while the other masters keep answering', () => {
  let cluster: RedisCluster
  beforeAll(async () => {
    // A node timeout longer than the test: the frozen master is not failed over meanwhile.
    cluster = await startRedisCluster(3, { nodeTimeout: 30_000 })
  }, 60_000)
  afterAll(async () => {
    await cluster?.stop()
  })

  it('fails each call to the frozen master within twice the timeout, however many are waiting', async () => {
    const url = `redis+cluster://${cluster.nodes.map((n) => `${n.host}:${n.port}`).join(',')}`
    const cache = redisBackend(url, { namespace: 'pile', timeout: '200ms', logger: false })
    const [frozenPort, ...livePorts] = cluster.nodes.map((n) => n.port)
    const frozenKey = keysServedBy(frozenPort!, 'pile', 1, 'frozen')[0]!
    const liveKeys = livePorts.flatMap((port) => keysServedBy(port, 'pile', 4, 'live'))
    const frozen = cluster.processOn(frozenPort!)
    try {
      await cache.ready('10s')
      await cache.setMany([frozenKey, ...liveKeys].map((key) => ({ key, value: 'v' })))
      await frozen.freeze()
      let stop = false
      // Replies keep arriving from the live masters all along.
      const load = liveKeys.map(async (key) => {
        while (!stop) await cache.get(key).catch(() => {})
      })
      const results: { ms: number; error: unknown }[] = []
      const calls: Promise<void>[] = []
      for (let i = 0; i < 60; i++) {
        const start = performance.now()
        calls.push(
          cache.get(frozenKey).then(
            () => void results.push({ ms: performance.now() - start, error: undefined }),
            (error: unknown) => void results.push({ ms: performance.now() - start, error }),
          ),
        )
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
      // Bounded: calls still waiting after 5 s are counted as such.
      await Promise.race([Promise.all(calls), new Promise((resolve) => setTimeout(resolve, 5000))])
      stop = true
      await Promise.all(load)
      expect(results).toHaveLength(60)
      for (const { ms, error } of results) {
        expect(error).toBeInstanceOf(CacheTimeoutError)
        // README: at about the timeout, at most twice that (plus this process's stall).
        expect(ms).toBeLessThan(2 * 200 + 150)
      }
    } finally {
      frozen.thaw()
      await cache.close()
    }
  })
})

describe.each([
  ['one node', () => servers.singleUrl(), {}],
  ['one node, nearCache', () => servers.singleUrl(), { nearCache: true }],
  ['a cluster', () => servers.clusterUrl(), {}],
])('%s: a reply read late', (_name, url, extra) => {
  it("gives getEntry an expiry no later than Redis's, though the reply waited while this process was busy", async () => {
    const cache = redisBackend(url(), { namespace: 'late-expiry', logger: false, ...extra })
    try {
      await cache.set('quote', 'price at 10:00', 1)
      const latest = Date.now() + 1000
      const reading = cache.getEntry<string>('quote')
      // Redis answers while this process works: the reply is read 400 ms after Redis ran the command.
      stall(400)
      const entry = await reading
      expect(entry?.value).toBe('price at 10:00')
      // Before, 400 ms later than Redis's (the reply's arrival + its TTL); 2 ms for whole-ms clocks.
      expect(entry!.expiresAt).toBeLessThanOrEqual(latest + 2)
    } finally {
      await cache.close()
    }
  })
})
