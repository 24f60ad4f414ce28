import { startMemcached } from '@cache/test-servers'
import { afterAll, describe, expect, it } from 'vitest'
import { memcachedBackend } from '../src/index.js'
import { ascii, serverKeys } from './raw.js'

const server = await startMemcached({ spawn: true })
afterAll(() => server.stop())

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe('clear() by generation', () => {
  it('bumps the namespace generation instead of deleting or flushing', async () => {
    const cache = memcachedBackend(server.server, { namespace: 'gen' })
    const other = memcachedBackend(server.server, { namespace: 'gen-other' })
    try {
      await cache.set('k', 1)
      await other.set('k', 2)
      const before = (await serverKeys(server.port)).filter((k) => k.startsWith('gen#') && !k.endsWith('#g'))
      await cache.clear()
      expect(await cache.get('k')).toBeUndefined()
      expect(await other.get('k')).toBe(2)
      // The old item is only unreachable: memcached evicts it in its own time.
      const after = await serverKeys(server.port)
      expect(after).toEqual(expect.arrayContaining(before))
      await cache.set('k', 3)
      expect(await cache.get('k')).toBe(3)
    } finally {
      await Promise.all([cache.close(), other.close()])
    }
  })

  it('reaches another process within generationTtl', async () => {
    const a = memcachedBackend(server.server, { namespace: 'procs', generationTtl: 0.3 })
    const b = memcachedBackend(server.server, { namespace: 'procs', generationTtl: 0.3 })
    try {
      await a.set('k', 'old')
      expect(await b.get('k')).toBe('old')
      await a.clear()
      expect(await a.get('k')).toBeUndefined()
      await sleep(350)
      expect(await b.get('k')).toBeUndefined()
    } finally {
      await Promise.all([a.close(), b.close()])
    }
  })

  it('within generationTtl sends no generation read, and reads it again once it has passed', async () => {
    const cache = memcachedBackend(server.server, { namespace: 'trusting', generationTtl: 1 })
    try {
      await cache.set('k', 1)
      // Each read within generationTtl of the last generation read is one request.
      for (let i = 0; i < 3; i++) {
        const before = cache.stats.operations
        await sleep(50)
        await cache.get('k')
        expect(cache.stats.operations - before).toBe(1)
      }
      // Twice: the second time, the generation read finds the bytes it read the first time.
      for (let round = 0; round < 2; round++) {
        await sleep(1050)
        let before = cache.stats.operations
        await cache.get('k')
        expect(cache.stats.operations - before).toBe(2)
        // That read (of an unchanged generation) is trusted for generationTtl again.
        before = cache.stats.operations
        await cache.get('k')
        expect(cache.stats.operations - before).toBe(1)
      }
    } finally {
      await cache.close()
    }
  })

  it('reaches another process at once with generationTtl: 0', async () => {
    const a = memcachedBackend(server.server, { namespace: 'strict', generationTtl: 0 })
    const b = memcachedBackend(server.server, { namespace: 'strict', generationTtl: 0 })
    try {
      await a.set('k', 'old')
      expect(await b.get('k')).toBe('old')
      await a.clear()
      expect(await b.get('k')).toBeUndefined()
      await b.set('k', 'new')
      expect(await a.get('k')).toBe('new')
    } finally {
      await Promise.all([a.close(), b.close()])
    }
  })

  it('does not bring old keys back when the generation counter is evicted', async () => {
    const cache = memcachedBackend(server.server, { namespace: 'evicted', generationTtl: 0 })
    try {
      await cache.set('k', 'before clear')
      await cache.clear()
      expect(await ascii(server.port, 'delete evicted#g')).toBe('DELETED\r\n')
      expect(await cache.get('k')).toBeUndefined()
    } finally {
      await cache.close()
    }
  })
  it('a generation counter another client overwrote fails each call with a CacheError (the process stays up), until deleted', async () => {
    const cache = memcachedBackend(server.server, { namespace: 'foreign-g', generationTtl: 0, logger: false })
    const errors: unknown[] = []
    cache.on('error', (event) => errors.push(event.error))
    try {
      await cache.set('k', 'kept')
      expect(await ascii(server.port, 'set foreign-g#g 0 0 9\r\n{not json')).toBe('STORED\r\n')
      // A read that is answered with a value already seen, and a first read in a fresh process.
      await expect(cache.get('k')).rejects.toMatchObject({
        name: 'CacheError',
        message: /foreign-g#g holds "\{not json"/,
      })
      const other = memcachedBackend(server.server, {
        namespace: 'foreign-g',
        generationTtl: 0,
        logger: false,
      })
      try {
        await expect(other.set('k', 'x')).rejects.toThrow(/which @cache did not write/)
      } finally {
        await other.close()
      }
      expect(errors.length).toBeGreaterThan(0)
      expect(await ascii(server.port, 'delete foreign-g#g')).toBe('DELETED\r\n')
      expect(await cache.get('k')).toBeUndefined()
      await cache.set('k', 'again')
      expect(await cache.get('k')).toBe('again')
    } finally {
      await cache.close()
    }
  })
  it('keeps call order with the calls of its own tick: what comes after clear() is kept, what came before is not', async () => {
    for (const options of [{}, { generationTtl: '1h' }, { flushOnClear: true }] as const) {
      const label = JSON.stringify(options)
      const cache = memcachedBackend(server.server, {
        namespace: `tick-clear${Object.keys(options).join('')}`,
        ...options,
      })
      try {
        await cache.set('k', 10)
        await cache.set('counter', 10)
        await cache.get('warm')
        const [, , , setAfter, incrAfter, readAfter] = await Promise.all([
          cache.get('x'),
          cache.set('before', 1),
          cache.clear(),
          cache.set('k', 20),
          cache.incr('counter'),
          cache.get('before'),
        ])
        expect([setAfter, incrAfter, readAfter], label).toEqual([undefined, 1, undefined])
        expect(await cache.get('k'), label).toBe(20)
        expect(await cache.get('counter'), label).toBe(1)
        expect(await cache.get('before'), label).toBeUndefined()
      } finally {
        await cache.close()
      }
    }
  })
})
