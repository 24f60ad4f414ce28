import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import type { Role, Workload } from './contestant.js'
import { WORKLOAD_LABEL } from './contestant.js'
import { medianOf } from './measure.js'
import { TARGETS } from './targets.js'

/** One contestant × workload, as measured. Rates are operations (or requests) per second. */
export interface Row {
  scenario: string
  contestant: string
  label: string
  role: Role
  workload: Workload
  concurrency: number
  unit: 'ops/s' | 'req/s'
  status: 'ok' | 'failed' | 'skipped'
  reason?: string
  median?: number
  min?: number
  max?: number
  /** Half the range of the rounds, as a fraction of the median. */
  spread?: number
  rounds?: number[]
  /**
   * Per-operation (per-request for HTTP) latency in microseconds: the worker's sampled operations
   * over the measured rounds; for HTTP and redis-benchmark rows, the median of the rounds'
   * percentiles as the load tool reports them.
   */
  latency?: {
    p50: number
    p99: number
    samples?: number
    every?: number
    clock?: number
    /** The finest step the load tool reports, in µs (autocannon: whole milliseconds). */
    resolution?: number
  }
  gets?: number
  hits?: number
  /** The limit row the "× limit" ratio divides by, and the ratio. */
  limit?: string
  ratioToLimit?: number
  /** The fastest peer at the same workload and concurrency, and the ratio to it. */
  bestPeer?: string
  ratioToBestPeer?: number
}

export interface ScenarioReport {
  id: string
  title: string
  notes: string[]
  rows: Row[]
}

export interface TargetResult {
  scenario: string
  workload: Workload
  ours: string
  against: string
  /** The row `against` resolved to (the fastest peer's id for `best-peer`). */
  reference?: string
  min: number
  /** The median of the per-round ratios (ours ÷ reference, round by round). */
  ratio?: number
  /** The band that holds the true median ratio with probability `confidence`. */
  low?: number
  high?: number
  confidence?: number
  oursSpread?: number
  referenceSpread?: number
  /**
   * `holds` when the whole band is at or above `min`, `misses` when it is wholly below,
   * `inconclusive` when the band straddles `min` (or the rounds are too few to bound the
   * median with 95 % confidence), `not measured` when a row is missing or failed.
   */
  verdict: Verdict
}

export type Verdict = 'holds' | 'misses' | 'inconclusive' | 'not measured'

/** The confidence a ratio's band must reach before a target is claimed either way. */
export const CLAIM_CONFIDENCE = 0.95

/**
 * The median of the per-round ratios `ours[k] / reference[k]` and a distribution-free confidence
 * band for it. Rounds of one workload take turns (round k of every row runs back to back), so
 * round k of two rows saw the same machine load and their ratio cancels most of it. The band is
 * the order-statistic interval [r(j), r(n+1-j)] of the n sorted ratios, with j the largest index
 * whose coverage 1 − 2·P(Binomial(n, ½) < j) is still at least {@link CLAIM_CONFIDENCE}: with 7
 * rounds it is the lowest to the highest ratio (98.4 %), with 9 the second lowest to the second
 * highest (96.1 %), with 15 (a full run) the 4th lowest to the 4th highest (96.5 %). With fewer
 * than 6 rounds no band reaches 95 %: the range is reported with its lower confidence.
 */
export function ratioBand(
  ours: readonly number[],
  reference: readonly number[],
): { ratio: number; low: number; high: number; confidence: number } | undefined {
  if (ours.length === 0 || ours.length !== reference.length) return undefined
  const ratios = ours.map((value, k) => value / reference[k]!).sort((a, b) => a - b)
  const n = ratios.length
  let j = 1
  while (j + 1 <= n / 2 && coverage(n, j + 1) >= CLAIM_CONFIDENCE) j++
  return { ratio: medianOf(ratios), low: ratios[j - 1]!, high: ratios[n - j]!, confidence: coverage(n, j) }
}

/** P(r(j) ≤ median ≤ r(n+1-j)) for n independent draws: 1 − 2·P(Binomial(n, ½) ≤ j − 1). */
function coverage(n: number, j: number): number {
  let tail = 0
  let choose = 1
  for (let i = 0; i < j; i++) {
    tail += choose
    choose = (choose * (n - i)) / (i + 1)
  }
  return 1 - (2 * tail) / 2 ** n
}

export interface Report {
  generatedAt: string
  mode: 'full' | 'quick'
  complete: boolean
  plan: {
    warmupMs: number
    rounds: number
    roundMs: number
    httpRounds: number
    httpSeconds: number
    httpConnections: number
  }
  machine: { node: string; platform: string; cpu: string; cores: number; loadAverage?: number[] }
  commit?: string
  versions: Record<string, string>
  scenarios: ScenarioReport[]
  targets: TargetResult[]
}

/** Fills every row's ratios from the other rows of its scenario, measured in the same run. */
export function addRatios(scenario: ScenarioReport, baselines: Map<string, string | undefined>): void {
  const ok = scenario.rows.filter((r) => r.status === 'ok')
  for (const row of ok) {
    const baseline = baselines.get(row.contestant)
    const limit = ok.find(
      (r) =>
        r.workload === row.workload &&
        r.role === 'limit' &&
        (baseline === undefined
          ? r.concurrency === row.concurrency && !r.contestant.startsWith('redis-benchmark')
          : r.contestant === baseline),
    )
    if (limit && limit !== row) {
      row.limit = limit.contestant
      row.ratioToLimit = row.median! / limit.median!
    }
    const peers = ok.filter(
      (r) => r.workload === row.workload && r.role === 'peer' && r.concurrency === row.concurrency,
    )
    const best = peers.reduce<Row | undefined>(
      (a, b) => (a === undefined || b.median! > a.median! ? b : a),
      undefined,
    )
    if (best && best !== row) {
      row.bestPeer = best.contestant
      row.ratioToBestPeer = row.median! / best.median!
    }
  }
}

export function evaluateTargets(scenarios: ScenarioReport[]): TargetResult[] {
  const measured = TARGETS.filter((t) => scenarios.some((s) => s.id === t.scenario))
  return measured.map((target) => {
    const rows = scenarios.find((s) => s.id === target.scenario)?.rows ?? []
    const find = (id: string) =>
      rows.find((r) => r.contestant === id && r.workload === target.workload && r.status === 'ok')
    const ours = find(target.ours)
    const reference =
      target.against === 'best-peer'
        ? ours?.bestPeer === undefined
          ? undefined
          : find(ours.bestPeer)
        : find(target.against)
    const result: TargetResult = { ...target, verdict: 'not measured' }
    if (ours && reference) {
      result.reference = reference.contestant
      result.oursSpread = ours.spread
      result.referenceSpread = reference.spread
      const band = ratioBand(ours.rounds ?? [], reference.rounds ?? [])
      if (band) {
        Object.assign(result, band)
        result.verdict =
          band.confidence < CLAIM_CONFIDENCE
            ? 'inconclusive'
            : band.low >= target.min
              ? 'holds'
              : band.high < target.min
                ? 'misses'
                : 'inconclusive'
      } else {
        // Rounds that did not take turns cannot be paired: only the ratio of the medians is shown.
        result.ratio = ours.median! / reference.median!
        result.verdict = 'inconclusive'
      }
    }
    return result
  })
}

export function formatRate(rate: number | undefined): string {
  if (rate === undefined) return '—'
  if (rate >= 1e6) return `${(rate / 1e6).toFixed(2)} M`
  if (rate >= 1e3) return `${(rate / 1e3).toFixed(1)} k`
  return rate.toFixed(0)
}

/**
 * A latency in microseconds, with the unit that reads best. `resolution` (µs) is the finest step
 * the tool that measured it reports: a value under it reads "< resolution", not 0.
 */
export function formatLatency(us: number | undefined, resolution?: number): string {
  if (us === undefined) return '—'
  if (resolution !== undefined && us < resolution) return `< ${formatLatency(resolution)}`
  if (us >= 1000) return `${(us / 1000).toFixed(2)} ms`
  if (us >= 10) return `${us.toFixed(0)} µs`
  if (us >= 1) return `${us.toFixed(1)} µs`
  return `${us.toFixed(2)} µs`
}

const pct = (spread: number | undefined) => (spread === undefined ? '—' : `±${(spread * 100).toFixed(1)}%`)
const ratio = (value: number | undefined) => (value === undefined ? '—' : `${value.toFixed(2)}×`)

function labelOf(report: Report, scenario: string, id: string | undefined): string {
  if (id === undefined) return '—'
  const row = report.scenarios.find((s) => s.id === scenario)?.rows.find((r) => r.contestant === id)
  return row?.label ?? id
}

function targetLine(report: Report, t: TargetResult): string {
  const against =
    t.against === 'best-peer'
      ? `fastest peer (${labelOf(report, t.scenario, t.reference)})`
      : labelOf(report, t.scenario, t.against)
  const band =
    t.low === undefined || t.high === undefined
      ? '—'
      : `${t.low.toFixed(2)}–${t.high.toFixed(2)}× (${(t.confidence! * 100).toFixed(1)} %)`
  const verdict = t.verdict === 'holds' || t.verdict === 'misses' ? `**${t.verdict}**` : t.verdict
  const spreads = t.ratio === undefined ? '—' : `${pct(t.oursSpread)} / ${pct(t.referenceSpread)}`
  return `| ${t.scenario} | ${WORKLOAD_LABEL[t.workload]} | ${labelOf(report, t.scenario, t.ours)} vs ${against} | ≥ ${t.min}× | ${ratio(t.ratio)} | ${band} | ${spreads} | ${verdict} |`
}

export function targetsTable(report: Report): string {
  return [
    '| scenario | workload | comparison | target | measured | band (confidence) | spread (ours / ref) | verdict |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    ...report.targets.map((t) => targetLine(report, t)),
  ].join('\n')
}

function scenarioTable(report: Report, scenario: ScenarioReport): string {
  const lines = [
    `### ${scenario.title}`,
    '',
    '| workload | contestant | role | median | spread | p50 | p99 | × limit | × fastest peer |',
    '| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |',
  ]
  for (const row of scenario.rows) {
    const name = row.role === 'ours' ? `**${row.label}**` : row.label
    if (row.status !== 'ok') {
      lines.push(
        `| ${WORKLOAD_LABEL[row.workload]} | ${name} | ${row.role} | ${row.status.toUpperCase()}: ${row.reason ?? ''} | | | | | |`,
      )
      continue
    }
    const limit =
      row.limit === undefined
        ? '—'
        : `${ratio(row.ratioToLimit)} (${labelOf(report, scenario.id, row.limit)})`
    lines.push(
      `| ${WORKLOAD_LABEL[row.workload]} | ${name} | ${row.role} | ${formatRate(row.median)} ${row.unit} | ${pct(row.spread)} | ${formatLatency(row.latency?.p50, row.latency?.resolution)} | ${formatLatency(row.latency?.p99, row.latency?.resolution)} | ${limit} | ${ratio(row.ratioToBestPeer)} |`,
    )
  }
  if (scenario.notes.length) lines.push('', ...scenario.notes.map((n) => `- ${n}`))
  return lines.join('\n')
}

function header(report: Report): string {
  const { plan, machine } = report
  return [
    `Measured ${report.generatedAt} (${report.mode} run${report.complete ? '' : ', partial'}) on ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, ${machine.platform}` +
      (report.commit ? `, commit ${report.commit}` : '') +
      (machine.loadAverage ? `, 1-minute load average ${machine.loadAverage.join(' → ')}` : '') +
      '.',
    `Each contestant × workload runs in its own process: ${plan.warmupMs} ms warm-up, then ${plan.rounds} rounds of ~${plan.roundMs} ms (network scenarios say when they run more), ` +
      'the rounds of the contestants of one workload taking turns (round 1 of each, then round 2 of each in the reverse order, …) so that load from elsewhere on the machine lands on all of them; ' +
      `the median round is reported, and the spread is half the range of the rounds. HTTP rows: autocannon, ${plan.httpConnections} connections, ` +
      `${plan.httpRounds} rounds of ${plan.httpSeconds} s, from the runner process (the server runs in its own).`,
    'Workload: 10 000 keys `user:<n>:profile`, ~1 KB JSON-able objects, a 1 h TTL on every write, keys read and written in uniform random order (one seeded sequence, the same for every contestant); ' +
      'async operations awaited one by one unless the row says ×64 in flight; getMany rows read 100 distinct random keys a call (a row counts calls). ' +
      'get-hit and getMany rows are prefilled and fail if any key misses. ' +
      'p50/p99: per-operation latency, one operation in 2ⁿ timed (n chosen so the clock reads cost under 0.5 % of the loop), over the measured rounds.',
    `A target's measured ratio is the median of the per-round ratios (ours ÷ reference, round k with round k); it is claimed (**holds** / **misses**) only when its ${CLAIM_CONFIDENCE * 100} % band ` +
      'lies wholly on one side of the target, otherwise the verdict is inconclusive and the band is shown. Peers appear in their default and their fastest documented configuration; "fastest peer" is the fastest of all of them.',
  ].join('\n\n')
}

export function toMarkdown(report: Report): string {
  const versions = Object.entries(report.versions)
    .map(([name, version]) => `${name} ${version}`)
    .join(', ')
  return [
    '# @cache benchmark results',
    '',
    header(report),
    '',
    '## Targets',
    '',
    targetsTable(report),
    '',
    '## Results',
    '',
    ...report.scenarios.flatMap((s) => [scenarioTable(report, s), '']),
    '## Versions',
    '',
    versions,
    '',
  ].join('\n')
}

/** The README's Performance section: the targets and a link to the full tables. */
export function readmeSection(report: Report): string {
  return [
    'Ratios measured side by side in one `pnpm bench` run (higher is better for @cache). ' +
      'Full tables, notes on how each peer is configured and exact versions: [bench/results/latest.md](bench/results/latest.md).',
    '',
    header(report),
    '',
    targetsTable(report),
  ].join('\n')
}

const START = '<!-- bench:start -->'
const END = '<!-- bench:end -->'

/**
 * Replaces what lies between the bench markers of a README with `section`. When the markers are
 * missing they are added at the end under a `## Performance` heading; nothing else is touched.
 */
export function updateReadme(path: string, section: string): void {
  const text = existsSync(path) ? readFileSync(path, 'utf8') : ''
  const block = `${START}\n${section}\n${END}`
  const start = text.indexOf(START)
  const end = text.indexOf(END)
  let next: string
  if (start !== -1 && end > start) next = text.slice(0, start) + block + text.slice(end + END.length)
  else next = `${text.trimEnd()}${text.trim() ? '\n\n' : ''}## Performance\n\n${block}\n`
  writeFileSync(path, next)
}
