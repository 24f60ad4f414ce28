import { runConformance } from '@cache/testing'
import { freePort } from '@cache/test-servers'
import { redisBackend } from '../src/index.js'
import { useSingleAndCluster } from './servers.js'

const servers = useSingleAndCluster()

// Keys are stored as `namespace:key` (readable by any Redis tool), so namespaces nest at `:` as
// the README says (`users` owns `users:eu`); every other pair of namespaces stays apart.
const namespaceSeparator = ':'

runConformance('redis (single node)', {
  create: ({ namespace }) => redisBackend(servers.singleUrl(), { namespace }),
  createDown: async ({ namespace }) =>
    redisBackend(`redis://127.0.0.1:${await freePort()}`, { namespace, logger: false }),
  ttlMs: 100,
  namespaceSeparator,
})

runConformance('redis (3-master cluster)', {
  create: ({ namespace }) => redisBackend(servers.clusterUrl(), { namespace }),
  ttlMs: 100,
  namespaceSeparator,
})

runConformance('redis (values as bytes, compressed from 1 KB)', {
  create: ({ namespace }) => redisBackend(servers.singleUrl(), { namespace, compressThreshold: '1KB' }),
  ttlMs: 100,
  namespaceSeparator,
})

// v8 writes what JSON refuses (circular objects, arrays with extra properties): `serializes: false`
// skips those refusals, as for disk with v8. Numbers are v8 bytes, which incr adds to.
runConformance('redis (v8 serializer)', {
  create: ({ namespace }) => redisBackend(servers.singleUrl(), { namespace, serializer: 'v8' }),
  ttlMs: 100,
  namespaceSeparator,
  serializes: false,
})

runConformance('redis (v8 serializer, 3-master cluster)', {
  create: ({ namespace }) => redisBackend(servers.clusterUrl(), { namespace, serializer: 'v8' }),
  ttlMs: 100,
  namespaceSeparator,
  serializes: false,
})

runConformance('redis (near cache)', {
  create: ({ namespace }) => redisBackend(servers.singleUrl(), { namespace, nearCache: true }),
  ttlMs: 100,
  namespaceSeparator,
})
