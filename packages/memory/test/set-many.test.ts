import { CacheValueTooLargeError } from '@cache/core'
import { describe, expect, it } from 'vitest'
import { type MemoryBackendOptions, memoryBackend } from '../src/index.js'

class Point {
  x = 1
}
class Tagged extends Map {}
const cyclic: Record<string, unknown> = {}
cyclic.self = cyclic

/** Values some option refuses: what cannot be cloned, what is larger than the limit. */
const badValues: [string, () => unknown][] = [
  ['a class instance', () => new Point()],
  ['a function', () => () => 1],
  ['a symbol', () => Symbol('s')],
  ['an Error', () => new Error('boom')],
  ['a WeakMap', () => new WeakMap()],
  ['a Promise', () => Promise.resolve(1)],
  ['a subclass of Map', () => new Tagged()],
  ['a function deep inside', () => ({ a: [{ b: { c: () => 1 } }] })],
  ['a class instance inside a Map', () => new Map([['p', new Point()]])],
  ['a 2 MB string', () => 'x'.repeat(1_000_000)],
  ['a 2 MB Buffer', () => Buffer.alloc(2 * 1024 * 1024)],
  ['an array of 300 000 numbers', () => Array.from({ length: 300_000 }, (_, i) => i)],
  ['a cycle', () => cyclic],
]

const optionSets: [string, MemoryBackendOptions][] = [
  ['clone: true', { clone: true }],
  ["maxSize: '1MB'", { maxSize: '1MB' }],
  ["clone: true, maxSize: '1MB'", { clone: true, maxSize: '1MB' }],
  ['default options', {}],
  [
    'a sizeOf that throws for one value',
    {
      maxSize: '1MB',
      sizeOf: (value) => {
        if (value === 'unmeasurable') throw new RangeError('cannot measure')
        return 10
      },
    },
  ],
]

describe('memory: a setMany with one item it cannot store stores none', () => {
  it.each(optionSets)(
    'with %s: every other key keeps what it held, or every item is stored',
    async (_label, options) => {
      const wrong: string[] = []
      const bad = [
        ...badValues,
        ['a value sizeOf cannot measure', () => 'unmeasurable'] as [string, () => unknown],
      ]
      for (const [label, make] of bad) {
        const backend = memoryBackend(options)
        await backend.setMany([
          { key: 'a', value: 'old a' },
          { key: 'b', value: 'old b' },
        ])
        let rejected = false
        try {
          await backend.setMany([
            { key: 'a', value: 'new a' },
            { key: 'bad', value: make() },
            { key: 'b', value: 'new b' },
          ])
        } catch {
          rejected = true
        }
        const after = await backend.getMany(['a', 'b'])
        const expected = rejected ? ['old a', 'old b'] : ['new a', 'new b']
        if (JSON.stringify(after) !== JSON.stringify(expected))
          wrong.push(`${label}: ${rejected ? 'rejected' : 'resolved'}, then a, b = ${JSON.stringify(after)}`)
        if (rejected && (await backend.has('bad')))
          wrong.push(`${label}: rejected, yet the bad key is stored`)
        await backend.close()
      }
      expect(wrong).toEqual([])
    },
  )

  it('refuses a value larger than maxSize in set too, and counts a setMany item’s bytes as set does', async () => {
    const one = memoryBackend({ maxSize: '1MB' })
    const many = memoryBackend({ maxSize: '1MB' })
    await one.set('k', 'small')
    await expect(one.set('k', 'x'.repeat(1_000_000))).rejects.toBeInstanceOf(CacheValueTooLargeError)
    expect(await one.get('k')).toBeUndefined()
    await one.set('a', { text: 'x'.repeat(100_000) })
    await many.setMany([{ key: 'a', value: { text: 'x'.repeat(100_000) } }])
    expect(many.calculatedSize).toBe(one.calculatedSize)
    expect(many.calculatedSize).toBeGreaterThan(200_000)
    await Promise.all([one.close(), many.close()])
  })
})

describe('deleteMany takes effect when it is called, as delete does', () => {
  it('a set issued right after it is not removed by it, and a key listed twice is one removal', async () => {
    const cache = memoryBackend()
    await cache.set('a', 1)
    await cache.set('x', 1)
    const removed = cache.deleteMany(['x', 'a', 'a'])
    const fresh = cache.set('a', 'fresh')
    expect(await Promise.all([removed, fresh])).toEqual([2, undefined])
    expect(await cache.get('a')).toBe('fresh')
    expect(cache.stats.deletes).toBe(2)
  })

  it('a bad key in the list removes nothing', async () => {
    const cache = memoryBackend()
    await cache.set('a', 1)
    await expect(cache.deleteMany(['a', 42 as unknown as string])).rejects.toMatchObject({
      name: 'CacheKeyError',
    })
    expect(await cache.get('a')).toBe(1)
  })
})
