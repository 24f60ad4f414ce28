import { describe, expect, it } from 'vitest'
import { CacheConfigError, cache, cached, memoized } from '../src/index.js'
import { mapBackend } from './map-backend.js'

describe('keys are injective: no two (namespace, name) pairs share a key', () => {
  it('keeps {namespace: "a:b", name: "c"} and {namespace: "a", name: "b:c"} apart', async () => {
    const backend = mapBackend()
    const f1 = cached(async (id: number) => `f1:${id}`, { backend, namespace: 'a:b', name: 'c' })
    const f2 = cached(async (id: number) => `f2:${id}`, { backend, namespace: 'a', name: 'b:c' })
    expect(f1.keyFor(1)).not.toBe(f2.keyFor(1))
    expect(await f1(1)).toBe('f1:1')
    expect(await f2(1)).toBe('f2:1')
    expect(await f1(1)).toBe('f1:1')
  })

  it('keeps a name that looks like an argument part apart from the argument', async () => {
    const backend = mapBackend()
    const outer = cached(async (id: string) => `outer ${id}`, { backend, name: 'users' })
    const inner = cached(async () => 'inner', { backend, name: 'users:"x"' })
    expect(outer.keyFor('x')).not.toBe(inner.keyFor())
    expect(await outer('x')).toBe('outer x')
    expect(await inner()).toBe('inner')
  })
})

describe('a default name is never shared silently with another function', () => {
  it('keeps a function given a name apart from a default-named one of that name, either order', async () => {
    const backend = mapBackend()
    const byDefault = cached(
      async function loadDefaultVersusExplicit(id: string) {
        return `d1:${id}`
      },
      { backend },
    )
    const explicit = cached(async (id: string) => `d2:${id}`, { backend, name: 'loadDefaultVersusExplicit' })
    expect(explicit.keyFor('1')).not.toBe(byDefault.keyFor('1'))
    expect(await byDefault('1')).toBe('d1:1')
    expect(await explicit('1')).toBe('d2:1')
    expect(await byDefault('1')).toBe('d1:1')
  })

  it('throws for identical source text with different closures (a project helper around cached())', async () => {
    const backend = mapBackend()
    const memo = (fn: (amount: number) => Promise<number>) => cached(fn, { backend, ttl: 60 })
    const rates = [0.9, 150]
    const convertTo = (rate: number) =>
      memo(async function convertWithHelper(amount: number) {
        return amount * rate
      })
    const eur = convertTo(rates[0]!)
    expect(await eur(100)).toBe(90)
    expect(() => convertTo(rates[1]!)).toThrow(/convertWithHelper.*`name`/s)
  })

  it('throws for a factory called twice with a default name, and shares deliberately with `name`', async () => {
    const backend = mapBackend()
    const make = () =>
      cached(
        async function getOrderFromFactory(id: number) {
          return { id }
        },
        { backend },
      )
    make()
    expect(make).toThrow(CacheConfigError)
    const named = () =>
      cached(
        async function getOrderNamed(id: number) {
          return { id }
        },
        { backend, name: 'orders.get' },
      )
    const a = named()
    const b = named()
    expect(a.keyFor(7)).toBe(b.keyFor(7))
    expect(await a(7)).toEqual({ id: 7 })
  })

  it('lets the same function object be memoized twice', async () => {
    const backend = mapBackend()
    async function sameObjectTwice(n: number) {
      return n * 2
    }
    const a = cached(sameObjectTwice, { backend })
    const b = cached(sameObjectTwice, { backend })
    expect(await a(2)).toBe(4)
    expect(a.keyFor(2)).toBe(b.keyFor(2))
  })

  it('says what to do in the error: pass `name`, and how to share deliberately', () => {
    const backend = mapBackend()
    const make = () => cached(function actionableMessage() {}, { backend })
    make()
    const error = (() => {
      try {
        make()
      } catch (e) {
        return e as CacheConfigError
      }
    })()
    expect(error).toBeInstanceOf(CacheConfigError)
    expect(error!.setting).toBe('name')
    expect(error!.message).toMatch(/memo:actionableMessage/)
    expect(error!.message).toMatch(/same `name`/)
  })
})

describe('internal keys live where no memoized function can reach', () => {
  it('refuses a namespace that would enter the internal key space', () => {
    for (const namespace of ['__lock:memo', '__v:memo', '__v', '__'])
      expect(() => cached(async () => 1, { name: 'f', namespace })).toThrow(CacheConfigError)
  })

  it("never lets one function's entry land on another's lock or generation", async () => {
    const backend = mapBackend()
    let runs = 0
    const f = cached(
      async (id: number) => {
        runs++
        return `A${id}`
      },
      { backend, name: 'guarded', ttl: 60 },
    )
    await f(1)
    const written = [...backend.rows.keys()]
    // Every key but the entry is internal; no namespace a user may choose reaches those.
    const internal = written.filter((key) => key !== f.keyFor(1))
    expect(internal.length).toBeGreaterThan(0)
    for (const key of internal) expect(key.startsWith('__')).toBe(true)
    await f(1)
    expect(runs).toBe(1)
  })
})

describe('generation scopes are a function of the name only', () => {
  it('two builds of a decorated method (different source) invalidate the same scope', async () => {
    const backend = mapBackend()
    const written = (run: () => Promise<void>) => {
      const before = new Set(backend.rows.keys())
      const values = new Map([...backend.rows].filter(([key]) => before.has(key)))
      return run().then(() =>
        [...backend.rows]
          .filter(([key, value]) => !before.has(key) || values.get(key) !== value)
          .map(([k]) => k),
      )
    }
    const method = (source: (sku: string) => Promise<unknown>) => {
      const memo = cache({ backend, name: undefined })(source, {
        kind: 'method',
        name: 'quoteBuild',
        static: false,
        private: false,
        metadata: {},
        access: { has: () => true, get: () => source },
        addInitializer: () => {},
      } as unknown as ClassMethodDecoratorContext)
      return memoized(memo)
    }
    const v1 = method(async (sku) => ({ sku, build: 'v1' }))
    const v2 = method(async (sku) => ({ sku, build: 'v2', currency: 'EUR' }))
    expect(await written(() => v1.clear())).toEqual(await written(() => v2.clear()))
    expect(await written(() => v1.invalidate('A'))).toEqual(await written(() => v2.invalidate('A')))
  })
})
