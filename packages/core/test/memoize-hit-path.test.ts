/**
 * A hit answers exactly what the function's full path would, through whatever a hit skips (the
 * keys remembered for calls with one number or short string argument, generations kept between
 * hits): after an invalidation, for the class and a subclass called in turn, and for argument
 * lists that change shape between calls.
 */
import { describe, expect, it } from 'vitest'
import { type CacheOptions, cache, cached } from '../src/index.js'
import { mapBackend } from './map-backend.js'

const backends = [
  ['a backend of another process', () => mapBackend()],
  ['an in-process backend', () => mapBackend({ sync: true })],
  ['an in-process backend with internalVersion', () => mapBackend({ sync: true, internalVersion: true })],
] as const

/** `cls.prototype[method]` decorated with `@cache(options)` (the legacy decorator form). */
function decorate(cls: Function, method: string, options: CacheOptions): void {
  const descriptor = Object.getOwnPropertyDescriptor(cls.prototype, method)!
  ;(cache(options) as unknown as (t: object, k: string, d: PropertyDescriptor) => PropertyDescriptor)(
    cls.prototype,
    method,
    descriptor,
  )
  Object.defineProperty(cls.prototype, method, descriptor)
}

describe.each(backends)('the hit path on %s', (label, make) => {
  it('answers the new result after an invalidation, not the one its earlier hits answered', async () => {
    const backend = make()
    let version = 0
    const profile = cached(async (id: number) => ({ id, version }), { backend, name: 'hit-path-profile' })
    const first = await profile(7)
    expect(await profile(7)).toBe(first) // hits
    expect(await profile(7)).toBe(first)
    version = 1
    await profile.invalidate(7)
    expect(await profile(7)).toEqual({ id: 7, version: 1 })
    expect(await profile(7)).toEqual({ id: 7, version: 1 })
    await profile.clear()
    version = 2
    expect(await profile(7)).toEqual({ id: 7, version: 2 })
    expect(await profile(7)).toEqual({ id: 7, version: 2 })
    expect(profile.stats.hits).toBe(4)
  })

  it('keeps a method’s results apart for the class and a subclass called in turn', async () => {
    const backend = make()
    class Repository {
      async find(id: number): Promise<string> {
        return `${this.constructor.name} ${id}`
      }
    }
    decorate(Repository, 'find', { backend, name: `Repository.find on ${label}` })
    class UserRepository extends Repository {}
    const base = new Repository()
    const users = new UserRepository()
    for (let round = 0; round < 3; round++) {
      expect(await base.find(1)).toBe('Repository 1')
      expect(await users.find(1)).toBe('UserRepository 1')
      expect(await base.find('1' as unknown as number)).toBe('Repository 1')
      expect(await users.find(1)).toBe('UserRepository 1')
    }
  })

  it('answers each integer argument its own result, among integers that share their low bits', async () => {
    const backend = make()
    const double = cached(async (id: number) => id * 2, { backend, name: 'hit-path-double' })
    // Enough ids to fill any table of remembered keys, then ids that share their low bits with
    // them (and with each other), negative ones, 0, and the edges of 32-bit integers and past them.
    const ids = Array.from({ length: 20_000 }, (_, i) => i)
    for (const shift of [6, 7, 10, 14, 16, 20, 30])
      ids.push(2 ** shift, 2 ** shift + 1, -(2 ** shift), 3 * 2 ** shift)
    ids.push(-1, 2 ** 31 - 1, -(2 ** 31), 2 ** 31, 2 ** 32, 2 ** 32 + 1, 2 ** 53 - 1, 1.5)
    const distinct = [...new Set(ids)]
    for (let round = 0; round < 2; round++) for (const id of distinct) expect(await double(id)).toBe(id * 2)
    for (const id of [...distinct].reverse()) expect(await double(id)).toBe(id * 2)
    expect(double.stats.misses).toBe(distinct.length)
    expect(double.stats.hits).toBe(distinct.length * 2)
  })

  it('answers each argument list its own result when the arguments change shape between calls', async () => {
    const backend = make()
    const echo = cached(async (...args: unknown[]) => JSON.stringify(args.map(String)), {
      backend,
      name: 'hit-path-echo',
    })
    for (let round = 0; round < 2; round++) {
      expect(await echo(1)).toBe('["1"]')
      expect(await echo('1')).toBe('["1"]')
      expect(await echo(1, undefined)).toBe('["1","undefined"]')
      expect(await echo(0)).toBe('["0"]')
      expect(await echo(-0)).toBe('["0"]')
      expect(await echo()).toBe('[]')
      expect(await echo(undefined)).toBe('["undefined"]')
      expect(await echo(undefined, undefined)).toBe('["undefined","undefined"]')
    }
    // Every list above is its own entry: 1 and '1', 0 and -0, (1) and (1, undefined), () and (undefined).
    expect(echo.stats.misses).toBe(8)
    expect(echo.stats.hits).toBe(8)
  })

  it('passes the function the arguments of each call, whatever their number (sync where it can be)', async () => {
    const backend = make()
    const seen: unknown[][] = []
    const count = (...args: unknown[]) => {
      seen.push(args)
      return args.length
    }
    // A sync function stays sync on an in-process backend; another backend needs an async one.
    const fn = backend.sync === undefined ? async (...args: unknown[]) => count(...args) : count
    const echo = cached(fn, { backend, name: 'hit-path-sync-echo' })
    const lists: unknown[][] = [[], [undefined], [7], [7, 8], [undefined, undefined], ['7']]
    for (let round = 0; round < 2; round++)
      for (const list of lists) expect(await echo(...list)).toBe(list.length)
    // Each list ran the function once, with exactly its own arguments.
    expect(seen).toEqual(lists)
  })
})
