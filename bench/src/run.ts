/**
 * `pnpm bench`: runs every scenario's contestants side by side, one child process per
 * contestant × workload, and writes results/latest.{md,json}.
 *
 *   --quick                 few short rounds (a smoke run; writes results/partial.*)
 *   --only a,b              only these scenarios (memory, memoize, redis, memcached, disk, multi-level, http)
 *   --contestants a,b       only these contestant ids
 *   --readme                also regenerate the Performance section of the root README.md
 *   --out <dir>             where to write the results (default: bench/results)
 *   --profile <id>          run that contestant's rows under `node --cpu-prof` (profiles in bench/profiles)
 */
import { execFileSync, fork } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { type MemcachedServer, type RedisServer, startMemcached, startRedis } from '@cache/test-servers'
import autocannon from 'autocannon'
import type { Contestant, Environment, Scenario, Workload } from './contestant.js'
import { WORKLOAD_LABEL } from './contestant.js'
import { BENCH_DIR, isBuilt, versionOf } from './load.js'
import { FULL, type Plan, QUICK, summarize } from './measure.js'
import { PATH } from './scenarios/http.js'
import { scenarios } from './scenarios/index.js'
import {
  addRatios,
  evaluateTargets,
  formatRate,
  type Report,
  type Row,
  readmeSection,
  type ScenarioReport,
  toMarkdown,
  updateReadme,
} from './report.js'
import type { WorkerResult, WorkerSpec } from './worker.js'

const ROW_TIMEOUT_MS = 180_000
const HTTP = {
  connections: 32,
  full: { warmup: 2, seconds: 4, rounds: 3 },
  quick: { warmup: 1, seconds: 1, rounds: 1 },
}

export interface RunOptions {
  quick?: boolean
  only?: string[]
  contestants?: string[]
  out?: string
  readme?: boolean
  profile?: string
}

export async function runBench(options: RunOptions): Promise<Report> {
  const plan: Plan = options.quick ? QUICK : FULL
  const http = options.quick ? HTTP.quick : HTTP.full
  const selected = scenarios.filter((s) => !options.only || options.only.includes(s.id))
  if (options.only) {
    const unknown = options.only.filter((id) => !scenarios.some((s) => s.id === id))
    if (unknown.length)
      throw new Error(
        `unknown scenario(s) ${unknown.join(', ')}: use ${scenarios.map((s) => s.id).join(', ')}`,
      )
  }
  const versions: Record<string, string> = { node: process.versions.node }
  const reports: ScenarioReport[] = []
  let failed = 0
  for (const scenario of selected) {
    const contestants = scenario.contestants.filter(
      (c) => !options.contestants || options.contestants.includes(c.id),
    )
    if (contestants.length === 0) continue
    console.log(`\n== ${scenario.title}`)
    const servers = await startServers(scenario)
    const report: ScenarioReport = { id: scenario.id, title: scenario.title, notes: [], rows: [] }
    try {
      for (const contestant of contestants) {
        for (const name of contestant.packages) versions[name] ??= versionOf(name)
        if (contestant.note) report.notes.push(`${contestant.label}: ${contestant.note}`)
        for (const workload of contestant.workloads) {
          const row = await runRow(scenario, contestant, workload, servers, plan, http, options)
          report.rows.push(row)
          log(row)
          if (row.status === 'failed') failed++
        }
      }
    } finally {
      await servers.stop()
    }
    report.rows.sort((a, b) => workloadOrder(a.workload) - workloadOrder(b.workload))
    addRatios(report, new Map(scenario.contestants.map((c) => [c.id, c.baseline])))
    reports.push(report)
  }
  const full = !options.quick && !options.only && !options.contestants
  const result: Report = {
    generatedAt: new Date().toISOString(),
    mode: options.quick ? 'quick' : 'full',
    complete: full,
    plan: { ...plan, httpRounds: http.rounds, httpSeconds: http.seconds, httpConnections: HTTP.connections },
    machine: {
      node: process.versions.node,
      platform: `${process.platform} ${process.arch}`,
      cpu: cpus()[0]?.model.trim() ?? 'unknown',
      cores: cpus().length,
    },
    commit: gitCommit(),
    versions: Object.fromEntries(Object.entries(versions).sort(([a], [b]) => a.localeCompare(b))),
    scenarios: reports,
    targets: evaluateTargets(reports),
  }
  const out = options.out ?? join(BENCH_DIR, 'results')
  mkdirSync(out, { recursive: true })
  const base = join(out, full ? 'latest' : 'partial')
  writeFileSync(`${base}.json`, `${JSON.stringify(result, null, 2)}\n`)
  writeFileSync(`${base}.md`, toMarkdown(result))
  console.log(`\nwrote ${base}.md and ${base}.json`)
  for (const t of result.targets.filter((t) => t.holds !== null)) {
    console.log(
      `${t.holds ? 'holds ' : 'MISSES'} ${t.scenario} ${t.workload} ${t.ours} vs ${t.reference}: ${t.ratio!.toFixed(2)}× (target ${t.min}×)`,
    )
  }
  if (options.readme) {
    updateReadme(join(BENCH_DIR, '..', 'README.md'), readmeSection(result))
    console.log('updated the Performance section of README.md')
  }
  if (failed > 0) {
    console.error(`\n${failed} row(s) FAILED: see above`)
    process.exitCode = 1
  }
  return result
}

const workloadOrder = (w: Workload) => ['get-hit', 'set', 'mixed', 'http'].indexOf(w)

function log(row: Row): void {
  const head = `${row.scenario.padEnd(11)} ${WORKLOAD_LABEL[row.workload].padEnd(17)} ${row.label.padEnd(48)}`
  if (row.status === 'ok')
    console.log(
      `${head} ${formatRate(row.median).padStart(9)} ${row.unit} ±${(row.spread! * 100).toFixed(1)}%`,
    )
  else if (row.status === 'skipped') console.log(`${head} skipped: ${row.reason}`)
  else console.error(`${head} ✗ FAILED: ${row.reason}`)
}

interface Servers {
  redis?: RedisServer
  memcached?: MemcachedServer
  /** Empties the harness's own servers between rows. */
  reset(): Promise<void>
  stop(): Promise<void>
}

async function startServers(scenario: Scenario): Promise<Servers> {
  const wanted = scenario.servers ?? []
  // `spawn: true`: never run against (and flush) a server the user pointed REDIS_URL at.
  const redis = wanted.includes('redis') ? await startRedis({ spawn: true }) : undefined
  const memcached = wanted.includes('memcached')
    ? await startMemcached({ spawn: true, memoryMb: 256 })
    : undefined
  return {
    redis,
    memcached,
    async reset() {
      if (redis)
        execFileSync('redis-cli', ['-h', redis.host, '-p', String(redis.port), 'FLUSHALL'], {
          stdio: 'ignore',
        })
      if (memcached) await flushMemcached(memcached)
    },
    async stop() {
      await redis?.stop()
      await memcached?.stop()
    },
  }
}

async function flushMemcached(server: MemcachedServer): Promise<void> {
  const { default: memjs } = await import('memjs')
  const client = memjs.Client.create(server.server, { retries: 0 })
  await client.flush()
  client.close()
}

function environment(servers: Servers): Environment {
  return {
    redisUrl: servers.redis?.url,
    redisHost: servers.redis?.host,
    redisPort: servers.redis?.port,
    memcached: servers.memcached?.server,
    dir: mkdtempSync(join(tmpdir(), 'cache-bench-')),
  }
}

async function runRow(
  scenario: Scenario,
  contestant: Contestant,
  workload: Workload,
  servers: Servers,
  plan: Plan,
  http: { warmup: number; seconds: number; rounds: number },
  options: RunOptions,
): Promise<Row> {
  const row: Row = {
    scenario: scenario.id,
    contestant: contestant.id,
    label: contestant.label,
    role: contestant.role,
    workload,
    concurrency: workload === 'http' ? HTTP.connections : (contestant.concurrency ?? 1),
    unit: workload === 'http' ? 'req/s' : 'ops/s',
    status: 'ok',
  }
  const missing = contestant.needs?.split(',').filter((name) => !isBuilt(name))
  if (missing?.length) return { ...row, status: 'skipped', reason: `${missing.join(', ')} not built yet` }
  await servers.reset()
  const env = environment(servers)
  try {
    let result: { rates: number[]; gets?: number; hits?: number; failure?: string }
    if (contestant.external)
      result = await contestant.external(env, workload, {
        rounds: plan.rounds,
        quick: options.quick === true,
      })
    else if (contestant.serve) result = await runHttp(scenario, contestant, http, options)
    else
      result = await runWorker(
        { scenario: scenario.id, contestant: contestant.id, workload, plan, env },
        options.profile === contestant.id,
      )
    const stats = summarize(result.rates)
    Object.assign(row, stats, { rounds: result.rates, gets: result.gets, hits: result.hits })
    if (result.failure) Object.assign(row, { status: 'failed', reason: result.failure })
  } catch (error) {
    Object.assign(row, { status: 'failed', reason: (error as Error).message.split('\n')[0] })
  } finally {
    rmSync(env.dir, { recursive: true, force: true })
  }
  return row
}

function runWorker(spec: WorkerSpec, profile: boolean): Promise<WorkerResult> {
  const profileDir = join(BENCH_DIR, 'profiles')
  return new Promise((resolve, reject) => {
    const child = fork(join(BENCH_DIR, 'dist', 'worker.js'), [JSON.stringify(spec)], {
      execArgv: profile
        ? [
            '--cpu-prof',
            '--cpu-prof-dir',
            profileDir,
            '--cpu-prof-name',
            `${spec.contestant}-${spec.workload}.cpuprofile`,
          ]
        : [],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    let settled = false
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      finish(() => reject(new Error(`timed out after ${ROW_TIMEOUT_MS / 1000} s`)))
    }, ROW_TIMEOUT_MS)
    const finish = (done: () => void) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      done()
    }
    child.on('message', (message: { type: string; result?: WorkerResult; message?: string }) => {
      if (message.type === 'result') finish(() => resolve(message.result!))
      else finish(() => reject(new Error(message.message)))
    })
    child.on('exit', (code, signal) =>
      finish(() => reject(new Error(`worker exited (${signal ?? code}) without a result`))),
    )
  })
}

/** Starts the row's server in its own process and loads it with autocannon from this one. */
async function runHttp(
  scenario: Scenario,
  contestant: Contestant,
  http: { warmup: number; seconds: number; rounds: number },
  options: RunOptions,
): Promise<{ rates: number[]; failure?: string }> {
  const profileDir = join(BENCH_DIR, 'profiles')
  const child = fork(join(BENCH_DIR, 'dist', 'http-server.js'), [scenario.id, contestant.id], {
    execArgv: options.profile === contestant.id ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : [],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  const ask = <T>(type: string, reply: string): Promise<T> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the server did not answer ${type}`)), 30_000)
      const onMessage = (message: T & { type: string }) => {
        if (message.type !== reply) return
        clearTimeout(timer)
        child.off('message', onMessage)
        resolve(message)
      }
      child.on('message', onMessage)
      if (type !== 'ready') child.send({ type })
    })
  try {
    const { port, cached } = await ask<{ port: number; cached: boolean }>('ready', 'ready')
    const url = `http://127.0.0.1:${port}${PATH}`
    // Prime the cache with one request, then warm up.
    const primed = await fetch(url)
    await primed.arrayBuffer()
    const check = (result: autocannon.Result): string | undefined => {
      if (result.errors || result.timeouts) return `${result.errors} errors, ${result.timeouts} timeouts`
      if (result.non2xx) return `${result.non2xx} non-2xx responses`
      if (result.requests.total > 0 && result.throughput.total / result.requests.total < 10_000)
        return 'responses under 10 KB'
      return undefined
    }
    const load = (seconds: number) =>
      autocannon({
        url,
        connections: HTTP.connections,
        duration: seconds,
        pipelining: 1,
      }) as Promise<autocannon.Result>
    const warm = await load(http.warmup)
    const problem = check(warm)
    if (problem) return { rates: [0], failure: `warm-up: ${problem}` }
    const before = (await ask<{ calls: number }>('routeCalls', 'routeCalls')).calls
    const rates: number[] = []
    for (let r = 0; r < http.rounds; r++) {
      const result = await load(http.seconds)
      const bad = check(result)
      if (bad) return { rates: [0], failure: bad }
      rates.push(result.requests.total / (result.duration || http.seconds))
    }
    const after = (await ask<{ calls: number }>('routeCalls', 'routeCalls')).calls
    if (cached && after !== before)
      return { rates, failure: `the ${PATH} route ran ${after - before} times during the measured rounds` }
    return { rates }
  } finally {
    child.send({ type: 'stop' })
    await new Promise((resolve) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL')
        resolve(undefined)
      }, 5000)
      child.once('exit', () => {
        clearTimeout(timer)
        resolve(undefined)
      })
    })
  }
}

function gitCommit(): string | undefined {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], {
      cwd: BENCH_DIR,
      stdio: ['ignore', 'pipe', 'ignore'],
    })
      .toString()
      .trim()
  } catch {
    return undefined
  }
}

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    contestants: { type: 'string' },
    out: { type: 'string' },
    readme: { type: 'boolean', default: false },
    profile: { type: 'string' },
  },
})
const list = (value: string | undefined) =>
  value
    ?.split(',')
    .map((s) => s.trim())
    .filter(Boolean)
await runBench({
  quick: values.quick,
  only: list(values.only),
  contestants: list(values.contestants),
  out: values.out,
  readme: values.readme,
  profile: values.profile,
})
