import { CacheTimeoutError, CacheUnavailableError, isUnavailable } from '@cache/core'
import { freePort, type MemcachedServer, startFaultProxy, startMemcached } from '@cache/test-servers'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { memcachedBackend } from '../src/index.js'
import { serverKeys } from './raw.js'

/** How long a failing operation may take: the timeout plus scheduling slack, far below a hang. */
const TIMEOUT_S = 0.3
const BOUND_MS = TIMEOUT_S * 1000 + 700

async function timed<T>(work: Promise<T>): Promise<{ error: unknown; ms: number }> {
  const start = performance.now()
  const error = await work.then(
    () => undefined,
    (e) => e,
  )
  return { error, ms: performance.now() - start }
}

describe('a server that is down', () => {
  it('fails every operation fast with CacheUnavailableError, and counts it', async () => {
    const cache = memcachedBackend(`127.0.0.1:${await freePort()}`, { timeout: TIMEOUT_S })
    const errors: unknown[] = []
    cache.on('error', (event) => errors.push(event.error))
    try {
      const operations = [
        () => cache.get('k'),
        () => cache.set('k', 1),
        () => cache.add('k', 1),
        () => cache.delete('k'),
        () => cache.incr('k'),
        () => cache.atomicUpdate('k', () => 1),
        () => cache.clear(),
      ]
      for (const operation of operations) {
        const { error, ms } = await timed(operation())
        expect(error).toBeInstanceOf(CacheUnavailableError)
        expect(ms).toBeLessThan(BOUND_MS)
      }
      expect(cache.stats.errors).toBeGreaterThanOrEqual(operations.length)
      expect(errors.every(isUnavailable)).toBe(true)
    } finally {
      await cache.close()
    }
  })

  it('fails with CacheTimeoutError within the timeout when the server hangs (SIGSTOP)', async () => {
    const server = await startMemcached({ spawn: true })
    const cache = memcachedBackend(server.server, { timeout: TIMEOUT_S })
    try {
      await cache.set('k', 'v')
      await server.process!.freeze()
      await new Promise((resolve) => setTimeout(resolve, 100))
      const { error, ms } = await timed(cache.get('k'))
      expect(error).toBeInstanceOf(CacheTimeoutError)
      expect(ms).toBeLessThan(BOUND_MS)
      expect(cache.stats.timeouts).toBe(1)
      // A second operation on the hung server also gives up in time.
      const again = await timed(cache.incr('n'))
      expect(again.error).toBeInstanceOf(CacheUnavailableError)
      expect(again.ms).toBeLessThan(BOUND_MS)
      // The failed write ejected the server; it comes back after its retry, cleared: `k` was
      // written before the freeze and the increment may or may not have been applied.
      const back = new Promise((resolve) => cache.on('server-up', resolve))
      process.kill(server.process!.pid!, 'SIGCONT')
      await back
      expect(await cache.get('k')).toBeUndefined()
      await cache.set('k', 'after')
      expect(await cache.get('k')).toBe('after')
    } finally {
      process.kill(server.process!.pid!, 'SIGCONT')
      await cache.close()
      await server.stop()
    }
  })

  it('recovers when a killed server comes back (empty, as memcached restarts are)', async () => {
    const server = await startMemcached({ spawn: true })
    const cache = memcachedBackend(server.server, { timeout: TIMEOUT_S })
    try {
      await cache.set('k', 'v')
      await server.process!.kill()
      await expect(cache.get('k')).rejects.toBeInstanceOf(CacheUnavailableError)
      await server.process!.start()
      expect(await cache.get('k')).toBeUndefined()
      await cache.set('k', 'again')
      expect(await cache.get('k')).toBe('again')
    } finally {
      await cache.close()
      await server.stop()
    }
  })
})

describe('this process, not the server, stalls past the timeout', () => {
  it('reads the answer that arrived meanwhile: no timeout, no ejection, the namespace is kept', async () => {
    const server = await startMemcached({ spawn: true })
    const cache = memcachedBackend(server.server, { namespace: 'stalled', timeout: 0.1, logger: false })
    const other = memcachedBackend(server.server, { namespace: 'stalled', logger: false })
    try {
      await other.set('kept', 'by another process')
      expect(await other.incr('counter', 10)).toBe(10)
      await cache.set('k', 'v')
      for (const call of [() => cache.get('k'), () => cache.set('k', 'w'), () => cache.incr('counter')]) {
        const pending = call()
        // The request is written; then 300 ms of synchronous work (a GC pause, a long loop).
        await new Promise((resolve) => setImmediate(resolve))
        const until = performance.now() + 300
        while (performance.now() < until) {}
        await expect(pending).resolves.not.toBeInstanceOf(Error)
      }
      // Answers larger than the socket's buffers: the rest arrives only once this process reads.
      const big = Array.from({ length: 12 }, (_, i) => ({ key: `big${i}`, value: 'x'.repeat(100_000) }))
      await other.setMany(big)
      const gets = [cache.getMany(big.map((item) => item.key)), ...big.map((item) => cache.get(item.key))]
      await new Promise((resolve) => setImmediate(resolve))
      const until = performance.now() + 300
      while (performance.now() < until) {}
      for (const read of await Promise.allSettled(gets)) expect(read.status).toBe('fulfilled')
      // Answers of 900 KB, in several rounds: part of an answer may be read before the deadline is judged.
      await other.set('huge', 'y'.repeat(900_000))
      for (let round = 0; round < 4; round++) {
        const huge = [cache.get('huge'), cache.get('huge'), cache.get('huge')]
        // Every other round, the busy stretch comes in the very tick of the calls, before they are written.
        if (round % 2 === 0) await new Promise((resolve) => setImmediate(resolve))
        const stop = performance.now() + 300
        while (performance.now() < stop) {}
        for (const read of await Promise.allSettled(huge))
          expect(read.status, `round ${round}`).toBe('fulfilled')
      }
      expect(cache.stats.timeouts).toBe(0)
      expect(cache.serverStats()[0]).toMatchObject({ state: 'up', ejections: 0 })
      expect(await other.get('kept')).toBe('by another process')
      expect(await other.get('counter')).toBe(11)
      expect(await cache.get('k')).toBe('w')
    } finally {
      await cache.close()
      await other.close()
      await server.stop()
    }
  })
})

describe('a connection closed while requests wait for their answer', () => {
  it('fails them at once, without waiting for their timeout', async () => {
    const server = await startMemcached({ spawn: true })
    const proxy = await startFaultProxy({ port: server.port })
    const cache = memcachedBackend(`127.0.0.1:${proxy.port}`, { timeout: 2, logger: false })
    try {
      await cache.set('k', 'v')
      // The server answers; the link drops (FIN to the client) before the answer reaches it.
      const dropped = proxy.dropNextReply()
      const { error, ms } = await timed(cache.get('k'))
      await dropped
      expect(isUnavailable(error)).toBe(true)
      expect(ms).toBeLessThan(1000)
      // A fresh connection serves the next calls.
      const deadline = Date.now() + 5000
      while (Date.now() < deadline && (await cache.get('k').catch(() => 'down')) === 'down')
        await new Promise((r) => setTimeout(r, 50))
      expect(await cache.get('k')).toBe('v')
    } finally {
      await cache.close()
      await proxy.close()
      await server.stop()
    }
  })
})

describe('a set whose link drops after the server ran it', () => {
  it('rejects CacheUnavailableError, may have been applied, and is hidden once the server is taken back', async () => {
    const server = await startMemcached({ spawn: true })
    const proxy = await startFaultProxy({ port: server.port })
    const namespace = 'dropped-set'
    const writer = memcachedBackend(`127.0.0.1:${proxy.port}`, { namespace, timeout: 2, logger: false })
    const reader = memcachedBackend(server.server, { namespace, logger: false })
    try {
      await writer.set('k', 'before')
      const dropped = proxy.dropNextReply()
      const error = await writer.set('k', 'reported failed').then(
        () => undefined,
        (failure: unknown) => failure,
      )
      await dropped
      expect(isUnavailable(error)).toBe(true)
      expect(error).not.toBeInstanceOf(CacheTimeoutError)
      // No undo: one on a new connection could overtake the set, if the link dropped between
      // this process and a server still reading the old one. So it may have been applied.
      expect(await reader.get('k')).toBe('reported failed')
      // Once the writer takes the server back, it bumps the namespace's generation on it.
      const deadline = Date.now() + 5000
      while (Date.now() < deadline && writer.serverStats()[0]!.state !== 'up')
        await new Promise((r) => setTimeout(r, 50))
      expect(writer.serverStats()[0]!.state).toBe('up')
      expect(await reader.get('k')).toBeUndefined()
    } finally {
      await writer.close()
      await reader.close()
      await proxy.close()
      await server.stop()
    }
  })
})

describe('a connection given up in the middle of an answer', () => {
  it('is replaced by a clean one: the server is taken back at the next retry', async () => {
    const server = await startMemcached({ spawn: true, memoryMb: 256 })
    const cache = memcachedBackend(server.server, { namespace: 'mid-answer', timeout: 0.05, logger: false })
    const other = memcachedBackend(server.server, { namespace: 'mid-answer', logger: false })
    const events: string[] = []
    cache.on('server-down', () => events.push('down'))
    cache.on('server-up', () => events.push('up'))
    try {
      const keys = Array.from({ length: 100 }, (_, i) => `big${i}`)
      for (let i = 0; i < keys.length; i += 5)
        await other.setMany(keys.slice(i, i + 5).map((key) => ({ key, value: 'x'.repeat(900_000) })))
      await cache.get('warm')
      // 90 MB cannot arrive within 50 ms (36 MB once did, on loopback): the answer is cut off part way.
      await expect(cache.getMany(keys)).rejects.toBeInstanceOf(CacheUnavailableError)
      const deadline = Date.now() + 5000
      while (!events.includes('up') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
      expect(events).toEqual(['down', 'up'])
      await cache.set('after', 'back')
      expect(await cache.get('after')).toBe('back')
    } finally {
      await cache.close()
      await other.close()
      await server.stop()
    }
  }, 15_000)
})

describe('two servers', () => {
  let a: MemcachedServer
  let b: MemcachedServer
  beforeAll(async () => {
    a = await startMemcached({ spawn: true })
    b = await startMemcached({ spawn: true })
  })
  afterAll(async () => {
    await Promise.all([a.stop(), b.stop()])
  })

  it('spreads keys across both, and with one stopped only its keys fail, fast', async () => {
    const cache = memcachedBackend(`${a.server},${b.server}`, { namespace: 'spread', timeout: TIMEOUT_S })
    try {
      const keys = Array.from({ length: 200 }, (_, i) => `key:${i}`)
      await cache.setMany(keys.map((key) => ({ key, value: key })))
      const onA = new Set(
        (await serverKeys(a.port))
          .filter((k) => !k.endsWith('#g'))
          .map((k) => k.split(':').slice(1).join(':')),
      )
      const onB = new Set(
        (await serverKeys(b.port))
          .filter((k) => !k.endsWith('#g'))
          .map((k) => k.split(':').slice(1).join(':')),
      )
      expect(onA.size + onB.size).toBe(200)
      expect(onA.size).toBeGreaterThan(40)
      expect(onB.size).toBeGreaterThan(40)

      await b.process!.kill()
      for (const key of keys.slice(0, 40)) {
        const { error, ms } = await timed(cache.get(key))
        if (onA.has(key)) {
          expect(error).toBeUndefined()
          expect(await cache.get(key)).toBe(key)
          await cache.set(key, 'updated')
          expect(await cache.incr(`${key}:n`).catch(() => 'down')).not.toBe(undefined)
        } else {
          expect(error).toBeInstanceOf(CacheUnavailableError)
          expect(ms).toBeLessThan(BOUND_MS)
        }
      }
      // clear() reports the server it could not reach, after clearing the other one.
      await expect(cache.clear()).rejects.toBeInstanceOf(CacheUnavailableError)
      const survivor = keys.find((key) => onA.has(key))!
      expect(await cache.get(survivor)).toBeUndefined()
    } finally {
      await cache.close()
      await b.process!.start()
    }
  })

  it('gives each user exactly one server per key: the same key always lands on the same server', async () => {
    const first = memcachedBackend(`${a.server},${b.server}`, { namespace: 'stable' })
    const second = memcachedBackend(`${a.server},${b.server}`, { namespace: 'stable' })
    try {
      for (let i = 0; i < 50; i++) await first.set(`k${i}`, i)
      for (let i = 0; i < 50; i++) expect(await second.get(`k${i}`)).toBe(i)
    } finally {
      await Promise.all([first.close(), second.close()])
    }
  })
})

describe('error and server-down listeners that throw', () => {
  /** Every kind of call, each on a fresh key. */
  const calls = (cache: ReturnType<typeof memcachedBackend>, n: number) => [
    () => cache.get(`g${n}`),
    () => cache.getEntry(`e${n}`),
    () => cache.has(`h${n}`),
    () => cache.set(`s${n}`, 1),
    () => cache.delete(`d${n}`),
    () => cache.incr(`i${n}`),
    () => cache.add(`a${n}`, 1),
    () => cache.atomicUpdate(`u${n}`, () => 1),
    () => cache.compareAndDelete(`c${n}`, 'x'),
    () => cache.getMany([`m${n}`, `m${n}b`]),
    () => cache.setMany([{ key: `sm${n}`, value: 1 }]),
    () => cache.deleteMany([`dm${n}`]),
    () => cache.clear(),
  ]

  async function check(server: string, freeze?: () => Promise<void>) {
    const logged: string[] = []
    const logger = { warn: (m: string) => logged.push(m), error: (m: string) => logged.push(m) }
    const cache = memcachedBackend(server, { timeout: TIMEOUT_S, logger })
    const uncaught: unknown[] = []
    const onUncaught = (error: unknown) => uncaught.push(error)
    process.on('uncaughtException', onUncaught)
    process.on('unhandledRejection', onUncaught)
    const thrown = new Set<string>()
    const boom = (name: string) => () => {
      thrown.add(name)
      throw new Error(`${name} listener`)
    }
    cache.on('error', boom('error'))
    cache.on('server-down', boom('server-down'))
    try {
      await freeze?.()
      for (const [n, call] of calls(cache, 0).entries()) {
        const { error, ms } = await timed(call())
        // The call fails with the cache's own error, in time: the listener's failure is not its.
        expect([n, isUnavailable(error)]).toEqual([n, true])
        expect(ms).toBeLessThan(BOUND_MS)
      }
      // All at once, in one tick: each settles.
      const all = await timed(Promise.allSettled(calls(cache, 1).map((call) => call())))
      expect(all.ms).toBeLessThan(BOUND_MS)
      await new Promise((resolve) => setTimeout(resolve, 50))
      expect(thrown.has('error')).toBe(true)
      expect(uncaught).toEqual([])
      // Said once per listener that threw, not once per failure.
      for (const name of ['error', 'server-down'])
        expect(logged.filter((m) => m.includes(`'${name}' listener threw`))).toHaveLength(
          thrown.has(name) ? 1 : 0,
        )
    } finally {
      process.off('uncaughtException', onUncaught)
      process.off('unhandledRejection', onUncaught)
      await cache.close()
    }
  }

  it('do not hang calls or crash the process when the server refuses connections', async () => {
    await check(`127.0.0.1:${await freePort()}`)
  })

  it('do not hang calls or crash the process when the server is frozen (SIGSTOP)', async () => {
    const server = await startMemcached({ spawn: true })
    try {
      await check(server.server, () => server.process!.freeze())
    } finally {
      process.kill(server.process!.pid!, 'SIGCONT')
      await server.stop()
    }
  })

  it('off() removes an error listener as it was given', async () => {
    const cache = memcachedBackend(`127.0.0.1:${await freePort()}`, { timeout: TIMEOUT_S, logger: false })
    let heard = 0
    const listener = () => {
      heard++
      throw new Error('error listener')
    }
    try {
      cache.on('error', listener)
      await cache.get('k').catch(() => {})
      expect(heard).toBe(1)
      cache.off('error', listener)
      await cache.get('k').catch(() => {})
      expect(heard).toBe(1)
    } finally {
      await cache.close()
    }
  })

  it('a server-up listener that throws does not stop the server from coming back', async () => {
    const server = await startMemcached({ spawn: true })
    const cache = memcachedBackend(server.server, {
      timeout: TIMEOUT_S,
      logger: false,
      eject: { retryAfter: 0.05 },
    })
    let ups = 0
    cache.on('server-up', () => {
      ups++
      throw new Error('server-up listener')
    })
    try {
      await cache.set('k', 1)
      await server.process!.kill()
      await expect(cache.set('k', 2)).rejects.toBeInstanceOf(CacheUnavailableError)
      await server.process!.start()
      const deadline = Date.now() + 3000
      while (ups === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
      expect(ups).toBe(1)
      await cache.set('k', 3)
      expect(await cache.get('k')).toBe(3)
    } finally {
      await cache.close()
      await server.stop()
    }
  })
})
