// A 2-worker node:cluster app sharing one disk cache, as a user would deploy it.
// Usage: node scripts/disk-cluster.mjs <cache directory>
// The primary prints `{"port":…,"workers":[pid,pid]}` once both workers listen, and `{"exit":pid}`
// when a worker dies (it is not replaced, so a test can see the survivor keep serving).
import cluster from 'node:cluster'
import { createHash } from 'node:crypto'
import { createServer } from 'node:http'
import { diskBackend } from '@cache/disk'

const directory = process.argv[2]
if (!directory) throw new Error('usage: disk-cluster.mjs <cache directory>')

if (cluster.isPrimary) {
  const listening = new Map()
  for (let i = 0; i < 2; i++) cluster.fork()
  cluster.on('listening', (worker, address) => {
    listening.set(worker.process.pid, address.port)
    if (listening.size === 2) {
      const [port] = listening.values()
      process.stdout.write(`${JSON.stringify({ port, workers: [...listening.keys()] })}\n`)
    }
  })
  cluster.on('exit', (worker) => process.stdout.write(`${JSON.stringify({ exit: worker.process.pid })}\n`))
  process.on('SIGTERM', () => {
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGTERM')
    setTimeout(() => process.exit(0), 200)
  })
} else {
  const cache = diskBackend({ path: directory, namespace: 'cluster-app' })
  let churning = false

  /** A value that carries its own checksum, so a torn write could never pass for a good one. */
  const makeValue = (i, round) => {
    const body = Buffer.alloc(96 * 1024, `${i}:${round}:`)
    return { i, round, sha: createHash('sha256').update(body).digest('hex'), body }
  }
  const intact = (value) =>
    Buffer.isBuffer(value.body) && createHash('sha256').update(value.body).digest('hex') === value.sha

  const routes = {
    '/incr': async () => ({ n: await cache.incr('hits') }),
    '/count': async () => ({ n: (await cache.get('hits')) ?? 0 }),
    // Writes large values (files) and small ones in a loop, until this worker is killed.
    '/churn': async () => {
      churning = true
      void (async () => {
        for (let round = 0; churning; round++) {
          for (let i = 0; i < 20 && churning; i++) {
            await cache.set(`churn:${i}`, makeValue(i, round))
            await cache.set(`small:${i}`, { i, round })
          }
        }
      })()
      return { churning }
    },
    // Every churn key is a miss or an intact value: never torn, never a decode error.
    '/verify': async () => {
      let intactCount = 0
      let missing = 0
      for (let i = 0; i < 20; i++) {
        const value = await cache.get(`churn:${i}`)
        if (value === undefined) missing++
        else if (intact(value) && value.i === i) intactCount++
        else throw new Error(`churn:${i} is damaged`)
      }
      return { intact: intactCount, missing }
    },
  }

  createServer(async (req, res) => {
    const route = routes[req.url ?? '']
    try {
      if (!route) throw new Error(`no route ${req.url}`)
      const body = { ...(await route()), pid: process.pid }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body))
    } catch (error) {
      res.writeHead(500).end(String(error?.stack ?? error))
    }
  }).listen(0, '127.0.0.1')
  process.on('SIGTERM', async () => {
    churning = false
    await cache.close()
    process.exit(0)
  })
}
