import { CacheUnsupportedError, listKeys } from '@cache/core'
import { memoryBackend } from '@cache/memory'
import { mapBackend } from '@cache/testing'
import { redisBackend } from '@cache/redis'
import { type RedisServer, startRedis } from '@cache/test-servers'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { multiLevel } from '../src/index.js'

let redis: RedisServer
beforeAll(async () => {
  redis = await startRedis()
})
afterAll(async () => {
  await redis?.stop()
})

async function listAll(iterator: AsyncIterableIterator<string>): Promise<string[]> {
  const out: string[] = []
  for await (const key of iterator) out.push(key)
  return out.sort()
}

describe('keys() of a chain', () => {
  it('lists the shared level: keys another process wrote, not only those in this L1', async () => {
    const one = multiLevel(memoryBackend(), redisBackend(redis.url, { namespace: 'chain-list' }))
    const two = multiLevel(memoryBackend(), redisBackend(redis.url, { namespace: 'chain-list' }))
    try {
      // Connected first: on a loaded machine a first write could wait out its 300 ms for the connection.
      await Promise.all(
        [one, two].map((chain) => (chain.levels[1]!.backend as ReturnType<typeof redisBackend>).ready()),
      )
      await one.set('from-one', 1)
      await two.set('from-two', 2)
      await one.levels[0]!.backend.set('only-in-l1', 3)
      expect(await listAll(listKeys(one))).toEqual(['from-one', 'from-two'])
      await two.delete('from-one')
      expect(await listAll(listKeys(one, { prefix: 'from-' }))).toEqual(['from-two'])
    } finally {
      await Promise.all([one.close(), two.close()])
    }
  })

  it('cannot list when its last level cannot, even if a faster one could (it holds a subset)', async () => {
    const chain = multiLevel(memoryBackend(), mapBackend({ name: 'unlistable' }))
    await chain.set('a', 1)
    expect(chain.keys).toBeUndefined()
    expect(() => listKeys(chain)).toThrow(CacheUnsupportedError)
  })

  it('cannot list when no level can: listKeys() throws CacheUnsupportedError', () => {
    const chain = multiLevel(mapBackend({ name: 'unlistable' }), mapBackend({ name: 'unlistable' }))
    expect(chain.keys).toBeUndefined()
    expect(() => listKeys(chain)).toThrow(CacheUnsupportedError)
  })
})
