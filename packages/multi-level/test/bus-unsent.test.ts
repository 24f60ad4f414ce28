import { CacheUnavailableError } from '@cache/core'
import { memoryBackend } from '@cache/memory'
import { redisBackend } from '@cache/redis'
import { type RedisServer, recorder, startRedis } from '@cache/test-servers'
import { Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { multiLevel, redisBus } from '../src/index.js'
import { type Peer as BusPeer, sleep, within } from './bus-peers.js'

/**
 * A bus whose PUBLISH cannot leave the process while its other connections work: Redis is at
 * `maxclients` when the bus's publisher connection drops, so it cannot reconnect (the chain's data
 * connection and the bus's subscriber, already connected, go on working).
 */
let redis: RedisServer
let admin: Redis
beforeAll(async () => {
  // Its own server: the tests lower maxclients.
  redis = await startRedis({ spawn: true })
  admin = new Redis(redis.url)
})
afterAll(async () => {
  admin?.disconnect()
  await redis?.stop()
})

const closing: { close(): Promise<unknown> }[] = []
afterEach(async () => {
  await admin.config('SET', 'maxclients', '10000')
  for (const item of closing.splice(0)) await item.close()
})

interface Peer extends BusPeer {
  logged: string[]
}

const HEARTBEAT_MS = 200
const PUBLISH_TIMEOUT_MS = 200

/** A chain memory → redis with its own bus (connections named `name`): one process's view. */
function peer(name: string, namespace: string): Peer {
  const logger = recorder()
  const bus = redisBus(redis.url, {
    heartbeat: `${HEARTBEAT_MS}ms`,
    publishTimeout: `${PUBLISH_TIMEOUT_MS}ms`,
    logger,
    redisOptions: { connectionName: name },
  })
  const l1 = memoryBackend({ namespace })
  const cache = multiLevel({ levels: [l1, redisBackend(redis.url, { namespace })], bus, logger: false })
  cache.on('error', () => {})
  closing.push(cache, bus)
  return { cache, l1, bus, logged: logger.lines }
}

/**
 * Drops the publisher connection of the bus named `name` with Redis one connection short of
 * taking it back: every other connection already open goes on working.
 */
async function cutPublisher(name: string): Promise<void> {
  const clients = (await admin.client('LIST')) as string
  const lines = clients.trim().split('\n')
  const publisher = lines.find((line) => line.includes(` name=${name} `) && / cmd=publish\b/.test(line))
  const id = publisher?.match(/\bid=(\d+)/)?.[1]
  expect(id).toBeDefined()
  await admin.config('SET', 'maxclients', String(lines.length - 1))
  await admin.client('KILL', 'ID', id!)
}

describe('a bus whose PUBLISH cannot be sent (its publisher cannot reconnect)', () => {
  it('goes down with a link-down event and one log line, and the other process stops serving what its writes replaced', async () => {
    const namespace = `unsent${Date.now()}`
    const a = peer('bus-a', namespace)
    const b = peer('bus-b', namespace)
    await Promise.all([a.bus.ready(), b.bus.ready()])
    const downs: string[] = []
    a.bus.on('link-down', (event) => downs.push(event.reason ?? ''))
    await a.cache.set('k', 'v1')
    await a.bus.flush()
    await sleep(100)
    expect(await b.cache.get('k')).toBe('v1')

    await cutPublisher('bus-a')
    // The write itself succeeds on Redis; its message cannot leave.
    await a.cache.set('k', 'v2')
    expect(
      await within(HEARTBEAT_MS + 2 * PUBLISH_TIMEOUT_MS + 500, () => a.bus.state === 'down'),
    ).toBeGreaterThanOrEqual(0)
    expect(a.bus.stats.linkDowns).toBe(1)
    expect(downs).toEqual([expect.stringMatching(/could not be sent/)])

    // Long after a fell silent for b: b has read v2 from Redis since, and a replaces it.
    await sleep(6 * HEARTBEAT_MS)
    expect(await b.cache.get('k')).toBe('v2')
    await a.cache.set('k', 'v3')
    const noticed = await within(
      2 * HEARTBEAT_MS + PUBLISH_TIMEOUT_MS + 300,
      async () => (await b.cache.get('k')) === 'v3',
    )
    expect(noticed).toBeGreaterThanOrEqual(0)
    // ... and while a cannot send, b keeps serving what Redis holds, not an older copy.
    await a.cache.set('k', 'v4')
    expect(
      await within(2 * HEARTBEAT_MS + 300, async () => (await b.cache.get('k')) === 'v4'),
    ).toBeGreaterThanOrEqual(0)
    expect(a.bus.state).toBe('down')
    expect(a.bus.stats.linkDowns).toBe(1)
    expect(a.logged.filter((line) => /is down/.test(line))).toHaveLength(1)

    // Redis takes connections again: a's link is back, and the bus works as before.
    await admin.config('SET', 'maxclients', '10000')
    expect(await within(5000, () => a.bus.state === 'up')).toBeGreaterThanOrEqual(0)
    expect(a.logged.filter((line) => /is back\.$/.test(line))).toHaveLength(1)
    // b empties its L1 once more on a's gap notice (and until its next count of the mute channel),
    // then keeps its copies again.
    const keeps = await within(3000, async () => {
      if ((await b.cache.get('k')) !== 'v4') return false
      await sleep(2 * HEARTBEAT_MS + 50)
      return b.l1.sync!.getEntry('k') !== undefined
    })
    expect(keeps).toBeGreaterThanOrEqual(0)
    await a.cache.set('k', 'v5')
    expect(await within(2000, () => b.l1.sync!.getEntry('k') === undefined)).toBeGreaterThanOrEqual(0)
    expect(await b.cache.get('k')).toBe('v5')
  })

  it('flush() rejects, naming the messages it could not send, and close() reports what it could not send', async () => {
    const namespace = `flush${Date.now()}`
    const a = peer('bus-c', namespace)
    await a.bus.ready()
    await a.cache.set('warm', 1)
    await a.bus.flush()
    await sleep(100)

    await cutPublisher('bus-c')
    await a.cache.set('k', 'new')
    const flushed = a.bus.flush()
    await expect(flushed).rejects.toBeInstanceOf(CacheUnavailableError)
    await expect(flushed).rejects.toThrow(/1 message\(s\).*not sent/)

    // A flush waits for what was queued before it only: nothing queued, nothing to fail.
    await expect(a.bus.flush()).resolves.toBeUndefined()

    // A message that failed before flush() was called, reported to no flush yet: the next one
    // rejects, once; the one after it has nothing left to tell.
    const failures = a.bus.stats.publishFailures
    await a.cache.set('k', 'late')
    expect(await within(2000, () => a.bus.stats.publishFailures > failures)).toBeGreaterThanOrEqual(0)
    await expect(a.bus.flush()).rejects.toThrow(/1 message\(s\).*not sent/)
    await expect(a.bus.flush()).resolves.toBeUndefined()

    const errors: (string | undefined)[] = []
    a.bus.on('error', (event) => errors.push(event.operation))
    await a.cache.set('k', 'newer')
    await a.bus.close()
    expect(errors).toContain('close')
    expect(a.logged.filter((line) => /closed with 1 message\(s\) not sent/.test(line))).toHaveLength(1)
  })
})
