/**
 * Stale-while-revalidate under `node:cluster` (pm2's cluster mode): two real workers of one Nest
 * app on platform-express share a port and a real redis-server. A refresh must run in the worker
 * whose stale hit started it, as the request it refreshes (the client's address), and land.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { request } from 'node:http'
import { join } from 'node:path'
import { type RedisServer, startRedis } from '@cache/test-servers'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const CLIENT = '127.0.0.2'
let redis: RedisServer
let primary: ChildProcess | undefined

beforeAll(async () => {
  redis = await startRedis()
})
afterAll(async () => {
  if (primary !== undefined && primary.exitCode === null) {
    primary.stdin?.end()
    await new Promise((resolve) => {
      const timer = setTimeout(() => {
        primary?.kill('SIGKILL')
        resolve(undefined)
      }, 5000)
      primary?.once('exit', () => {
        clearTimeout(timer)
        resolve(undefined)
      })
    })
  }
  await redis?.stop()
})

interface Reply {
  run: number
  pid: number
  ip: string
  cache: string
  /** The worker that answered (the body's `pid` is the worker whose run is replayed). */
  worker: number
}

/** One request on a connection of its own (so that the cluster deals it to the next worker). */
function get(port: number): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path: '/price', localAddress: CLIENT, agent: false, timeout: 5000 },
      (res) => {
        let text = ''
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => (text += chunk))
        res.on('end', () =>
          resolve({
            ...JSON.parse(text),
            cache: String(res.headers['cache-status']),
            worker: Number(res.headers['x-worker']),
          }),
        )
      },
    )
    req.on('error', reject)
    req.on('timeout', () => req.destroy(new Error('timed out')))
    req.end()
  })
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe('@CacheResponse on platform-express under node:cluster (2 workers, one port)', () => {
  it('a stale hit refreshes the entry in the worker that served it, as the client, and the refresh lands', async () => {
    primary = spawn(process.execPath, [join(__dirname, 'fixtures/cluster-app.mjs')], {
      cwd: join(__dirname, '..'),
      env: { ...process.env, REDIS_URL: redis.url, WORKERS: '2' },
      stdio: ['pipe', 'pipe', 'inherit'],
    })
    const copies: number[] = []
    let output = ''
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no workers ready: ${output}`)), 15_000)
      primary!.stdout!.setEncoding('utf8')
      primary!.stdout!.on('data', (chunk: string) => {
        output += chunk
        for (const match of chunk.matchAll(/copy (\d+)/g)) copies.push(Number(match[1]))
        const ready = /ready (\d+)/.exec(output)
        if (ready !== null) {
          clearTimeout(timer)
          resolve(Number(ready[1]))
        }
      })
    })
    const first = await get(port)
    expect(first.run).toBe(1)
    expect(first.ip).toBe(CLIENT)
    await sleep(400)
    // Stale hits, each on a new connection: the workers take turns. The entry is refreshed
    // (a later run is replayed as a hit) well within 3 s.
    const replies: Reply[] = []
    for (let i = 0; i < 20; i++) {
      const reply = await get(port)
      replies.push(reply)
      if (reply.run > 1 && reply.cache.includes('hit')) break
      await sleep(150)
    }
    const refreshed = replies.find((reply) => reply.run > 1 && reply.cache.includes('hit'))
    expect(refreshed, JSON.stringify(replies)).toBeDefined()
    // The refresh ran as the request it refreshes: the client's address, not loopback.
    expect(refreshed!.ip).toBe(CLIENT)
    // The first refresh ran in the worker whose stale hit started it.
    const firstStale = replies.find((reply) => reply.run === 1)
    expect(firstStale).toBeDefined()
    expect(copies[0]).toBe(firstStale!.worker)
  })
})
