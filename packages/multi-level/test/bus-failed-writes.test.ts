import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { cached, defineBackend } from '@cache/core'
import { memoryBackend } from '@cache/memory'
import { redisBackend } from '@cache/redis'
import { type RedisServer, startRedis } from '@cache/test-servers'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type MultiLevelBackend, multiLevel, redisBus } from '../src/index.js'

/*
 * A write the shared level failed (a timeout: Redis froze once, shorter than anything the bus
 * notices) may still have been applied when Redis resumes. The other processes must be told, as
 * for incr: otherwise one keeps serving from its memory what Redis no longer holds.
 */
describe('a chain write that failed on Redis but may have been applied', () => {
  let server: RedisServer
  beforeAll(async () => {
    server = await startRedis({ spawn: true })
  })
  afterAll(async () => {
    await server?.stop()
  })

  /** A process's chain: its own memory level and bus (two of them stand for two processes). */
  function peer(stateTtl?: string): { chain: MultiLevelBackend; ready: Promise<void> } {
    const bus = redisBus(server.url, { logger: false })
    const chain = multiLevel({
      levels: [
        memoryBackend(),
        redisBackend(server.url, { namespace: 'told', timeout: '200ms', logger: false }),
      ],
      bus,
      stateTtl,
      logger: false,
    })
    return { chain, ready: bus.ready() }
  }

  /** What `read` answers once it stops being `stale`, or after `ms` (b's copies live far longer). */
  async function settledRead(read: () => Promise<unknown>, stale: unknown, ms = 2000): Promise<unknown> {
    const deadline = Date.now() + ms
    let value = await read()
    while (value === stale && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50))
      value = await read()
    }
    return value
  }

  it('a process that exits on the failure has told the others before its write rejected', async () => {
    const writer = spawn(
      process.execPath,
      [fileURLToPath(new URL('./fixtures/failed-write-exit.mjs', import.meta.url)), server.url, 'told'],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    )
    const exited = new Promise<number | null>((resolve) => writer.once('exit', resolve))
    const { chain: b, ready: bReady } = peer()
    try {
      await new Promise((resolve) => writer.stdout!.once('data', resolve))
      await bReady
      await b.set('session', 'alice', 600)
      await new Promise((resolve) => setTimeout(resolve, 200))
      expect(await b.get('session')).toBe('alice')
      expect(await b.levels[0]!.backend.get('session')).toBe('alice')
      await server.process!.freeze()
      writer.stdin!.write('delete session\n')
      // The delete times out (200 ms) and the process exits on the error, Redis still frozen.
      expect(await exited).toBe(1)
      server.process!.thaw()
      // Before: its message was still queued (sent 1 ms later) when it exited: b served 'alice'
      // until the bus noticed the writer's silence, seconds later.
      expect(await settledRead(() => b.get('session'), 'alice')).toBeUndefined()
    } finally {
      server.process!.thaw()
      writer.kill('SIGKILL')
      await b.close()
    }
  })

  it('a tag invalidation that failed once (breaker closed) is told before it rejects: the others stop serving results from before it', async () => {
    const writer = spawn(
      process.execPath,
      [fileURLToPath(new URL('./fixtures/failed-write-exit.mjs', import.meta.url)), server.url, 'told'],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    )
    const exited = new Promise<number | null>((resolve) => writer.once('exit', resolve))
    // b keeps its copy of the generations for 20 s: only a message makes it drop them sooner.
    const { chain: b, ready: bReady } = peer('20s')
    let calls = 0
    const lookup = cached(async (_id: number) => `result#${++calls}`, {
      backend: b,
      name: 'lookup',
      tags: ['told-tag'],
      ttl: '1h',
    })
    try {
      await new Promise((resolve) => writer.stdout!.once('data', resolve))
      await bReady
      expect(await lookup(1)).toBe('result#1')
      expect(await lookup(1)).toBe('result#1')
      await server.process!.freeze()
      writer.stdin!.write('invalidate told-tag\n')
      // One timeout (200 ms), not enough to open the breaker (3): the process exits on the error,
      // Redis still frozen, and never repairs the generation itself.
      expect(await exited).toBe(1)
      server.process!.thaw()
      // Before: nothing was published; b served result#1 for its stateTtl (or until the bus
      // noticed the writer's silence, seconds later).
      expect(await settledRead(() => lookup(1), 'result#1', 1000)).toBe('result#2')
    } finally {
      server.process!.thaw()
      writer.kill('SIGKILL')
      await b.close()
    }
  })

  it.each([
    ['delete', (chain: MultiLevelBackend) => chain.delete('session')],
    ['set', (chain: MultiLevelBackend) => chain.set('session', 'bob', 600)],
    ['setMany', (chain: MultiLevelBackend) => chain.setMany([{ key: 'session', value: 'bob', ttl: 600 }])],
    ['deleteMany', (chain: MultiLevelBackend) => chain.deleteMany(['session'])],
  ] as const)('%s: the other process stops serving its copy once Redis is back', async (_name, write) => {
    const { chain: a, ready: aReady } = peer()
    const { chain: b, ready: bReady } = peer()
    try {
      await Promise.all([aReady, bReady])
      await a.set('session', 'alice', 600)
      // Once a's message has reached b (it drops b's copy), b reads it into its memory level.
      await new Promise((resolve) => setTimeout(resolve, 200))
      expect(await b.get('session')).toBe('alice')
      expect(await b.levels[0]!.backend.get('session')).toBe('alice')
      await server.process!.freeze()
      const failed = write(a).then(
        () => undefined,
        (error: unknown) => error,
      )
      await new Promise((resolve) => setTimeout(resolve, 350))
      server.process!.thaw()
      expect(await failed).toBeInstanceOf(Error)
      // Redis ran the write as it resumed (and a's repair may have deleted the key since): b
      // answers what Redis holds, not the 'alice' it kept.
      const answered = await settledRead(() => b.get('session'), 'alice')
      expect(answered).toBe(await b.levels[1]!.backend.get('session'))
      expect(answered).not.toBe('alice')
    } finally {
      server.process!.thaw()
      await Promise.all([a.close(), b.close()])
    }
  })
})

describe('a chain with a bus over a chain of several levels', () => {
  let server: RedisServer
  beforeAll(async () => {
    server = await startRedis({ spawn: true })
  })
  afterAll(async () => {
    await server?.stop()
  })

  it("drops from its own faster levels what the inner chain's bus drops from the inner chain's", async () => {
    // r67: the outer L1 copied a value from the inner L1 that the inner bus was about to evict
    // (its message later than the outer bus's, or its link down and resynced): the inner chain
    // dropped it, the outer L1 served it on. Two processes' chains, in one process: the writer's
    // inner chain publishes on the inner bus only.
    const inner = (bus: ReturnType<typeof redisBus>) =>
      multiLevel({
        levels: [memoryBackend(), redisBackend(server.url, { namespace: 'nested-drop', logger: false })],
        bus,
        logger: false,
      })
    const readerInnerBus = redisBus(server.url, { channel: 'inner', logger: false })
    const readerOuterBus = redisBus(server.url, { channel: 'outer', logger: false })
    const writerBus = redisBus(server.url, { channel: 'inner', logger: false })
    const readerInner = inner(readerInnerBus)
    const outerL1 = memoryBackend()
    const reader = multiLevel({ levels: [outerL1, readerInner], bus: readerOuterBus, logger: false })
    const writer = inner(writerBus)
    // The first value is put in Redis directly: a message of its own, arriving after the read
    // below, would drop the copy this test then looks for.
    const direct = redisBackend(server.url, { namespace: 'nested-drop', logger: false })
    try {
      await Promise.all([readerInnerBus.ready(), readerOuterBus.ready(), writerBus.ready()])
      await direct.set('k', 'v1')
      expect(await reader.get('k')).toBe('v1')
      expect(await outerL1.get('k')).toBe('v1')
      await writer.set('k', 'v2')
      const deadline = Date.now() + 2000
      while ((await readerInner.levels[0]!.backend.get('k')) !== undefined && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 10))
      // Before: the outer L1 kept v1 until its TTL.
      expect(await outerL1.get('k')).toBeUndefined()
      expect(await reader.get('k')).toBe('v2')
      // Messages the inner bus may have lost (a resync): the outer L1 forgets everything too.
      expect(await reader.get('k')).toBe('v2')
      expect(await outerL1.get('k')).toBe('v2')
      await writer.clear()
      const cleared = Date.now() + 2000
      while ((await outerL1.get('k')) !== undefined && Date.now() < cleared)
        await new Promise((resolve) => setTimeout(resolve, 10))
      expect(await outerL1.get('k')).toBeUndefined()
    } finally {
      await reader.close()
      await writer.close()
      await direct.close()
      await Promise.all([readerInnerBus.close(), readerOuterBus.close(), writerBus.close()])
    }
  })

  it("is refused when the inner chain has no bus: the outer bus never evicts the inner chain's faster levels", async () => {
    const bus = redisBus(server.url, { logger: false })
    const inner = multiLevel(
      memoryBackend(),
      redisBackend(server.url, { namespace: 'nested', logger: false }),
    )
    // Before: accepted, and another process's set left the old value in the inner memory level.
    expect(() => multiLevel({ levels: [memoryBackend(), inner], bus, logger: false })).toThrow(
      /bus: a level is \(or wraps\) a chain of 2 levels without a bus/,
    )
    // Wrapped (defineBackend, to add a timeout) or nested once more (a chain of one level): the
    // same chain under it. Before: accepted, and the inner memory level kept replaced values.
    expect(() =>
      multiLevel({
        levels: [memoryBackend(), defineBackend(inner, { timeout: '200ms' })],
        bus,
        logger: false,
      }),
    ).toThrow(/bus: a level is \(or wraps\) a chain of 2 levels without a bus/)
    expect(() => multiLevel({ levels: [memoryBackend(), multiLevel(inner)], bus, logger: false })).toThrow(
      /bus: a level is \(or wraps\) a chain of 2 levels without a bus/,
    )
    // One memory level as the faster level of two open chains: refused (r65: the second chain
    // answered with what the first wrote under another namespace).
    const l1 = memoryBackend()
    const tenantA = multiLevel({
      levels: [l1, redisBackend(server.url, { namespace: 'tenant-a', logger: false })],
    })
    const tenantB = redisBackend(server.url, { namespace: 'tenant-b', logger: false })
    expect(() => multiLevel(l1, tenantB)).toThrow(
      /the memory level is already a faster level of another chain/,
    )
    await tenantB.close()
    await tenantA.close()
    // With the bus on the inner chain too, or in one flat chain: accepted.
    const innerBus = redisBus(server.url, { logger: false })
    const told = multiLevel({
      levels: [memoryBackend(), redisBackend(server.url, { namespace: 'nested', logger: false })],
      bus: innerBus,
      logger: false,
    })
    const outer = multiLevel({ levels: [memoryBackend(), told], bus, logger: false })
    await outer.set('k', 1)
    expect(await outer.get('k')).toBe(1)
    await outer.close()
    await inner.close()
    await Promise.all([bus.close(), innerBus.close()])
  })
})
