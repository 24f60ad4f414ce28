import { configErrorOf } from '@cache/testing'
import { memoryBackend } from '@cache/memory'
import { Keyv } from 'keyv'
import { describe, expect, it } from 'vitest'
import { type KeyvBackendOptions, type KeyvStoreOptions, keyvBackend, toKeyvStore } from '../src/index.js'

describe('keyv option names', () => {
  it("keyvBackend refuses a misspelt namespace before writing to the store under Keyv's shared default", () => {
    const store = new Map()
    const error = configErrorOf(() => keyvBackend(store, { namspace: 'shop' } as KeyvBackendOptions))
    expect(error.setting).toBe('namspace')
    expect(error.message).toBe('namspace: not an option of keyvBackend(); did you mean `namespace`?')
    expect(store.size).toBe(0)
  })

  it('toKeyvStore refuses a misspelt option instead of answering failures as misses', () => {
    const error = configErrorOf(() =>
      toKeyvStore(memoryBackend(), { throwOnError: true } as KeyvStoreOptions),
    )
    expect(error.setting).toBe('throwOnError')
    expect(error.message).toBe('throwOnError: not an option of toKeyvStore(); did you mean `throwOnErrors`?')
  })

  it('accepts every documented option at once', async () => {
    const all: Required<KeyvBackendOptions> = {
      namespace: 'all',
      defaultTtl: 60,
      logger: false,
      timeout: undefined as never,
      // The current name given as undefined, the deprecated one with a value (both is refused).
      timeoutMs: 1000,
      closeStore: true,
      hostOnly: false,
      shared: false,
    }
    const cache = keyvBackend(new Map(), all)
    await cache.set('k', 1)
    expect(await cache.get('k')).toBe(1)
    await cache.close()
    const storeOptions: Required<KeyvStoreOptions> = { closeOnDisconnect: true, throwOnErrors: true }
    const keyv = new Keyv({ store: toKeyvStore(memoryBackend(), storeOptions) })
    await keyv.set('k', 2)
    expect(await keyv.get('k')).toBe(2)
    await keyv.disconnect()
  })
})
