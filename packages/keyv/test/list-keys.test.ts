import { CacheUnsupportedError, listKeys } from '@cache/core'
import { memoryBackend } from '@cache/memory'
import { mapBackend } from '@cache/testing'
import { Keyv } from 'keyv'
import { describe, expect, it } from 'vitest'
import { keyvBackend, toKeyvStore } from '../src/index.js'

async function listAll(iterator: AsyncIterableIterator<string>): Promise<string[]> {
  const out: string[] = []
  for await (const key of iterator) out.push(key)
  return out.sort()
}

describe('listing keys through Keyv', () => {
  it('keyv.iterator() over toKeyvStore(backend) yields [key, value] of its namespace only, past one page', async () => {
    const backend = memoryBackend()
    const users = new Keyv({ store: toKeyvStore(backend), namespace: 'users' })
    const usersAbc = new Keyv({ store: toKeyvStore(backend), namespace: 'usersAbc' })
    for (let i = 0; i < 250; i++) await users.set(`u${i}`, { i })
    await usersAbc.set('u0', 'other')
    const seen = new Map<string, unknown>()
    for await (const [key, value] of users.iterator!(undefined)) seen.set(key, value)
    expect(seen.size).toBe(250)
    expect(seen.get('u7')).toEqual({ i: 7 })
  })

  it('a backend that cannot list: Keyv offers no iterator(), and the adapter says why', async () => {
    const store = toKeyvStore(mapBackend({ name: 'unlistable' }))
    expect(new Keyv({ store }).iterator).toBeUndefined()
    await expect(store.iterator().next()).rejects.toBeInstanceOf(CacheUnsupportedError)
  })

  it('keyvBackend over a store Keyv cannot iterate has no keys(); listKeys() throws CacheUnsupportedError', () => {
    const cache = keyvBackend(toKeyvStore(mapBackend({ name: 'unlistable' })))
    expect(cache.keys).toBeUndefined()
    expect(() => listKeys(cache)).toThrow(CacheUnsupportedError)
  })

  it('keyvBackend over a store that iterates lists its own keys without the namespace', async () => {
    const shared = memoryBackend()
    const a = keyvBackend(toKeyvStore(shared), { namespace: 'a' })
    const b = keyvBackend(toKeyvStore(shared), { namespace: 'ab' })
    await a.set('x:1', 1)
    await a.set('y', 2)
    await b.set('x:2', 3)
    expect(await listAll(listKeys(a))).toEqual(['x:1', 'y'])
    expect(await listAll(listKeys(a, { prefix: 'x:' }))).toEqual(['x:1'])
  })
})
