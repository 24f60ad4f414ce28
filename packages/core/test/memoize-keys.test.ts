import { describe, expect, it } from 'vitest'
import { cached } from '../src/memoize.js'

// A plain Map is enough: these tests look at keys only.
const store = new Map<string, unknown>()
const backend = {
  get: async <T>(key: string) => store.get(key) as T | undefined,
  set: async (key: string, value: unknown) => void store.set(key, value),
  delete: async (key: string) => store.delete(key),
  clear: async () => store.clear(),
}

describe('memoize keys of single primitive arguments', () => {
  it('keeps numbers and strings apart, and gives the same key on every call', () => {
    const f = cached(async (id: number | string) => id, { backend, name: 'byId' })
    expect(f.keyFor(1)).toBe('memo:byId:1')
    expect(f.keyFor('1')).toBe('memo:byId:"1"')
    expect(f.keyFor(1)).toBe(f.keyFor(1))
    expect(f.keyFor('a:b')).toBe(f.keyFor('a:b'))
  })

  it('stays right past the number of keys it remembers', () => {
    const f = cached(async (id: number) => id, { backend, name: 'many' })
    for (let i = 0; i < 12_000; i++) expect(f.keyFor(i)).toBe(`memo:many:${i}`)
    expect(f.keyFor(0)).toBe('memo:many:0')
  })

  it('uses a custom key builder as it is', async () => {
    let calls = 0
    const f = cached(async (id: number) => id, { backend, name: 'custom', key: (id) => `u${id}-${++calls}` })
    expect(f.keyFor(1)).toBe('memo:custom:u1-1')
    expect(f.keyFor(1)).toBe('memo:custom:u1-2')
  })

  it('hits on the second call with the same argument', async () => {
    let runs = 0
    const f = cached(
      async (id: number) => {
        runs++
        return { id }
      },
      { backend, name: 'hits', ttl: 60 },
    )
    expect(await f(7)).toEqual({ id: 7 })
    expect(await f(7)).toEqual({ id: 7 })
    expect(runs).toBe(1)
  })
})
