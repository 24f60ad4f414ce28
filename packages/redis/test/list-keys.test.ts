import { listKeys } from '@cache/core'
import { type RedisServer, startRedis } from '@cache/test-servers'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { redisBackend } from '../src/index.js'

let server: RedisServer
let raw: Redis
beforeAll(async () => {
  server = await startRedis()
  raw = new Redis(server.url)
})
afterAll(async () => {
  raw?.disconnect()
  await server?.stop()
})

async function listAll(iterator: AsyncIterableIterator<string>): Promise<string[]> {
  const out: string[] = []
  for await (const key of iterator) out.push(key)
  return out.sort()
}

describe('keys() on one Redis server', () => {
  it('matches a namespace with glob characters literally', async () => {
    const glob = redisBackend(server.url, { namespace: 'n*[s]?' })
    const plain = redisBackend(server.url, { namespace: 'nX[s]?' })
    const other = redisBackend(server.url, { namespace: 'nXsY' })
    try {
      await glob.set('a', 1)
      await plain.set('b', 2)
      await other.set('c', 3)
      expect(await listAll(listKeys(glob))).toEqual(['a'])
      expect(await listAll(listKeys(plain))).toEqual(['b'])
    } finally {
      await Promise.all([glob.close(), plain.close(), other.close()])
    }
  })

  it('without a namespace lists the database, but not the outcome records of incr', async () => {
    await raw.flushdb()
    const cache = redisBackend(server.url, { namespace: '' })
    try {
      await cache.set('plain', 1)
      await cache.incr('counter')
      await cache.atomicUpdate<number>('updated', (n) => (n ?? 0) + 1)
      expect((await raw.keys('~op~*')).length).toBeGreaterThan(0)
      expect(await listAll(listKeys(cache))).toEqual(['counter', 'plain', 'updated'])
    } finally {
      await cache.close()
    }
  })

  it('skips keys of its namespace that no string key maps to (bytes that are not UTF-8)', async () => {
    const cache = redisBackend(server.url, { namespace: 'bytes' })
    try {
      await cache.set('mine', 1)
      await raw.set(Buffer.concat([Buffer.from('bytes:'), Buffer.from([0xff, 0xfe])]), 'foreign')
      expect(await listAll(listKeys(cache))).toEqual(['mine'])
    } finally {
      await cache.close()
    }
  })
})
