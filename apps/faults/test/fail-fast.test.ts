/**
 * A single remote backend whose server is dead (no multi-level in front): each operation fails
 * fast with `CacheUnavailableError` within its timeout, while the memoize wrapper and
 * `cacheResponse` turn the failure into a pass-through, so the app keeps answering.
 */
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { type CacheBackend, CacheUnavailableError, cached } from '@cache/core'
import { cacheResponse, noteArrivals } from '@cache/express'
import { memcachedBackend } from '@cache/memcached'
import { redisBackend } from '@cache/redis'
import { startMemcached, startRedis } from '@cache/test-servers'
import express from 'express'
import { describe, expect, it } from 'vitest'
import { outcome, timeUntil } from './support/bounded.js'
import { recordFigures } from './support/figures.js'

const TIMEOUT_MS = 300
const OPS = 20
const FROZEN_OPS = 10

interface Target {
  backend: CacheBackend
  /** The server's pid, to freeze it with SIGSTOP. */
  pid: number
  /** SIGSTOP, resolved once every thread of the server is stopped. */
  freeze(): Promise<void>
  kill(): Promise<void>
  stop(): Promise<void>
}

const targets: [string, () => Promise<Target>][] = [
  [
    'redis',
    async () => {
      const server = await startRedis({ spawn: true })
      const backend = redisBackend(server.url, { namespace: 'faults-fast', timeout: `${TIMEOUT_MS}ms` })
      return {
        backend,
        pid: server.process!.pid!,
        freeze: () => server.process!.freeze(),
        kill: () => server.process!.kill(),
        stop: () => server.stop(),
      }
    },
  ],
  [
    'memcached',
    async () => {
      const server = await startMemcached({ spawn: true })
      const backend = memcachedBackend(server.server, {
        namespace: 'faults-fast',
        timeout: `${TIMEOUT_MS}ms`,
      })
      return {
        backend,
        pid: server.process!.pid!,
        freeze: () => server.process!.freeze(),
        kill: () => server.process!.kill(),
        stop: () => server.stop(),
      }
    },
  ],
]

/** Runs `ops` in turn; each must reject with a CacheUnavailableError. The slowest, in ms. */
async function slowestFailure(backend: CacheBackend, count: number): Promise<number> {
  const ops: (() => Promise<unknown>)[] = [
    () => backend.get('k'),
    () => backend.set('k', 1),
    () => backend.incr('n'),
    () => backend.atomicUpdate('k', () => 2),
    () => backend.delete('k'),
  ]
  let worst = 0
  for (let i = 0; i < count; i++) {
    const started = performance.now()
    const result = await outcome(ops[i % ops.length]!, 5_000)
    worst = Math.max(worst, performance.now() - started)
    expect(result.ok).toBe(false)
    expect((result as { error: unknown }).error).toBeInstanceOf(CacheUnavailableError)
  }
  return worst
}

describe('a frozen server (SIGSTOP: connections open, no answers)', () => {
  it.each(targets)(
    '%s: ops time out within the op timeout, then work again after SIGCONT',
    async (name, setup) => {
      const { backend, pid, freeze, stop } = await setup()
      try {
        await backend.set('warm', 1)
        await freeze()
        let worst: number
        try {
          worst = await slowestFailure(backend, FROZEN_OPS)
        } finally {
          process.kill(pid, 'SIGCONT')
        }
        recordFigures({
          scenario: `frozen server: ${name}`,
          metric: `slowest of ${FROZEN_OPS} ops, each CacheUnavailableError (ms)`,
          value: worst.toFixed(1),
          bar: `≤ ${TIMEOUT_MS + 100}`,
          ok: worst <= TIMEOUT_MS + 100,
        })
        expect(worst).toBeLessThanOrEqual(TIMEOUT_MS + 100)
        // Operations that timed out may have been queued by the frozen server: wait until it
        // answers again. memcached ejected it and takes it back cleared for the namespace (writes
        // failed while it was frozen), so only Redis still has what was written before.
        await timeUntil(async () => {
          await backend.set('after', 'thaw')
          return (await backend.get('after')) === 'thaw'
        }, 5_000)
        if (name === 'redis') expect(await backend.get('warm')).toBe(1)
      } finally {
        await backend.close()
        await stop()
      }
    },
  )
})

describe('a dead server, no level in front of it', () => {
  it.each(targets)(
    '%s: ops fail fast and typed; memoize and cacheResponse pass through',
    async (name, setup) => {
      const { backend, kill, stop } = await setup()
      let server: Server | undefined
      try {
        await backend.set('warm', 1)
        await kill()
        const worst = await slowestFailure(backend, OPS)

        let calls = 0
        const square = cached(
          async (x: number) => {
            calls++
            return x * x
          },
          { backend, name: 'square', ttl: 60 },
        )
        expect(await square(7)).toBe(49)
        expect(await square(7)).toBe(49)
        expect(calls).toBe(2)

        const app = express()
        app.get('/r', cacheResponse({ ttl: 60, backend }), (_req, res) => {
          res.json({ ok: true })
        })
        server = await new Promise<Server>((resolve) => {
          const s = noteArrivals(app.listen(0, '127.0.0.1', () => resolve(s)))
        })
        const { port } = server.address() as AddressInfo
        const started = performance.now()
        const reply = await fetch(`http://127.0.0.1:${port}/r`, { signal: AbortSignal.timeout(5_000) })
        const httpMs = performance.now() - started
        expect(reply.status).toBe(200)
        expect(await reply.json()).toEqual({ ok: true })

        recordFigures(
          {
            scenario: `dead server: ${name}`,
            metric: `slowest of ${OPS} ops, each CacheUnavailableError (ms)`,
            value: worst.toFixed(1),
            bar: `≤ ${TIMEOUT_MS + 100}`,
            ok: worst <= TIMEOUT_MS + 100,
          },
          {
            scenario: `dead server: ${name}`,
            metric: 'cacheResponse pass-through request (ms)',
            value: httpMs.toFixed(1),
            bar: `≤ ${2 * TIMEOUT_MS + 100}`,
            ok: httpMs <= 2 * TIMEOUT_MS + 100,
          },
        )
        // Bounded by the op timeout (plus scheduling slack on a shared machine), never a hang.
        expect(worst).toBeLessThanOrEqual(TIMEOUT_MS + 100)
        expect(httpMs).toBeLessThanOrEqual(2 * TIMEOUT_MS + 100)
      } finally {
        server?.closeAllConnections()
        server?.close()
        await backend.close()
        await stop()
      }
    },
  )
})
