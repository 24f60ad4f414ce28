/**
 * Contention across processes: 4 processes run `incr` and `atomicUpdate` on the same two keys of
 * one shared backend at the same time; the totals must be exact (no lost or doubled update).
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { CacheBackend } from '@cache/core'
import { diskBackend } from '@cache/disk'
import { memcachedBackend } from '@cache/memcached'
import { redisBackend } from '@cache/redis'
import { startMemcached, startRedis } from '@cache/test-servers'
import { afterAll, describe, expect, it } from 'vitest'
import { within } from './support/bounded.js'
import { recordFigures } from './support/figures.js'

const SCRIPT = join(dirname(fileURLToPath(import.meta.url)), '..', 'scripts', 'contention.mjs')
const PROCESSES = 4
const INCR = 500
const UPDATES = 100

interface WorkerResult {
  pid: number
  ms: number
  fnCalls: number
}

function startWorker(config: object): { go(): void; done: Promise<WorkerResult> } {
  const child = spawn(process.execPath, [SCRIPT, JSON.stringify(config)], { stdio: ['pipe', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk) => {
    stdout += chunk
  })
  child.stderr.on('data', (chunk) => {
    stderr += chunk
  })
  const done = new Promise<WorkerResult>((resolve, reject) => {
    child.once('exit', (code) => {
      if (code === 0) resolve(JSON.parse(stdout))
      else reject(new Error(`contention worker exited with ${code}: ${stderr}`))
    })
  })
  return {
    go: () => child.stdin.end('go\n'),
    done: within(60_000, done, 'contention worker').finally(() => child.kill('SIGKILL')),
  }
}

const root = mkdtempSync(join(tmpdir(), 'cache-faults-contention-'))
const stops: (() => Promise<void>)[] = []
afterAll(async () => {
  await Promise.all(stops.map((stop) => stop()))
  rmSync(root, { recursive: true, force: true })
})

const targets: [string, () => Promise<{ target: string; open: (namespace: string) => CacheBackend }>][] = [
  [
    'disk',
    async () => {
      const path = join(root, 'disk')
      return { target: path, open: (namespace) => diskBackend({ path, namespace }) }
    },
  ],
  [
    'redis',
    async () => {
      const server = await startRedis()
      stops.push(() => server.stop())
      return { target: server.url, open: (namespace) => redisBackend(server.url, { namespace }) }
    },
  ],
  [
    'memcached',
    async () => {
      const server = await startMemcached()
      stops.push(() => server.stop())
      return { target: server.server, open: (namespace) => memcachedBackend(server.server, { namespace }) }
    },
  ],
]

describe(`${PROCESSES} processes × ${INCR} incr and ${UPDATES} atomicUpdate on the same keys`, () => {
  it.each(targets)('%s: exact totals', async (name, setup) => {
    const { target, open } = await setup()
    const namespace = `contention-${process.pid}-${Date.now()}`
    const workers = Array.from({ length: PROCESSES }, () =>
      startWorker({ backend: name, target, namespace, incr: INCR, updates: UPDATES }),
    )
    // Give every process time to load and connect, then start them together.
    await new Promise((resolve) => setTimeout(resolve, 600))
    const started = performance.now()
    for (const worker of workers) worker.go()
    const results = await Promise.all(workers.map((w) => w.done))
    const wallMs = performance.now() - started

    const check = open(namespace)
    try {
      const counter = await check.get('contended:counter')
      const record = (await check.get('contended:record')) as { n: number; writers: Record<string, number> }
      const retries = results.reduce((sum, r) => sum + r.fnCalls, 0) - PROCESSES * UPDATES
      recordFigures(
        {
          scenario: `contention: ${name}`,
          metric: `incr total (${PROCESSES} × ${INCR})`,
          value: counter as number,
          bar: `= ${PROCESSES * INCR}`,
          ok: counter === PROCESSES * INCR,
        },
        {
          scenario: `contention: ${name}`,
          metric: `atomicUpdate total (${PROCESSES} × ${UPDATES})`,
          value: record?.n,
          bar: `= ${PROCESSES * UPDATES}`,
          ok: record?.n === PROCESSES * UPDATES,
        },
        {
          scenario: `contention: ${name}`,
          metric: 'atomicUpdate retries (fn re-run on conflict)',
          value: retries,
        },
        { scenario: `contention: ${name}`, metric: 'wall time (ms)', value: wallMs.toFixed(0) },
      )
      expect(counter).toBe(PROCESSES * INCR)
      expect(record.n).toBe(PROCESSES * UPDATES)
      // Each process's own updates all landed.
      expect(Object.values(record.writers).sort()).toEqual(Array(PROCESSES).fill(UPDATES))
      expect(Object.keys(record.writers).sort()).toEqual(results.map((r) => String(r.pid)).sort())
    } finally {
      await check.close()
    }
  })
})
