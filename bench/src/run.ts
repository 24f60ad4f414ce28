/**
 * `pnpm bench`: runs every scenario's contestants side by side, one child process per
 * contestant × workload, and writes results/latest.{md,json}.
 *
 *   --quick                 few short rounds (a smoke run; writes results/partial.*)
 *   --only a,b              only these scenarios (memory, memoize, redis, memcached, disk, multi-level, http, nestjs)
 *   --contestants a,b       only these contestant ids
 *   --readme                also regenerate the Performance section of the root README.md
 *   --out <dir>             where to write the results (default: bench/results)
 *   --profile <id>          run that contestant's rows under `node --cpu-prof` (profiles in bench/profiles)
 */
import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { type MemcachedServer, type RedisServer, startMemcached, startRedis } from '@cache/test-servers'
import autocannon from 'autocannon'
import type { Contestant, Environment, Scenario, Workload } from './contestant.js'
import { WORKLOAD_LABEL } from './contestant.js'
import { BENCH_DIR, isBuilt, versionOf } from './load.js'
import { FULL, medianOf, type Plan, QUICK, summarize, turnOrder } from './measure.js'
import { PATH } from './scenarios/http.js'
import { scenarios } from './scenarios/index.js'
import {
  addRatios,
  evaluateTargets,
  formatLatency,
  formatRate,
  type Report,
  type Row,
  readmeSection,
  type ScenarioReport,
  toMarkdown,
  updateReadme,
} from './report.js'
import { Child } from './processes.js'
import type { WorkerMessage, WorkerSpec } from './worker.js'

/** 15 rounds, like the other rows (see `FULL` in measure.ts). */
const HTTP = {
  connections: 32,
  full: { warmup: 2, seconds: 1, rounds: 15 },
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
  const loadBefore = loadavg()[0]!
  let failed = 0
  for (const scenario of selected) {
    const contestants = scenario.contestants.filter(
      (c) => !options.contestants || options.contestants.includes(c.id),
    )
    if (contestants.length === 0) continue
    console.log(`\n== ${scenario.title}`)
    const report: ScenarioReport = { id: scenario.id, title: scenario.title, notes: [], rows: [] }
    for (const contestant of contestants) {
      for (const name of contestant.packages) versions[name] ??= versionOf(name)
      if (contestant.note) report.notes.push(`${contestant.label}: ${contestant.note}`)
    }
    const scenarioPlan = options.quick || !scenario.plan ? plan : { ...plan, ...scenario.plan }
    if (scenarioPlan !== plan)
      report.notes.unshift(
        `This scenario runs ${scenarioPlan.rounds} rounds of ~${scenarioPlan.roundMs} ms per row: round trips on a shared machine are noisier than in-process calls.`,
      )
    const servers = await startServers(scenario)
    try {
      for (const workload of WORKLOADS) {
        const group = contestants.filter((c) => c.workloads.includes(workload))
        if (group.length === 0) continue
        const rows = await runGroup(scenario, workload, group, servers, { plan: scenarioPlan, http, options })
        for (const row of rows) {
          log(row)
          if (row.status === 'failed') failed++
        }
        report.rows.push(...rows)
      }
    } finally {
      await servers.stop()
    }
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
      loadAverage: [Number(loadBefore.toFixed(2)), Number(loadavg()[0]!.toFixed(2))],
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
  for (const t of result.targets.filter((t) => t.verdict !== 'not measured')) {
    const band =
      t.low === undefined
        ? ''
        : `, band ${t.low.toFixed(2)}–${t.high!.toFixed(2)}× at ${(t.confidence! * 100).toFixed(1)} %`
    console.log(
      `${t.verdict.toUpperCase().padEnd(12)} ${t.scenario} ${t.workload} ${t.ours} vs ${t.reference}: ${t.ratio!.toFixed(2)}× (target ${t.min}×${band})`,
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

const WORKLOADS: Workload[] = ['get-hit', 'set', 'mixed', 'get-many', 'http']

function log(row: Row): void {
  const head = `${row.scenario.padEnd(11)} ${WORKLOAD_LABEL[row.workload].padEnd(17)} ${row.label.padEnd(48)}`
  if (row.status === 'ok')
    console.log(
      `${head} ${formatRate(row.median).padStart(9)} ${row.unit} ±${(row.spread! * 100).toFixed(1)}%`.padEnd(
        95,
      ) +
        ` p50 ${formatLatency(row.latency?.p50, row.latency?.resolution).padStart(9)}  p99 ${formatLatency(row.latency?.p99, row.latency?.resolution).padStart(9)}`,
    )
  else if (row.status === 'skipped') console.log(`${head} skipped: ${row.reason}`)
  else console.error(`${head} ✗ FAILED: ${row.reason}`)
}

interface Servers {
  redis?: RedisServer
  memcached?: MemcachedServer
  /** Empties the harness's own servers between workloads. */
  reset(): Promise<void>
  stop(): Promise<void>
}

async function startServers(scenario: Scenario): Promise<Servers> {
  const wanted = scenario.servers ?? []
  // `spawn: true`: never run against (and flush) a server the user pointed REDIS_URL at.
  const redis = wanted.includes('redis') ? await startRedis({ spawn: true }) : undefined
  const memcached = wanted.includes('memcached')
    ? await startMemcached({ spawn: true, memoryMb: 512 })
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

/** Each contestant of a group gets its own Redis database and directory: their rounds alternate. */
function environment(servers: Servers, index: number): Environment {
  const db = index % 16
  return {
    redisUrl: servers.redis && `${servers.redis.url}/${db}`,
    redisHost: servers.redis?.host,
    redisPort: servers.redis?.port,
    redisDb: db,
    memcached: servers.memcached?.server,
    dir: mkdtempSync(join(tmpdir(), 'cache-bench-')),
  }
}

interface Settings {
  plan: Plan
  http: { warmup: number; seconds: number; rounds: number }
  options: RunOptions
}

/**
 * Runs every contestant of one workload. Worker rows are prepared one after the other (prefill,
 * warm-up), then their measured rounds alternate: round 1 of each, round 2 of each, … so that
 * a change in the machine's load lands on all of them. HTTP rows alternate the same way;
 * rows measured by an outside program run last, on their own.
 */
async function runGroup(
  scenario: Scenario,
  workload: Workload,
  group: Contestant[],
  servers: Servers,
  { plan, http, options }: Settings,
): Promise<Row[]> {
  await servers.reset()
  const rows = group.map((contestant, index) => {
    const row: Row = {
      scenario: scenario.id,
      contestant: contestant.id,
      label: contestant.label,
      role: contestant.role,
      workload,
      concurrency: workload === 'http' ? HTTP.connections : (contestant.concurrency ?? 1),
      unit: workload === 'http' ? 'req/s' : 'ops/s',
      status: 'ok',
      rounds: [],
    }
    const missing = contestant.needs?.split(',').filter((name) => !isBuilt(name))
    if (missing?.length)
      Object.assign(row, { status: 'skipped', reason: `${missing.join(', ')} not built yet` })
    return { contestant, row, env: environment(servers, index) }
  })
  const live = rows.filter((r) => r.row.status === 'ok')
  try {
    const workers = live.filter((r) => r.contestant.create)
    if (workers.length) await alternateWorkers(scenario, workload, workers, plan, options)
    const https = live.filter((r) => r.contestant.serve)
    if (https.length) await alternateHttp(scenario, https, http, options)
    for (const { contestant, row, env } of live.filter((r) => r.contestant.external)) {
      try {
        const result = await contestant.external!(env, workload, {
          rounds: plan.rounds,
          quick: options.quick === true,
        })
        Object.assign(row, {
          rounds: result.rates,
          gets: result.gets,
          hits: result.hits,
          ...(result.latency ? { latency: result.latency } : {}),
        })
        if (result.failure) fail(row, result.failure)
      } catch (error) {
        fail(row, (error as Error).message)
      }
    }
  } finally {
    for (const { env } of rows) rmSync(env.dir, { recursive: true, force: true })
  }
  for (const { row } of live) {
    if (row.status === 'ok') Object.assign(row, summarize(row.rounds!))
  }
  return rows.map((r) => r.row)
}

function fail(row: Row, reason: string): void {
  row.status = 'failed'
  row.reason = reason.split('\n')[0]
}

async function alternateWorkers(
  scenario: Scenario,
  workload: Workload,
  entries: { contestant: Contestant; row: Row; env: Environment }[],
  plan: Plan,
  options: RunOptions,
): Promise<void> {
  const running: { row: Row; child: Child<WorkerMessage> }[] = []
  try {
    for (const { contestant, row, env } of entries) {
      const spec: WorkerSpec = { scenario: scenario.id, contestant: contestant.id, workload, plan, env }
      const profile = options.profile === contestant.id ? `${contestant.id}-${workload}` : undefined
      const child = new Child<WorkerMessage>('worker.js', [JSON.stringify(spec)], profile)
      const ready = await child.next()
      if (ready.type === 'ready') running.push({ row, child })
      else {
        fail(row, ready.type === 'error' ? ready.message : `unexpected ${ready.type}`)
        child.kill()
      }
    }
    for (let r = 0; r < plan.rounds; r++) {
      for (const entry of turnOrder(running, r)) {
        if (entry.row.status !== 'ok') continue
        const answer = await entry.child.ask('round')
        if (answer.type === 'round') entry.row.rounds!.push(answer.rate)
        else fail(entry.row, answer.type === 'error' ? answer.message : `unexpected ${answer.type}`)
      }
    }
    for (const { row, child } of running) {
      if (row.status !== 'ok') continue
      const answer = await child.ask('finish')
      if (answer.type === 'result') {
        Object.assign(row, {
          gets: answer.result.gets,
          hits: answer.result.hits,
          ...(answer.result.latency ? { latency: answer.result.latency } : {}),
        })
        if (answer.result.failure) fail(row, answer.result.failure)
      } else fail(row, answer.type === 'error' ? answer.message : `unexpected ${answer.type}`)
    }
  } finally {
    // Finished workers exit on their own (and write their CPU profile); stragglers are killed.
    await Promise.all(running.map(({ child }) => child.exited(3000)))
  }
}

type ServerMessage = { type: 'ready'; port: number; cached: boolean } | { type: 'routeCalls'; calls: number }

/** Starts each HTTP row's server in its own process and loads them in turn with autocannon from this one. */
async function alternateHttp(
  scenario: Scenario,
  entries: { contestant: Contestant; row: Row }[],
  http: { warmup: number; seconds: number; rounds: number },
  options: RunOptions,
): Promise<void> {
  const servers: {
    row: Row
    child: Child<ServerMessage>
    url: string
    cached: boolean
    calls: number
    p50: number[]
    p99: number[]
  }[] = []
  const check = (result: autocannon.Result): string | undefined => {
    if (result.errors || result.timeouts) return `${result.errors} errors, ${result.timeouts} timeouts`
    if (result.non2xx) return `${result.non2xx} non-2xx responses`
    if (result.requests.total > 0 && result.throughput.total / result.requests.total < 10_240)
      return 'responses under 10 KB'
    return undefined
  }
  const load = (url: string, seconds: number) =>
    autocannon({ url, connections: HTTP.connections, duration: seconds, pipelining: 1 })
  const routeCalls = async (child: Child<ServerMessage>) => {
    const answer = await child.ask('routeCalls')
    if (answer.type !== 'routeCalls')
      throw new Error(answer.type === 'error' ? answer.message : 'no route count')
    return answer.calls
  }
  try {
    for (const { contestant, row } of entries) {
      const profile = options.profile === contestant.id ? `${contestant.id}-http` : undefined
      const child = new Child<ServerMessage>('http-server.js', [scenario.id, contestant.id], profile)
      try {
        const ready = await child.next()
        if (ready.type !== 'ready') throw new Error(ready.type === 'error' ? ready.message : 'not ready')
        const url = `http://127.0.0.1:${ready.port}${PATH}`
        // Prime the cache with one request, then warm up.
        await (await fetch(url)).arrayBuffer()
        const problem = check(await load(url, http.warmup))
        if (problem) throw new Error(`warm-up: ${problem}`)
        servers.push({
          row,
          child,
          url,
          cached: ready.cached,
          calls: await routeCalls(child),
          p50: [],
          p99: [],
        })
      } catch (error) {
        fail(row, (error as Error).message)
        child.kill()
      }
    }
    for (let r = 0; r < http.rounds; r++) {
      for (const server of turnOrder(servers, r)) {
        if (server.row.status !== 'ok') continue
        const result = await load(server.url, http.seconds)
        const problem = check(result)
        if (problem) fail(server.row, problem)
        else {
          server.row.rounds!.push(result.requests.total / (result.duration || http.seconds))
          server.p50.push(result.latency.p50 * 1000)
          server.p99.push(result.latency.p99 * 1000)
        }
      }
    }
    for (const server of servers) {
      if (server.row.status !== 'ok' || server.p50.length === 0) continue
      const median = (values: number[]) => medianOf([...values].sort((a, b) => a - b))
      server.row.latency = { p50: median(server.p50), p99: median(server.p99), resolution: 1000 }
    }
    for (const server of servers) {
      if (server.row.status !== 'ok' || !server.cached) continue
      const ran = (await routeCalls(server.child)) - server.calls
      if (ran !== 0) fail(server.row, `the ${PATH} route ran ${ran} times during the measured rounds`)
    }
  } finally {
    for (const { child } of servers) {
      if (child.process.connected) child.process.send({ type: 'stop' })
      await child.exited()
    }
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
