import { CacheConfigError, forgetMemoizedNames, memoized } from '@cache/core'
import { beforeAll, describe, expect, it } from 'vitest'
import { compileFixture, type DecoratorMode } from './compile.js'

// The compiled fixtures import '@cache/core' (the built package): so does this file, so that
// memoized() and forgetMemoizedNames() see the functions they decorate.

/** What fixtures/decorators/reports.ts exports (not imported for its types: the test compiles it). */
interface Fixture {
  backend: import('./fixtures/decorators/backend.js').MapBackend
  calls: Record<'monthly' | 'square' | 'yearly' | 'base', number>
  Reports: {
    new (): {
      readonly currency: string
      monthly(m: string): Promise<{ month: string; total: number }>
      square(n: number): number
    }
    yearly(y: number): Promise<number>
  }
  Base: new () => { describe(): Promise<string> }
  Derived: new () => { describe(): Promise<string> }
}

/**
 * The cases for one decorator mode. Each mode runs in its own test file (its own process): the
 * classes the two modes compile are different code under the same names, which one process
 * rightly refuses to let share keys.
 */
export function decoratorCases(mode: DecoratorMode): void {
  describe(`@cache on ${mode} decorators`, () => {
    // Compiled once (a real TypeScript program, failing on any type error); each test imports the
    // module afresh: new classes under the same names, which the name registry would rightly
    // refuse in one process, so it forgets the names first.
    let load: (file: string) => Promise<any>
    beforeAll(() => {
      load = compileFixture('decorators', mode)
    })
    const compile = async (): Promise<Fixture> => {
      forgetMemoizedNames()
      return load('reports.ts')
    }

    it('compiles, and memoizes an async method per arguments, shared across instances', async () => {
      const { Reports, calls, backend } = await compile()
      const a = new Reports()
      const b = new Reports()
      expect(await a.monthly('2024-01')).toEqual({ month: '2024-01', total: 100 })
      expect(await b.monthly('2024-01')).toEqual({ month: '2024-01', total: 100 })
      expect(await a.monthly('2024-02')).toEqual({ month: '2024-02', total: 100 })
      expect(calls.monthly).toBe(2)
      const key = Reports.prototype.monthly.keyFor('2024-01')
      expect(key).toMatch(/^memo:Reports\.monthly#[0-9a-f]{12}:"2024-01"$/)
      expect(await backend.has(key)).toBe(true)
      const entry = await backend.getEntry(key)
      expect(entry?.expiresAt).toBeGreaterThan(Date.now() + 59_000)
    })

    it('keeps apart two classes of one name and one method text whose other code differs, as two processes sharing a backend', async () => {
      // Each module alone, as a process that loads only one of them: a fresh name registry.
      const repos = async (side: 'auth' | 'billing') => {
        forgetMemoizedNames()
        return (await load(`${side}-repos.ts`)) as {
          UserRepository: new () => { findById(id: number): Promise<{ table: string }> }
          CustomerRepository: new () => { findById(id: number): Promise<{ table: string }> }
          AppRepository: new () => { findById(id: number): Promise<{ table: string }> }
          Pricing: new () => { price(x: number): Promise<number> }
        }
      }
      const auth = await repos('auth')
      expect(await new auth.UserRepository().findById(1)).toEqual({ table: 'auth_users', id: 1 })
      expect(await new auth.CustomerRepository().findById(1)).toEqual({ table: 'auth_customers', id: 1 })
      expect(await new auth.AppRepository().findById(1)).toEqual({ table: 'auth_tables', id: 1 })
      expect(await new auth.Pricing().price(10)).toBe(20)
      const billing = await repos('billing')
      expect(await new billing.AppRepository().findById(1)).toEqual({ table: 'billing_tables', id: 1 })
      expect(await new billing.Pricing().price(10)).toBe(30)
      expect(await new billing.UserRepository().findById(1)).toEqual({ table: 'billing_users', id: 1 })
      expect(await new billing.CustomerRepository().findById(1)).toEqual({
        table: 'billing_customers',
        id: 1,
      })
    })

    it('keeps a sync method sync on an in-process backend', async () => {
      const { Reports, calls } = await compile()
      const r = new Reports()
      expect(r.square(7)).toBe(49)
      expect(r.square(7)).toBe(49)
      expect(calls.square).toBe(1)
    })

    it('memoizes static methods under the class name', async () => {
      const { Reports, calls, backend } = await compile()
      expect(await Reports.yearly(2)).toBe(24)
      expect(await Reports.yearly(2)).toBe(24)
      expect(calls.yearly).toBe(1)
      // A decorated method's type is the method's own: memoized() gives its typed handle.
      const yearly = memoized(Reports.yearly)
      expect(yearly.keyFor(2)).toMatch(/^memo:Reports\.yearly#[0-9a-f]{12}:2$/)
      expect(memoized(Reports, 'yearly').keyFor(2)).toBe(yearly.keyFor(2))
      expect(await backend.has(yearly.keyFor(2))).toBe(true)
      expect(yearly.stats.hits).toBe(1)
      await memoized(Reports, 'yearly').invalidate(2)
      expect(await Reports.yearly(2)).toBe(24)
      expect(calls.yearly).toBe(2)
    })

    it('names an inherited method after the class of `this` as well as the class that defines it', async () => {
      const { Derived, Base, calls, backend } = await compile()
      expect(await new Derived().describe()).toBe('base')
      expect(await new Derived().describe()).toBe('base')
      expect(await new Base().describe()).toBe('base')
      expect(calls.base).toBe(2)
      const own = Base.prototype.describe.keyFor.call(new Base())
      const inherited = Base.prototype.describe.keyFor.call(new Derived())
      expect(own).toMatch(/^memo:Base\.describe#[0-9a-f]{12}:\(\)$/)
      expect(inherited.startsWith(own.replace(':()', '(Derived#'))).toBe(true)
      expect(inherited).toMatch(/\(Derived#[0-9a-f]{12}\):\(\)$/)
      expect(await backend.has(own)).toBe(true)
      expect(await backend.has(inherited)).toBe(true)
    })

    it('gives the typed handle of a decorated method through memoized(): invalidate(), clear(), stats', async () => {
      const { Reports, calls } = await compile()
      const r = new Reports()
      await r.monthly('2024-03')
      await memoized(r.monthly).invalidate('2024-03')
      await r.monthly('2024-03')
      expect(calls.monthly).toBe(2)
      await memoized(r, 'monthly').clear()
      await r.monthly('2024-03')
      expect(calls.monthly).toBe(3)
      await r.monthly('2024-03')
      expect(memoized(r, 'monthly').stats).toMatchObject({ hits: 1, misses: 3 })
      // The handle of an instance calls the method on it.
      expect(await memoized(r, 'monthly')('2024-03')).toEqual({ month: '2024-03', total: 100 })
    })

    it("keeps keyFor's rule for inherited methods: memoized(instance, method) names the entry of a call on that instance", async () => {
      const { Derived, Base, backend, calls } = await compile()
      const derived = new Derived()
      await derived.describe()
      await new Base().describe()
      const key = memoized(derived, 'describe').keyFor()
      expect(key).toBe(Base.prototype.describe.keyFor.call(derived))
      expect(key).toMatch(/\(Derived#[0-9a-f]{12}\):\(\)$/)
      expect(memoized(new Base(), 'describe').keyFor()).toMatch(/^memo:Base\.describe#[0-9a-f]{12}:\(\)$/)
      // Without the instance, keyFor refuses to guess once a subclass ran the method.
      expect(() => memoized(derived.describe).keyFor()).toThrow(/keyFor\.call/)
      expect(await backend.has(key)).toBe(true)
      await memoized(derived, 'describe').invalidate()
      expect(await backend.has(key)).toBe(false)
      await derived.describe()
      expect(calls.base).toBe(3)
    })

    it('refuses, with CacheConfigError, a function or property that is not memoized', async () => {
      const { Reports } = await compile()
      const r = new Reports()
      const plain = (n: number) => n
      expect(() => memoized(plain)).toThrow(CacheConfigError)
      expect(() => memoized(plain)).toThrow(/plain is not memoized.*@cache\(\).*cached\(\)/s)
      expect(() => memoized(r, 'currency' as never)).toThrow(/currency is not memoized/)
      expect(() => memoized(r, 'nothing' as never)).toThrow(CacheConfigError)
    })
  })
}
