import { CacheTimeoutError, listKeys } from '@cache/core'
import { startRedis } from '@cache/test-servers'
import KeyvRedis from '@keyv/redis'
import { describe, expect, it } from 'vitest'
import { keyvBackend } from '../src/index.js'

/** A server that stops answering (SIGSTOP): every operation, listing and close included, is bounded by `timeout`. */
describe('keyvBackend over a frozen store', () => {
  it('fails a listing with CacheTimeoutError within the timeout, counted, when Redis stops answering', async () => {
    const redis = await startRedis({ spawn: true })
    const cache = keyvBackend(new KeyvRedis(redis.url), { namespace: 'frozen', timeout: '200ms' })
    try {
      await cache.set('a', 1)
      expect(await listKeys(cache).next()).toEqual({ value: 'a', done: false })
      await redis.process!.freeze()
      const started = Date.now()
      const error = await Promise.race([
        (async () => {
          for await (const _ of listKeys(cache));
        })().catch((e) => e),
        new Promise((resolve) => setTimeout(resolve, 3000, 'still pending after 3000 ms')),
      ])
      expect(error).toBeInstanceOf(CacheTimeoutError)
      expect(Date.now() - started).toBeLessThan(2000)
      expect(cache.stats.timeouts).toBe(1)
    } finally {
      redis.process!.thaw()
      await cache.close()
      await redis.stop()
    }
  })

  it('bounds close() by the timeout when the store’s disconnect never answers, and counts it', async () => {
    const rows = new Map<string, unknown>()
    const store = {
      get: async (key: string) => rows.get(key),
      set: async (key: string, value: unknown) => void rows.set(key, value),
      delete: async (key: string) => rows.delete(key),
      clear: async () => rows.clear(),
      disconnect: () => new Promise<void>(() => {}),
      on: () => store,
    }
    const cache = keyvBackend(store as never, { namespace: 'ns', timeout: '100ms', closeStore: true })
    const events: unknown[] = []
    cache.on('error', (event) => events.push(event))
    const started = Date.now()
    await cache.close()
    expect(Date.now() - started).toBeLessThan(1000)
    expect(cache.stats.timeouts).toBe(1)
    expect(events).toHaveLength(1)
  })
})
