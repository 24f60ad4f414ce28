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
