import { runConformance } from '@cache/testing'
import { freePort, startMemcached } from '@cache/test-servers'
import { afterAll } from 'vitest'
import { memcachedBackend } from '../src/index.js'

const server = await startMemcached()
afterAll(() => server.stop())

runConformance('memcached', {
  create: ({ namespace }) => memcachedBackend(server.server, { namespace }),
  createDown: async ({ namespace }) =>
    memcachedBackend(`127.0.0.1:${await freePort()}`, { namespace, logger: false }),
  // memcached counts whole seconds: the expiry tests need TTLs of a second or more.
  ttlMs: 1500,
  largeValueBytes: 512 * 1024,
  // The memcached protocol cannot list keys: listKeys() throws CacheUnsupportedError.
  listsKeys: false,
})
runConformance('memcached (compression, generation read per operation)', {
  create: ({ namespace }) =>
    memcachedBackend(server.server, { namespace, compressThreshold: '1KB', generationTtl: 0 }),
  ttlMs: 1500,
  listsKeys: false,
})
