import { describe, expect, it } from 'vitest'
import { CacheConfigError, cached, defineBackend } from '../src/index.js'

function mapBackend() {
  const rows = new Map<string, unknown>()
  return defineBackend({
    get: async <T>(key: string) => rows.get(key) as T | undefined,
    set: async (key: string, value: unknown) => void rows.set(key, value),
    delete: async (key: string) => rows.delete(key),
    clear: async () => rows.clear(),
  })
}

describe('cached(): two different functions never share entries', () => {
  it('throws, asking for `name`, when a second function gets the same default name', async () => {
    const backend = mapBackend()
    const users = cached(
      async function loadIdentityCase(id: string) {
        return `user ${id}`
      },
      { backend },
    )
    expect(await users('1')).toBe('user 1')
    const define = () =>
      cached(
        async function loadIdentityCase(id: string) {
          return `invoice ${id}`
        },
        { backend },
      )
    expect(define).toThrow(CacheConfigError)
    expect(define).toThrow(/loadIdentityCase.*`name`/s)
  })

  it('lets the same function be memoized again (a factory, a module loaded twice)', async () => {
    const backend = mapBackend()
    const make = () =>
      cached(
        async function sameFactoryCase(n: number) {
          return n * 2
        },
        { backend },
      )
    const a = make()
    const b = make()
    expect(await a(2)).toBe(4)
    expect(await b(2)).toBe(4)
    expect(a.keyFor(2)).toBe(b.keyFor(2))
  })

  it('asks for `name` for a bound function, whose source says nothing', () => {
    const backend = mapBackend()
    const service = {
      load(id: string) {
        return id
      },
    }
    expect(() => cached(service.load.bind(service), { backend })).toThrow(/`name`/)
    expect(() => cached(service.load.bind(service), { backend, name: 'service.load' })).not.toThrow()
  })
})
