/**
 * A write's TTL counts from the call on every level: the faster levels, written once the shared
 * one answered, get what is left of it, not all of it again. A shared disk level answers late
 * while another process holds its write lock (a large batch, a prune); the entry must not then
 * be served from memory past the expiry the caller asked for.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { diskBackend } from '@cache/disk'
import { memoryBackend } from '@cache/memory'
import { redisBackend } from '@cache/redis'
import { type RedisServer, startRedis } from '@cache/test-servers'
import Database from 'better-sqlite3'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { multiLevel } from '../src/index.js'

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const LOCK_HELD_MS = 400
const TTL_MS = 300

describe('a write answered late by the shared level', () => {
  let dir: string
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'cache-write-ttl-'))
  })
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true })
  })

  /** The chain, its memory level, and a function that holds the disk's write lock for a while. */
  async function chainWithLockedDisk() {
    const memory = memoryBackend()
    const disk = diskBackend({ path: dir, lockTimeout: '5s', logger: false })
    const chain = multiLevel({ levels: [memory, disk], logger: false })
    await chain.set('warm', 1) // the database exists before another connection opens it
    const holdLock = () => {
      const other = new Database(join(dir, 'cache.db'))
      other.prepare('BEGIN IMMEDIATE').run()
      setTimeout(() => {
        other.prepare('COMMIT').run()
        other.close()
      }, LOCK_HELD_MS)
    }
    return { chain, memory, holdLock }
  }

  const writes = [
    ['set', (chain: ReturnType<typeof multiLevel>) => chain.set('price', 'old price', TTL_MS / 1000)],
    ['add', (chain: ReturnType<typeof multiLevel>) => chain.add('price', 'old price', `${TTL_MS}ms`)],
    [
      'setMany',
      (chain: ReturnType<typeof multiLevel>) =>
        chain.setMany([
          { key: 'price', value: 'old price', ttl: TTL_MS / 1000 },
          { key: 'stock', value: 'no expiry' },
        ]),
    ],
  ] as const

  for (const [name, write] of writes) {
    it(`${name}: the memory level expires the entry when the caller asked, not a lock wait later`, async () => {
      const { chain, memory, holdLock } = await chainWithLockedDisk()
      try {
        holdLock()
        const latest = Date.now() + TTL_MS
        await write(chain)
        // The write waited for the lock: it was answered after the TTL had run out.
        expect(Date.now()).toBeGreaterThan(latest)
        // Neither level holds a live copy now; before, memory kept it for the whole TTL again.
        expect(await memory.get('price')).toBeUndefined()
        expect(await chain.get('price')).toBeUndefined()
        if (name === 'setMany') expect(await chain.get('stock')).toBe('no expiry')
      } finally {
        await chain.close()
      }
    })
  }

  it('gives the memory level what is left of the TTL, so its expiry is the one the caller asked for', async () => {
    const { chain, memory, holdLock } = await chainWithLockedDisk()
    try {
      holdLock()
      const latest = Date.now() + 2000
      await chain.set('quote', 'price at 10:00', 2)
      const entry = await memory.getEntry('quote')
      expect(entry?.value).toBe('price at 10:00')
      // Before: the memory level's expiry was counted from the disk's answer, ~400 ms later.
      expect(entry!.expiresAt!).toBeLessThanOrEqual(latest + 1)
      expect((await chain.getEntry('quote'))!.expiresAt!).toBeLessThanOrEqual(latest + 1)
    } finally {
      await chain.close()
    }
  })
})

describe("a write without a TTL: the shared level's defaultTtl", () => {
  let dir: string
  let redis: RedisServer
  beforeAll(async () => {
    redis = await startRedis()
  })
  afterAll(async () => {
    await redis?.stop()
  })
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'cache-write-default-ttl-'))
  })
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true })
  })

  const shared = [
    ['disk', () => diskBackend({ path: dir, defaultTtl: '300ms', logger: false })],
    [
      'redis',
      () =>
        redisBackend(redis.url, {
          namespace: `default-ttl-${Date.now()}`,
          defaultTtl: '300ms',
          logger: false,
        }),
    ],
  ] as const
  const writes = [
    ['set', (chain: ReturnType<typeof multiLevel>) => chain.set('session', 'token')],
    ['add', (chain: ReturnType<typeof multiLevel>) => chain.add('session', 'token')],
    [
      'setMany',
      (chain: ReturnType<typeof multiLevel>) => chain.setMany([{ key: 'session', value: 'token' }]),
    ],
  ] as const

  for (const [level, make] of shared)
    for (const [name, write] of writes) {
      it(`${name} over ${level}: a faster level with no default of its own keeps the entry no longer than the shared level`, async () => {
        const memory = memoryBackend()
        const sharedLevel = make()
        // Connected first: the TTL is what is measured, not a first write waiting for its connection.
        await (sharedLevel as { ready?: () => Promise<void> }).ready?.()
        const chain = multiLevel({ levels: [memory, sharedLevel], logger: false })
        try {
          await write(chain)
          expect(await memory.get('session')).toBe('token')
          await sleep(450)
          // Before: served from memory for good, after the shared level had expired it.
          expect(await chain.get('session')).toBeUndefined()
          expect(await memory.get('session')).toBeUndefined()
        } finally {
          await chain.close()
        }
      })
    }

  it('a faster level with the same defaultTtl, written after a slow shared write: its copy expires with the shared one, counted from the call', async () => {
    const memory = memoryBackend({ defaultTtl: '300ms' })
    const disk = diskBackend({ path: dir, defaultTtl: '300ms', lockTimeout: '5s', logger: false })
    const chain = multiLevel({ levels: [memory, disk], logger: false })
    try {
      await chain.set('warm', 1)
      const other = new Database(join(dir, 'cache.db'))
      other.prepare('BEGIN IMMEDIATE').run()
      setTimeout(() => {
        other.prepare('COMMIT').run()
        other.close()
      }, 400)
      const start = Date.now()
      await chain.set('session', 'token') // waits for the lock: memory is written ~400 ms after the call
      await sleep(Math.max(0, start + 450 - Date.now()))
      // Before: memory counted its own 300 ms from its late write, and served it until ~+700 ms.
      expect(await memory.get('session')).toBeUndefined()
      expect(await chain.get('session')).toBeUndefined()
    } finally {
      await chain.close()
    }
  })

  it("a faster level's own shorter defaultTtl still applies; a longer one gives way to the shared level's", async () => {
    const short = memoryBackend({ defaultTtl: '100ms' })
    const long = memoryBackend({ defaultTtl: '1h' })
    const chain = multiLevel({
      levels: [short, long, diskBackend({ path: dir, defaultTtl: '300ms', logger: false })],
      logger: false,
    })
    try {
      await chain.set('session', 'token')
      await sleep(150)
      expect(await short.get('session')).toBeUndefined()
      expect(await long.get('session')).toBe('token')
      await sleep(300)
      expect(await long.get('session')).toBeUndefined()
    } finally {
      await chain.close()
    }
  })
})
