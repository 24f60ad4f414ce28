/**
 * A remote level killed (SIGKILL) and restarted under a steady request stream: the app keeps
 * serving (no failed request), slow requests stay bounded by the op timeout, the remote level is
 * used again soon after it is back, and nothing written while it was down reappears stale.
 */
import type { CacheBackend } from '@cache/core'
import { memcachedBackend } from '@cache/memcached'
import { memoryBackend } from '@cache/memory'
import { type MultiLevelBackend, multiLevel } from '@cache/multi-level'
import { type RedisBackendOptions, redisBackend } from '@cache/redis'
import { type ManagedServer, type RedisServer, startMemcached, startRedis } from '@cache/test-servers'
import { describe, expect, it } from 'vitest'
import { HANDLER_MS, idInBody, mixedPaths, startApp } from './support/app.js'
import { sleep, timeUntil } from './support/bounded.js'
import { recordFigures } from './support/figures.js'
import { percentile, runLoad } from './support/load.js'

const LOAD_SECONDS = 8
const KILL_AT_MS = 1500
const OUTAGE_MS = 4000
const RATE = 300
const CONNECTIONS = 8
const OP_TIMEOUT_MS = 300

interface Remote {
  name: string
  process: ManagedServer
  /** A fresh backend on the remote server (same namespace as the chain's last level). */
  direct(): CacheBackend
  stop(): Promise<void>
}

interface Expectation {
  /** The restarted server still holds what it had before the kill (Redis AOF). */
  durable: boolean
  /** Bound on the time until the remote level is used again. */
  recoveryBarMs: number
  label: string
}

async function outageUnderLoad(remote: Remote, chain: MultiLevelBackend, expectation: Expectation) {
  const { durable, recoveryBarMs, label } = expectation
  const scenario = `outage: ${remote.name} (${label})`
  const app = await startApp(chain)
  const remoteLevel = () => chain.levelStats()[1]!
  try {
    const load = runLoad({
      url: app.url,
      nextPath: mixedPaths(1000),
      expectInBody: idInBody,
      seconds: LOAD_SECONDS,
      rate: RATE,
      connections: CONNECTIONS,
    })
    await chain.set('check:changed', 'before')
    await chain.set('check:deleted', 'before')
    await sleep(KILL_AT_MS)
    await remote.process.kill('SIGKILL')
    const downAt = performance.now()
    // Written while the remote level is down: these must win over what the server kept. The
    // remote level did not take them, so the chain reports it (and repairs the server later).
    const unshared = await Promise.all([
      chain.set('check:changed', 'during').catch((error: Error) => error.name),
      chain.delete('check:deleted').catch((error: Error) => error.name),
    ])
    expect(unshared).toEqual(['CacheUnavailableError', 'CacheUnavailableError'])
    const duringOutage = [await chain.get('check:changed'), await chain.get('check:deleted')]
    await sleep(OUTAGE_MS)
    await remote.process.start()
    const upAt = performance.now()
    const before = remoteLevel()
    // Each poll is one read through the chain, as the app's traffic would do even after the load
    // stops; the level counts as used again once its breaker is closed and it answered a read.
    let polls = 0
    const recoveryMs = await timeUntil(async () => {
      await chain.get(`poll:${polls++}`)
      const level = remoteLevel()
      return level.state === 'closed' && level.hits + level.misses > before.hits + before.misses
    }, 6_000).catch((error: Error) => {
      throw new Error(`${error.message}; remote level: ${JSON.stringify(remoteLevel())}`)
    })
    const result = await load
    const p99Outage = percentile(result.samples, 99, downAt, upAt)
    const p99All = percentile(result.samples, 99)
    const outageRequests = result.samples.filter((s) => s.at >= downAt && s.at < upAt).length

    const direct = remote.direct()
    const changed = await direct.get('check:changed')
    const deleted = await direct.get('check:deleted')
    await direct.close()

    const bar = OP_TIMEOUT_MS + HANDLER_MS
    recordFigures(
      { scenario, metric: 'requests sent', value: result.sent },
      { scenario, metric: 'requests during outage', value: outageRequests },
      {
        scenario,
        metric: 'failed (non-2xx, errors, timeouts)',
        value: result.failed,
        bar: '0',
        ok: result.failed === 0,
      },
      {
        scenario,
        metric: 'wrong bodies',
        value: result.wrongBodies,
        bar: '0',
        ok: result.wrongBodies === 0,
      },
      {
        scenario,
        metric: 'p99 latency during outage (ms)',
        value: p99Outage.toFixed(1),
        bar: `< ${bar}`,
        ok: p99Outage < bar,
      },
      { scenario, metric: 'p99 latency whole run (ms)', value: p99All.toFixed(1) },
      {
        scenario,
        metric: 'remote level: breaker opened / errors counted',
        value: `${remoteLevel().opened} / ${remoteLevel().errors}`,
      },
      {
        scenario,
        metric: 'remote level used again after restart (ms)',
        value: recoveryMs.toFixed(0),
        bar: `≤ ${recoveryBarMs}`,
        ok: recoveryMs <= recoveryBarMs,
      },
    )
    expect(result.sent).toBeGreaterThan(RATE * (LOAD_SECONDS - 1))
    expect(outageRequests).toBeGreaterThan(RATE * (OUTAGE_MS / 1000) * 0.8)
    // The outage was noticed (the breaker opened), not slept through.
    expect(remoteLevel().opened).toBeGreaterThanOrEqual(1)
    expect(result.failed).toBe(0)
    expect(result.wrongBodies).toBe(0)
    expect(p99Outage).toBeLessThan(bar)
    expect(recoveryMs).toBeLessThanOrEqual(recoveryBarMs)
    // What changed while the level was down never reappears from it.
    if (durable) expect(changed === undefined || changed === 'during').toBe(true)
    expect(deleted).toBeUndefined()
    // The new value or a miss while the remote level was down (a write it failed while still in
    // use leaves L1 without the key: it may have been applied; one after its breaker opened is
    // served from L1); afterwards the new value or a miss (L1 may have evicted it under load),
    // never the old one.
    expect(['during', undefined]).toContain(duringOutage[0])
    expect(duringOutage[1]).toBeUndefined()
    expect(['during', undefined]).toContain(await chain.get('check:changed'))
    expect(await chain.get('check:deleted')).toBeUndefined()
  } finally {
    await app.close()
    await chain.close()
    await remote.stop()
  }
}

/**
 * Tuned for the 1 s recovery target: Redis reconnects at most 500 ms apart (default 2 s) and the
 * breaker probes a failed level every 500 ms (default 1 s). Both are documented options.
 */
const FAST_RECOVERY = { breaker: { openFor: '500ms' } }

function redisRemote(server: RedisServer, options: RedisBackendOptions): Remote {
  return {
    name: 'redis',
    process: server.process!,
    direct: () => redisBackend(server.url, options),
    stop: () => server.stop(),
  }
}

/** Persistence on, so the restarted server still holds the values from before the kill. */
const durableRedis = () =>
  startRedis({ spawn: true, args: ['--appendonly', 'yes', '--appendfsync', 'always'] })

describe('a remote level killed and restarted under load', () => {
  it('memory → redis, tuned for fast recovery (durable AOF: old values survive the kill)', async () => {
    const server = await durableRedis()
    const options = { namespace: 'faults-outage', timeout: `${OP_TIMEOUT_MS}ms`, maxReconnectDelay: '500ms' }
    const chain = multiLevel({
      levels: [memoryBackend({ maxKeys: 200 }), redisBackend(server.url, options)],
      ...FAST_RECOVERY,
    })
    await outageUnderLoad(redisRemote(server, options), chain, {
      durable: true,
      recoveryBarMs: 1000,
      label: 'reconnect ≤ 500 ms, breaker 500 ms',
    })
  })

  it('memory → redis with every default (reconnect back-off up to 2 s, breaker 1 s)', async () => {
    const server = await durableRedis()
    const options = { namespace: 'faults-outage' }
    const chain = multiLevel(memoryBackend({ maxKeys: 200 }), redisBackend(server.url, options))
    await outageUnderLoad(redisRemote(server, options), chain, {
      durable: true,
      // Documented worst case: one reconnect delay (≤ 2 s) plus one breaker period (1 s).
      recoveryBarMs: 3000,
      label: 'defaults',
    })
  })

  it('memory → memcached, breaker 500 ms', async () => {
    const server = await startMemcached({ spawn: true })
    const options = { namespace: 'faults-outage', timeout: `${OP_TIMEOUT_MS}ms` }
    const chain = multiLevel({
      levels: [memoryBackend({ maxKeys: 200 }), memcachedBackend(server.server, options)],
      ...FAST_RECOVERY,
    })
    const remote: Remote = {
      name: 'memcached',
      process: server.process!,
      direct: () => memcachedBackend(server.server, options),
      stop: () => server.stop(),
    }
    await outageUnderLoad(remote, chain, { durable: false, recoveryBarMs: 1000, label: 'breaker 500 ms' })
  })
})
