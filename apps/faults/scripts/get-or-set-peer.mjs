// Another application process of the getOrSet/grace tests: it configures the same cache as the
// test process (a backend list, a namespace, REDIS_URL) and does what the test asks over IPC:
// invalidate, or read a key whose function fails (its upstream is down here too). Its clock is
// set to the test's fake clock with every request, so both agree on what is fresh.
import { cached, configureCache, getOrSet, invalidateKeys, invalidateTags } from '@cache/core'

const spec = JSON.parse(process.argv[2])
const realNow = Date.now
let offset = 0
Date.now = () => realNow() + offset

const { chain, ...options } = spec
const backend = configureCache({ ...options, backend: chain })
// Failures of a level are counted and evented; this process has no logger to print them to.
backend.on?.('error', () => {})

let calls = 0
async function upstream() {
  calls++
  throw new Error('upstream down (peer)')
}
const memos = new Map()
function memo(name, options) {
  let found = memos.get(name)
  if (found === undefined) memos.set(name, (found = cached(upstream, { ...options, backend, name })))
  return found
}

const ops = {
  invalidateKey: (key) => invalidateKeys([key]),
  invalidate: (name) => memo(name, {}).invalidate(),
  clear: (name) => memo(name, {}).clear(),
  invalidateTags: (tag) => invalidateTags([tag]),
  getOrSet: (key, options) => getOrSet(backend, key, upstream, options),
  call: (name, options) => memo(name, options)(),
  calls: () => calls,
}

process.on('message', async ({ id, now, op, args }) => {
  offset = now - realNow()
  try {
    process.send({ id, result: await ops[op](...args) })
  } catch (error) {
    process.send({ id, error: String(error?.message ?? error) })
  }
})
process.on('disconnect', () => process.exit(0))
process.send({ ready: true })
