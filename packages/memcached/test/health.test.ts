import { CacheTimeoutError, CacheUnavailableError } from '@cache/core'
import { type FaultProxy, type MemcachedServer, startFaultProxy, startMemcached } from '@cache/test-servers'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { type MemcachedBackend, memcachedBackend } from '../src/index.js'

const TIMEOUT_MS = 300
/** A failure that did not wait for the timeout: fast, with room for a loaded machine. */
const FAST_MS = 150

let servers: MemcachedServer[]
beforeAll(async () => {
  servers = await Promise.all([0, 1, 2].map(() => startMemcached({ spawn: true })))
})
/** Resumes every frozen server. */
function thaw(): void {
  for (const server of servers) if (server.process?.running) process.kill(server.process.pid!, 'SIGCONT')
}

afterAll(async () => {
  thaw()
  await Promise.all(servers.map((server) => server.stop()))
})

const open: MemcachedBackend[] = []
afterEach(async () => {
  thaw()
  await Promise.all(open.splice(0).map((cache) => cache.close()))
  await Promise.all(servers.map((server) => server.process!.start()))
})

function pool(list: string[], namespace: string): MemcachedBackend {
  const cache = memcachedBackend(list, {
    namespace,
    timeout: `${TIMEOUT_MS}ms`,
    eject: { retryAfter: '200ms', maxRetryAfter: '800ms' },
  })
  open.push(cache)
  return cache
}

/** `count` keys that live on `server` for this cache. */
function keysOn(cache: MemcachedBackend, server: string, count: number): string[] {
  const keys: string[] = []
  for (let i = 0; keys.length < count; i++) if (cache.serverFor(`k${i}`) === server) keys.push(`k${i}`)
  return keys
}

async function timed(work: () => Promise<unknown>): Promise<{ error: unknown; ms: number }> {
  const start = performance.now()
  const error = await work().then(
    () => undefined,
    (e) => e,
  )
  return { error, ms: performance.now() - start }
}

function once(cache: MemcachedBackend, event: 'server-down' | 'server-up', ms = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within ${ms} ms`)), ms)
    cache.on(event, (e) => {
      clearTimeout(timer)
      resolve(e.server!)
    })
  })
}

describe('health per server', () => {
  it('ejects a dead server: its keys fail at once, partially; the others keep serving; it comes back', async () => {
    const names = servers.map((server) => server.server)
    const cache = pool(names, 'dead')
    const down = keysOn(cache, names[1]!, 20)
    const up = [...keysOn(cache, names[0]!, 10), ...keysOn(cache, names[2]!, 10)]
    await cache.setMany([...down, ...up].map((key) => ({ key, value: key })))
    const ejected = once(cache, 'server-down')
    await servers[1]!.process!.kill()
    for (const key of down) {
      const { error, ms } = await timed(() => cache.get(key))
      expect(error).toBeInstanceOf(CacheUnavailableError)
      expect((error as CacheUnavailableError).partial).toBe(true)
      expect((error as CacheUnavailableError).server).toBe(names[1])
      expect(ms).toBeLessThan(FAST_MS)
    }
    expect(await ejected).toBe(names[1])
    for (const key of up) expect(await cache.get(key)).toBe(key)
    const report = cache.serverStats()
    expect(report.map((r) => r.state)).toEqual(['up', 'down', 'up'])
    expect(report[1]).toMatchObject({ server: names[1], ejections: 1 })
    expect(report[1]!.retryAt).toBeGreaterThan(Date.now() - 1000)

    const back = once(cache, 'server-up')
    await servers[1]!.process!.start()
    expect(await back).toBe(names[1])
    await cache.set(down[0]!, 'again')
    expect(await cache.get(down[0]!)).toBe('again')
    expect(cache.serverStats()[1]!.state).toBe('up')
  })

  it('pays the timeout of a frozen server (SIGSTOP) at most twice, then fails its keys at once', async () => {
    const names = servers.map((server) => server.server)
    const cache = pool(names, 'frozen')
    const frozen = keysOn(cache, names[2]!, 20)
    await cache.setMany(frozen.map((key) => ({ key, value: 1 })))
    // Every thread stopped: a request sent right after a bare SIGSTOP can still be answered.
    await servers[2]!.process!.freeze()
    const slow: number[] = []
    for (const key of frozen) {
      const { error, ms } = await timed(() => cache.get(key))
      expect(error).toBeInstanceOf(CacheUnavailableError)
      if (ms >= FAST_MS) slow.push(ms)
    }
    expect(slow.length).toBeLessThanOrEqual(2)
    expect(cache.serverStats()[2]!.state).toBe('down')
    // The other servers never noticed.
    expect(await cache.get(keysOn(cache, names[0]!, 1)[0]!)).toBeUndefined()
  })

  it('fails every request to a frozen server within the timeout, however often new ones arrive', async () => {
    const names = servers.map((server) => server.server)
    const cache = pool(names, 'steady')
    const frozen = keysOn(cache, names[2]!, 20)
    await cache.setMany(frozen.map((key) => ({ key, value: 1 })))
    await servers[2]!.process!.freeze()
    // A request every 20-60 ms: each new write on the socket must not push the others' deadline.
    const calls: Promise<{ error: unknown; ms: number }>[] = []
    const until = performance.now() + 1200
    for (let i = 0; performance.now() < until; i++) {
      calls.push(timed(() => cache.get(frozen[i % frozen.length]!)))
      await new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 40))
    }
    const results = await Promise.all(calls)
    for (const { error } of results) expect(error).toBeInstanceOf(CacheUnavailableError)
    expect(Math.max(...results.map((r) => r.ms))).toBeLessThan(TIMEOUT_MS + FAST_MS)
    expect(cache.serverStats()[2]!.state).toBe('down')
  })

  it('never lets another process read a write that timed out on a frozen server, once it resumes', async () => {
    const names = servers.map((server) => server.server)
    const writer = pool(names, 'late')
    // Another process that trusts its copy of the generation for long.
    const reader = memcachedBackend(names, { namespace: 'late', generationTtl: '10s' })
    open.push(reader)
    const [key, counter] = keysOn(writer, names[1]!, 2)
    await writer.set(key!, 'before')
    await writer.incr(counter!, 5)
    expect(await reader.get(key!)).toBe('before')
    expect(await reader.get(counter!)).toBe(5)
    await servers[1]!.process!.freeze()
    const failed = await Promise.all([
      writer.set(key!, 'reported failed').catch((e: unknown) => e),
      writer.incr(counter!, 1).catch((e: unknown) => e),
    ])
    for (const error of failed) expect(error).toBeInstanceOf(CacheTimeoutError)
    servers[1]!.process!.thaw()
    // The server runs what was in its input buffer when it resumes.
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(await reader.get(key!)).not.toBe('reported failed')
    // The set given up moved the namespace's generation on that server (every backend of this
    // process sees it at once, whatever its generationTtl): its keys there are dropped, the
    // counter too (the cost the README states), never read as a value reported failed.
    expect(await reader.get(counter!)).toBeUndefined()
  })

  it('ejects a server behind a black-holed link the same way, and takes it back once the link passes', async () => {
    const proxy: FaultProxy = await startFaultProxy({ port: servers[1]!.port })
    try {
      const names = [servers[0]!.server, `127.0.0.1:${proxy.port}`, servers[2]!.server]
      const cache = pool(names, 'blackhole')
      const silent = keysOn(cache, names[1]!, 10)
      await cache.setMany(silent.map((key) => ({ key, value: 1 })))
      proxy.setMode('blackhole')
      const slow = (await Promise.all(silent.map((key) => timed(() => cache.get(key))))).filter(
        (r) => r.ms >= FAST_MS,
      )
      // All ten were in flight together: they share one timeout, then the server is ejected.
      expect(slow.length).toBeLessThanOrEqual(10)
      const after = await timed(() => cache.get(silent[0]!))
      expect(after.error).toBeInstanceOf(CacheUnavailableError)
      expect(after.ms).toBeLessThan(FAST_MS)
      const back = once(cache, 'server-up')
      proxy.setMode('pass')
      await back
      await cache.set(silent[0]!, 2)
      expect(await cache.get(silent[0]!)).toBe(2)
    } finally {
      await proxy.close()
    }
  })

  it('never serves a value that was deleted or overwritten while its server was cut off', async () => {
    // A black hole loses the requests (a frozen server would still run them when it resumes).
    const proxy = await startFaultProxy({ port: servers[0]!.port })
    try {
      const names = [`127.0.0.1:${proxy.port}`, servers[1]!.server, servers[2]!.server]
      const cache = pool(names, 'cutoff')
      const [deleted, overwritten] = keysOn(cache, names[0]!, 2)
      await cache.set(deleted!, 'old')
      await cache.set(overwritten!, 'old')
      proxy.setMode('blackhole')
      await expect(cache.delete(deleted!)).rejects.toBeInstanceOf(CacheUnavailableError)
      await expect(cache.set(overwritten!, 'new')).rejects.toBeInstanceOf(CacheUnavailableError)
      const back = once(cache, 'server-up')
      proxy.setMode('pass')
      await back
      expect(await cache.get(deleted!)).toBeUndefined()
      expect(await cache.get(overwritten!)).toBeUndefined()
      // Another process that never saw the failure reads the server's new generation too.
      const other = memcachedBackend(names, { namespace: 'cutoff' })
      open.push(other)
      expect(await other.get(deleted!)).toBeUndefined()
    } finally {
      await Promise.all(open.splice(0).map((cache) => cache.close()))
      await proxy.close()
    }
  })

  it('retries a frozen server less and less often, up to maxRetryAfter; a refusing one at the base pace', async () => {
    const names = servers.map((server) => server.server)
    const cache = pool(names, 'backoff')
    const gapsOf = async (index: number, ms: number): Promise<number[]> => {
      const key = keysOn(cache, names[index]!, 1)[0]!
      for (let i = 0; i < 2; i++) await cache.get(key).catch(() => {})
      expect(cache.serverStats()[index]!.state).toBe('down')
      const gaps: number[] = []
      let last = cache.serverStats()[index]!.retryAt!
      const deadline = Date.now() + ms
      while (Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 10))
        const next = cache.serverStats()[index]!.retryAt!
        if (next !== last) {
          gaps.push(next - last)
          last = next
        }
      }
      return gaps
    }
    // Frozen: each retry waits the 300 ms timeout, then 200 ms → 400 → 800 → 800 … (±20%).
    await servers[2]!.process!.freeze()
    const frozen = (await gapsOf(2, 3500)).map((gap) => gap - TIMEOUT_MS)
    expect(frozen.length).toBeGreaterThanOrEqual(3)
    expect(frozen[1]!).toBeGreaterThan(frozen[0]!)
    expect(Math.max(...frozen)).toBeLessThan(800 * 1.2 + 200)
    expect(frozen.at(-1)!).toBeGreaterThan(800 * 0.8 - 100)
    // Refusing connections: retried every 200 ms (±20%), however long it stays down.
    await servers[1]!.process!.kill()
    const refused = await gapsOf(1, 1500)
    expect(refused.length).toBeGreaterThanOrEqual(4)
    expect(Math.max(...refused)).toBeLessThan(200 * 1.2 + 100)
  })

  it('reports failures as not partial once every server is down', async () => {
    const names = servers.map((server) => server.server)
    const cache = pool(names, 'all-down')
    await Promise.all(servers.map((server) => server.process!.kill()))
    const errors: CacheUnavailableError[] = []
    for (let i = 0; i < 30; i++)
      errors.push((await cache.get(`k${i}`).catch((e: CacheUnavailableError) => e)) as CacheUnavailableError)
    expect(cache.serverStats().every((r) => r.state === 'down')).toBe(true)
    expect(errors.at(-1)).toBeInstanceOf(CacheUnavailableError)
    expect(errors.at(-1)!.partial).toBe(false)
  })
})
