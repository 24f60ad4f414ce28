// One app process sharing a cache: multiLevel(memory, redis) with the invalidation bus, driven by
// JSON lines on stdin and answering JSON lines on stdout.
// Usage: node scripts/bus-peer.mjs '<json>' where json = { l2, bus, namespace, heartbeat? }:
// `l2` the Redis URL of the shared level, `bus` the Redis URL of the bus (may go through a proxy).
// Times are epoch ms with sub-millisecond precision (performance.timeOrigin + performance.now()),
// comparable between processes of one machine.
import { createInterface } from 'node:readline'
import { memoryBackend } from '@cache/memory'
import { multiLevel, redisBus } from '@cache/multi-level'
import { redisBackend } from '@cache/redis'

const { l2, bus: busUrl, namespace, heartbeat } = JSON.parse(process.argv[2])
const now = () => performance.timeOrigin + performance.now()
const l1 = memoryBackend({ namespace })
const bus = redisBus(busUrl, heartbeat ? { heartbeat } : {})
const cache = multiLevel({ levels: [l1, redisBackend(l2, { namespace })], bus })
cache.on('error', () => {})
/** When each key was last evicted from L1 by another process's message. */
const evicted = new Map()
l1.on('delete', (event) => evicted.set(event.key, now()))
const linkDowns = []
bus.on('link-down', () => linkDowns.push(now()))
await bus.ready()

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const inL1 = (key) => l1.sync.getEntry(key) !== undefined

const ops = {
  /** Writes each key; the time each write resolved. */
  write: async ({ keys, value, paceMs = 0 }) => {
    const done = {}
    for (const key of keys) {
      await cache.set(key, value)
      done[key] = now()
      if (paceMs) await sleep(paceMs)
    }
    await bus.flush()
    return done
  },
  /** Reads each key (so L1 holds it); the keys L1 now holds. */
  prime: async ({ keys }) => {
    for (const key of keys) await cache.get(key)
    evicted.clear()
    return keys.filter(inL1)
  },
  get: ({ key }) => cache.get(key),
  inL1: ({ key }) => inL1(key),
  evictions: () => Object.fromEntries(evicted),
  stats: () => ({ bus: bus.stats, state: bus.state, linkDowns }),
  close: async () => {
    await cache.close()
    await bus.close()
    setImmediate(() => process.exit(0))
  },
}

const reply = (message) => process.stdout.write(`${JSON.stringify(message)}\n`)
reply({ ready: true, pid: process.pid })
for await (const line of createInterface({ input: process.stdin })) {
  const command = JSON.parse(line)
  try {
    reply({ id: command.id, result: (await ops[command.op](command)) ?? null })
  } catch (error) {
    reply({ id: command.id, error: String(error) })
  }
}
