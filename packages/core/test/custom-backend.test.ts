import { deserialize, serialize } from 'node:v8'
import { describe, expect, it } from 'vitest'
import { cached, defineBackend, type MinimalBackend, ttlToMs } from '../src/index.js'
import { runConformance } from '../src/testing/index.js'

/**
 * What a user writes to plug in their own store: only get/set/delete/clear. Values go through
 * v8 serialization so the toy behaves like a store outside the process.
 */
function toyBackend(
  shared: Map<string, { value: unknown; expiresAt?: number }>,
  namespace: string,
): MinimalBackend {
  const prefix = `${namespace}:`
  return {
    name: 'toy',
    async get(key) {
      const entry = shared.get(prefix + key)
      if (entry === undefined) return undefined
      if (entry.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
        shared.delete(prefix + key)
        return undefined
      }
      return deserialize(serialize(entry.value)) as never
    },
    async set(key, value, ttl) {
      const ms = ttlToMs(ttl)
      shared.set(prefix + key, {
        value: deserialize(serialize(value)),
        expiresAt: ms === undefined ? undefined : Date.now() + ms,
      })
    },
    async delete(key) {
      return shared.delete(prefix + key)
    },
    async clear() {
      for (const key of [...shared.keys()]) if (key.startsWith(prefix)) shared.delete(key)
    },
  }
}

const store = new Map<string, { value: unknown; expiresAt?: number }>()

describe('a custom backend with only get/set/delete/clear', () => {
  it('works with cached() once completed by defineBackend', async () => {
    const backend = defineBackend(toyBackend(store, 'memo-test'))
    let calls = 0
    const double = cached(
      async (n: number) => {
        calls++
        return n * 2
      },
      { backend, name: 'double', ttl: 60 },
    )
    expect(await double(21)).toBe(42)
    expect(await double(21)).toBe(42)
    expect(calls).toBe(1)
    await double.invalidate(21)
    expect(await double(21)).toBe(42)
    expect(calls).toBe(2)
  })
})

runConformance('toy custom backend', {
  create: ({ namespace }) => defineBackend(toyBackend(store, namespace)),
  serializes: false,
  reportsExpiry: false,
  storesUndefined: false,
  ttlMs: 100,
})
