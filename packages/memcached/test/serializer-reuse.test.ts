import { startMemcached } from '@cache/test-servers'
import { afterAll, describe, expect, it } from 'vitest'
import { memcachedBackend } from '../src/index.js'

const server = await startMemcached({ spawn: true })
afterAll(() => server.stop())

describe('a serializer that reuses its output buffer', () => {
  it('stores each key its own bytes when the writes of one tick leave together', async () => {
    const scratch = Buffer.alloc(1024)
    const cache = memcachedBackend(server.server, {
      namespace: 'reuse',
      serializer: {
        name: 'scratch-json',
        serialize: (value) => scratch.subarray(0, scratch.write(JSON.stringify(value))),
        deserialize: (bytes) => JSON.parse(bytes.toString()),
      },
    })
    try {
      await Promise.all([cache.set('user:1', { name: 'alice' }), cache.set('user:2', { name: 'bobby' })])
      await cache.setMany([
        { key: 'p', value: 'PPPP' },
        { key: 'q', value: 'QQQQ' },
      ])
      expect(await cache.getMany(['user:1', 'user:2', 'p', 'q'])).toEqual([
        { name: 'alice' },
        { name: 'bobby' },
        'PPPP',
        'QQQQ',
      ])
    } finally {
      await cache.close()
    }
  })
})
