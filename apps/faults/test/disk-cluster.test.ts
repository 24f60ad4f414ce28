/**
 * One disk cache shared by the two workers of a node:cluster app: both serve with exact counters;
 * a worker SIGKILLed in the middle of writes leaves the survivor serving and a cache that reopens
 * without a rebuild, every value intact or absent.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { diskBackend } from '@cache/disk'
import { afterAll, describe, expect, it } from 'vitest'
import { sleep, within } from './support/bounded.js'
import { recordFigures } from './support/figures.js'

const SCRIPT = join(dirname(fileURLToPath(import.meta.url)), '..', 'scripts', 'disk-cluster.mjs')
const BEFORE_KILL = 400
const AFTER_KILL = 200
const CONCURRENCY = 8

interface ClusterApp {
  child: ChildProcess
  port: number
  workers: number[]
  /** Resolves with the pid of the next worker that exits. */
  nextExit(): Promise<number>
}

async function startCluster(directory: string): Promise<ClusterApp> {
  const child = spawn(process.execPath, [SCRIPT, directory], { stdio: ['ignore', 'pipe', 'inherit'] })
  const lines = createInterface({ input: child.stdout! })
  const exits: number[] = []
  const exitWaiters: ((pid: number) => void)[] = []
  let ready: (info: { port: number; workers: number[] }) => void
  const started = new Promise<{ port: number; workers: number[] }>((resolve) => {
    ready = resolve
  })
  lines.on('line', (line) => {
    const message = JSON.parse(line)
    if (message.port) ready(message)
    if (message.exit) {
      const waiter = exitWaiters.shift()
      if (waiter) waiter(message.exit)
      else exits.push(message.exit)
    }
  })
  const { port, workers } = await within(15_000, started, 'cluster start')
  return {
    child,
    port,
    workers,
    nextExit: () =>
      exits.length > 0
        ? Promise.resolve(exits.shift()!)
        : new Promise((resolve) => exitWaiters.push(resolve)),
  }
}

async function call(port: number, path: string): Promise<{ pid: number; [k: string]: unknown }> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(5_000) })
  const text = await response.text()
  if (response.status !== 200) throw new Error(`${path}: ${response.status} ${text}`)
  return JSON.parse(text)
}

/** `count` requests, `CONCURRENCY` at a time. */
async function many(port: number, path: string, count: number) {
  const results: { pid: number; [k: string]: unknown }[] = []
  let next = 0
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < count) {
        next++
        results.push(await call(port, path))
      }
    }),
  )
  return results
}

const root = mkdtempSync(join(tmpdir(), 'cache-faults-cluster-'))
afterAll(() => rmSync(root, { recursive: true, force: true }))

describe('a disk cache shared by a 2-worker cluster', () => {
  it('serves from both workers with exact counters, survives a worker killed mid-write, reopens cleanly', async () => {
    const directory = join(root, 'cache')
    const app = await startCluster(directory)
    try {
      const first = await many(app.port, '/incr', BEFORE_KILL)
      const servedBy = new Set(first.map((r) => r.pid))
      expect([...servedBy].sort()).toEqual([...app.workers].sort())
      // Every increment returned a distinct number: 1..N, none lost, none doubled.
      expect(first.map((r) => r.n as number).sort((a, b) => a - b)).toEqual(
        Array.from({ length: BEFORE_KILL }, (_, i) => i + 1),
      )

      // One worker starts writing large and small values in a loop; kill it in the middle.
      const churner = (await call(app.port, '/churn')).pid
      await sleep(400)
      process.kill(churner, 'SIGKILL')
      expect(await within(5_000, app.nextExit(), 'worker exit')).toBe(churner)
      const survivor = app.workers.find((pid) => pid !== churner)!

      const after = await many(app.port, '/incr', AFTER_KILL)
      expect(new Set(after.map((r) => r.pid))).toEqual(new Set([survivor]))
      expect((await call(app.port, '/count')).n).toBe(BEFORE_KILL + AFTER_KILL)
      const verified = await call(app.port, '/verify')
      expect(verified.intact as number).toBeGreaterThan(0)

      app.child.kill('SIGTERM')
      await within(5_000, new Promise((resolve) => app.child.once('exit', resolve)), 'cluster exit')

      // Reopened by a new process (this one): no rebuild, every value intact, writable.
      const reopened = diskBackend({ path: directory, namespace: 'cluster-app' })
      try {
        expect(reopened.recovered).toBeUndefined()
        expect(await reopened.get('hits')).toBe(BEFORE_KILL + AFTER_KILL)
        let intact = 0
        for (let i = 0; i < 20; i++) {
          const value = (await reopened.get(`churn:${i}`)) as { i: number; body: Buffer } | undefined
          if (value === undefined) continue
          expect(value.i).toBe(i)
          expect(Buffer.isBuffer(value.body)).toBe(true)
          intact++
        }
        expect(intact).toBeGreaterThan(0)
        expect(await reopened.incr('hits')).toBe(BEFORE_KILL + AFTER_KILL + 1)
        const pruned = await reopened.prune({ orphanAgeMs: 0 })
        recordFigures(
          {
            scenario: 'disk, 2-worker cluster',
            metric: 'requests served before the kill',
            value: BEFORE_KILL,
          },
          {
            scenario: 'disk, 2-worker cluster',
            metric: 'requests failed after a worker was SIGKILLed mid-write',
            value: 0,
            bar: '0',
            ok: true,
          },
          {
            scenario: 'disk, 2-worker cluster',
            metric: 'counter after 600 incr across both workers',
            value: BEFORE_KILL + AFTER_KILL,
            bar: `= ${BEFORE_KILL + AFTER_KILL}`,
            ok: true,
          },
          {
            scenario: 'disk, 2-worker cluster',
            metric: 'reopened: rebuilt / damaged values / orphan files pruned',
            value: `no / 0 / ${pruned.orphans}`,
            bar: 'no / 0',
            ok: true,
          },
        )
      } finally {
        await reopened.close()
      }
    } finally {
      app.child.kill('SIGKILL')
    }
  })
})
