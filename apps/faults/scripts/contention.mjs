// One of several processes hammering the same keys with incr and atomicUpdate.
// Usage: node scripts/contention.mjs '<json>' where json = { backend, target, namespace, incr, updates }
// `backend` is disk | redis | memcached and `target` its directory, URL or host:port.
// Waits for a line on stdin (so every process starts together), then prints one JSON result line.
import { diskBackend } from '@cache/disk'
import { memcachedBackend } from '@cache/memcached'
import { redisBackend } from '@cache/redis'

const { backend: kind, target, namespace, incr, updates } = JSON.parse(process.argv[2])
const cache =
  kind === 'disk'
    ? diskBackend({ path: target, namespace })
    : kind === 'redis'
      ? redisBackend(target, { namespace, timeout: '2s' })
      : memcachedBackend(target, { namespace, timeout: '2s' })

await new Promise((resolve) => process.stdin.once('data', resolve))
const started = performance.now()
let calls = 0
const IN_FLIGHT = 4

/** Runs `count` operations, IN_FLIGHT at a time. */
async function run(count, op) {
  let next = 0
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next < count) {
        next++
        await op()
      }
    }),
  )
}

await Promise.all([
  run(incr, () => cache.incr('contended:counter')),
  run(updates, () =>
    cache.atomicUpdate('contended:record', (current) => {
      calls++
      const record = current ?? { n: 0, writers: {} }
      // A new object each call: a retried fn must not see its own earlier attempt.
      return {
        n: record.n + 1,
        writers: { ...record.writers, [process.pid]: (record.writers[process.pid] ?? 0) + 1 },
      }
    }),
  ),
])
const ms = performance.now() - started
await cache.close()
process.stdout.write(`${JSON.stringify({ pid: process.pid, ms, fnCalls: calls })}\n`)
