import { CacheValueTooLargeError } from '@cache/core'
import { memcachedBackend } from '@cache/memcached'
import { memoryBackend } from '@cache/memory'
import { startMemcached } from '@cache/test-servers'
import { afterAll, describe, expect, it } from 'vitest'
import { multiLevel } from '../src/index.js'

// Its own memcached, with a smaller item limit than memcached's backend lets through by default.
const server = await startMemcached({ spawn: true, maxItemSize: '512k' })
afterAll(() => server.stop())

const BIG = 'x'.repeat(600_000)

describe('multiLevel(memory, memcached -I 512k): a write the shared level refuses as too large', () => {
  it('leaves every process reading the value it had: L1 copies and memcached agree', async () => {
    const namespace = `refusal${Date.now()}`
    const sharedA = memcachedBackend(server.server, { namespace, logger: false })
    const sharedB = memcachedBackend(server.server, { namespace, logger: false })
    const l1A = memoryBackend()
    const a = multiLevel({ levels: [l1A, sharedA], logger: false })
    const b = multiLevel({ levels: [memoryBackend(), sharedB], logger: false })
    try {
      await a.set('cart', ['sku-1'])
      await a.set('doc', 'v1')
      // B holds copies in its own L1.
      expect(await b.get('cart')).toEqual(['sku-1'])
      expect(await b.get('doc')).toBe('v1')

      await expect(a.atomicUpdate<string[]>('cart', (items = []) => [...items, BIG])).rejects.toBeInstanceOf(
        CacheValueTooLargeError,
      )
      await expect(a.set('doc', BIG)).rejects.toBeInstanceOf(CacheValueTooLargeError)
      await expect(a.setMany([{ key: 'doc', value: BIG }])).rejects.toBeInstanceOf(CacheValueTooLargeError)

      // The shared level still holds the values: what A reads (its L1 copies were dropped),
      // what B's L1 serves and what memcached holds are the same.
      expect(await sharedB.get('cart')).toEqual(['sku-1'])
      expect(await sharedB.get('doc')).toBe('v1')
      expect(await l1A.has('cart')).toBe(false)
      expect(await a.get('cart')).toEqual(['sku-1'])
      expect(await a.get('doc')).toBe('v1')
      expect(await b.get('cart')).toEqual(['sku-1'])
      expect(await b.get('doc')).toBe('v1')
    } finally {
      await a.close()
      await b.close()
    }
  })
})
