/**
 * The invalidation bus between real processes, each running multiLevel(memory, redis) with
 * `redisBus`: how long after a write resolves in one process the others stop serving the old
 * value from L1 (the staleness window), and how long a reader behind a black-holed link keeps
 * serving a value another process changed.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { type RedisServer, startFaultProxy, startRedis } from '@cache/test-servers'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { sleep, timeUntil, within } from './support/bounded.js'
import { recordFigures } from './support/figures.js'

const SCRIPT = join(dirname(fileURLToPath(import.meta.url)), '..', 'scripts', 'bus-peer.mjs')

interface Peer {
  call<T = unknown>(op: string, args?: Record<string, unknown>): Promise<T>
  child: ChildProcess
}

const peers: Peer[] = []

async function startPeer(config: Record<string, unknown>): Promise<Peer> {
  const child = spawn(process.execPath, [SCRIPT, JSON.stringify(config)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  const waiting = new Map<number, (reply: { result?: unknown; error?: string }) => void>()
  let next = 0
  const started = new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`bus peer exited with ${code}`)))
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const reply = JSON.parse(line)
      if (reply.ready) return resolve()
      waiting.get(reply.id)?.(reply)
      waiting.delete(reply.id)
    })
  })
  const peer: Peer = {
    child,
    call: (op, args = {}) =>
      within(
        20_000,
        new Promise((resolve, reject) => {
          const id = ++next
          waiting.set(id, (reply) =>
            reply.error ? reject(new Error(reply.error)) : resolve(reply.result as never),
          )
          child.stdin!.write(`${JSON.stringify({ id, op, ...args })}\n`)
        }),
        `bus peer ${op}`,
      ),
  }
  peers.push(peer)
  await within(15_000, started, 'bus peer start')
  return peer
}

let redis: RedisServer
beforeAll(async () => {
  redis = await startRedis({ spawn: true })
})
afterAll(async () => {
  await Promise.allSettled(peers.map((peer) => peer.call('close')))
  for (const peer of peers) peer.child.kill()
  await redis?.stop()
})

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!
}

describe('the invalidation bus between processes', () => {
  it('evicts a written key from 3 other processes’ L1: staleness window p99', async () => {
    const namespace = `stale${Date.now()}`
    const config = { l2: redis.url, bus: redis.url, namespace }
    const [writer, ...readers] = await Promise.all([0, 1, 2, 3].map(() => startPeer(config)))
    const keys = Array.from({ length: 300 }, (_, i) => `item:${i}`)
    await writer!.call('write', { keys, value: 'v0' })
    await sleep(300) // the v0 messages have reached everyone
    for (const reader of readers)
      expect(await reader.call<string[]>('prime', { keys })).toHaveLength(keys.length)

    const written = await writer!.call<Record<string, number>>('write', { keys, value: 'v1', paceMs: 3 })
    await sleep(500)
    const windows: number[] = []
    let missed = 0
    for (const reader of readers) {
      const evicted = await reader.call<Record<string, number>>('evictions')
      for (const key of keys) {
        if (evicted[key] === undefined) missed++
        else windows.push(evicted[key]! - written[key]!)
      }
      // And the value read now is the new one.
      expect(await reader.call('get', { key: keys.at(-1) })).toBe('v1')
    }
    const p50 = percentile(windows, 50)
    const p99 = percentile(windows, 99)
    const max = Math.max(...windows)
    recordFigures(
      {
        scenario: 'bus: 1 writer, 3 reader processes, 300 paced writes',
        metric: 'evictions missed',
        value: `${missed} of ${keys.length * readers.length}`,
        bar: '0',
        ok: missed === 0,
      },
      {
        scenario: 'bus: 1 writer, 3 reader processes, 300 paced writes',
        metric: 'staleness after the write resolved (p50 / p99 / max)',
        value: `${p50.toFixed(1)} / ${p99.toFixed(1)} / ${max.toFixed(1)} ms`,
        bar: 'p99 < 50 ms',
        ok: p99 < 50,
      },
    )
    expect(missed).toBe(0)
    expect(p99).toBeLessThan(250)
  })

  it('a reader behind a black-holed link stops serving a changed value within 2 × heartbeat', async () => {
    const proxy = await startFaultProxy({ port: redis.port })
    try {
      const namespace = `silent${Date.now()}`
      const writer = await startPeer({ l2: redis.url, bus: redis.url, namespace })
      const reader = await startPeer({ l2: redis.url, bus: `redis://127.0.0.1:${proxy.port}`, namespace })
      await writer.call('write', { keys: ['k'], value: 'v1' })
      await sleep(100)
      expect(await reader.call('get', { key: 'k' })).toBe('v1')
      expect(await reader.call('inL1', { key: 'k' })).toBe(true)

      proxy.setMode('blackhole')
      await writer.call('write', { keys: ['k'], value: 'v2' })
      const staleMs = await timeUntil(async () => (await reader.call('get', { key: 'k' })) === 'v2', 5000)
      const { linkDowns } = await reader.call<{ linkDowns: number[] }>('stats')
      proxy.setMode('pass')
      const recoveredMs = await timeUntil(
        async () => (await reader.call<{ state: string }>('stats')).state === 'up',
        10_000,
      )
      recordFigures(
        {
          scenario: 'bus: reader’s link black-holed (heartbeat 1 s)',
          metric: 'old value served for',
          value: `${staleMs.toFixed(0)} ms`,
          bar: '≤ 2 × heartbeat (was: until the L1 TTL)',
          ok: staleMs <= 2000 + 300,
        },
        {
          scenario: 'bus: reader’s link black-holed (heartbeat 1 s)',
          metric: 'bus up again after the link passes',
          value: `${recoveredMs.toFixed(0)} ms`,
          bar: '≤ 5 × heartbeat',
          ok: recoveredMs <= 5000,
        },
      )
      expect(linkDowns).toHaveLength(1)
      expect(staleMs).toBeLessThan(2000 + 1000)
    } finally {
      await proxy.close()
    }
  })
})
