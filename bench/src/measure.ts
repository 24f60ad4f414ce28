import type { Driver, Workload } from './contestant.js'
import { batches, keys, mixIsSet, ORDER_LENGTH, order, TTL, values } from './data.js'

/** How long to warm up and how the measured rounds are sized. */
export interface Plan {
  warmupMs: number
  rounds: number
  roundMs: number
}

/**
 * 15 rounds: the median of the per-round ratios is then bounded by the 4th lowest and 4th highest
 * ratio with 96.5 % confidence (see `ratioBand` in report.ts), so one odd round (a GC pause, a
 * burst of load elsewhere) cannot widen the band by itself as it does with 7 rounds, whose band is
 * the lowest to the highest ratio.
 */
export const FULL: Plan = { warmupMs: 1000, rounds: 15, roundMs: 200 }
export const QUICK: Plan = { warmupMs: 100, rounds: 3, roundMs: 40 }

/** Counters the loops keep; the worker checks them after the run. */
export interface Tally {
  gets: number
  hits: number
}

/** Latency percentiles in microseconds. */
export interface Latency {
  p50: number
  p99: number
  /** Operations timed. */
  samples: number
  /** One operation in `every` was timed. */
  every: number
  /** What one read of the clock costs, in µs: each sample includes about this much of it. */
  clock: number
}

/**
 * Samples per-operation latency without slowing the loop down: one operation in `every` (a power
 * of two) is timed with `performance.now()` around it, and `every` is chosen so that the clock
 * reads cost at most {@link CLOCK_BUDGET} of the loop's time (where a clock read costs 100 ns, a
 * 100 ns get is timed one time in 512; a 20 µs round trip every time). With several operations
 * in flight, a sample is the time from issuing that operation to its result, queueing included.
 */
export class LatencySampler {
  /** An operation at cursor position `s` is timed when `(s & mask) === 0`. */
  mask = 63
  private readonly samples = new Float64Array(1 << 20)
  private count = 0
  private readonly clockNs = clockCostNs()

  /** Records one operation's duration in milliseconds (what `performance.now()` differences give). */
  record(ms: number): void {
    if (this.count < this.samples.length) this.samples[this.count++] = ms
  }

  /** Picks how often to sample, from the loop's measured cost per operation. */
  tune(nsPerOp: number): void {
    const every = (2 * this.clockNs) / (CLOCK_BUDGET * Math.max(nsPerOp, 1))
    const power = Math.min(10, Math.max(0, Math.ceil(Math.log2(every))))
    this.mask = (1 << power) - 1
  }

  reset(): void {
    this.count = 0
  }

  /** p50 and p99 of what was recorded since the last reset; `undefined` when nothing was. */
  summary(): Latency | undefined {
    if (this.count === 0) return undefined
    const sorted = this.samples.slice(0, this.count).sort()
    const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]! * 1000
    return {
      p50: at(0.5),
      p99: at(0.99),
      samples: this.count,
      every: this.mask + 1,
      clock: this.clockNs / 1000,
    }
  }
}

/** The share of a loop's time that the latency sampler's clock reads may take. */
export const CLOCK_BUDGET = 0.005

/** The cost of one `performance.now()`, in ns (the mean of many back-to-back reads). */
function clockCostNs(): number {
  let sink = 0
  for (let i = 0; i < 20_000; i++) sink += performance.now()
  const reads = 200_000
  const t0 = performance.now()
  for (let i = 0; i < reads; i++) sink += performance.now()
  const ns = ((performance.now() - t0) * 1e6) / reads
  return sink === -1 ? 0 : ns
}

/** Runs `n` operations of a workload and resolves when all are done. */
type Run = (n: number) => unknown

/**
 * What one step of a workload does at cursor position `s`: `start` calls the driver and returns
 * what it returned (a value, or a promise the loop awaits), `count` tallies the result.
 */
interface Step {
  start(s: number): unknown
  count(result: unknown, s: number): void
}

const BATCH_MASK = batches.length - 1

function stepFor(driver: Driver, workload: Workload, tally: Tally): Step {
  const countGet = (v: unknown) => {
    tally.gets++
    if (v != null) tally.hits++
  }
  const none = () => {}
  switch (workload) {
    case 'get-hit':
      return {
        start: (s) => {
          const i = order[s]!
          return driver.get(keys[i]!, i)
        },
        count: countGet,
      }
    case 'set':
      return {
        start: (s) => {
          const i = order[s]!
          return driver.set(keys[i]!, values[i]!, i, TTL)
        },
        count: none,
      }
    case 'mixed':
      return {
        start: (s) => {
          const i = order[s]!
          return mixIsSet[s] === 1 ? driver.set(keys[i]!, values[i]!, i, TTL) : driver.get(keys[i]!, i)
        },
        count: (v, s) => {
          if (mixIsSet[s] !== 1) countGet(v)
        },
      }
    case 'get-many': {
      if (!driver.getMany) throw new Error('this contestant has no getMany')
      const getMany = driver.getMany.bind(driver)
      return {
        // The batch is picked by the key drawn at this position: uniform, and independent of
        // which positions the latency sampler times.
        start: (s) => {
          const batch = batches[order[s]! & BATCH_MASK]!
          return getMany(batch.keys, batch.indexes)
        },
        count: (found) => {
          const list = found as ArrayLike<unknown>
          tally.gets += list.length
          for (let k = 0; k < list.length; k++) if (list[k] != null) tally.hits++
        },
      }
    }
    case 'http':
      throw new Error('HTTP rows are measured by autocannon, not by a worker loop')
  }
}

/**
 * Builds the loop for one row. The loops walk {@link order} (uniform random keys) from where the
 * last call stopped. Async loops await every operation; with `concurrency` > 1, that many loops
 * share the cursor. Each worker process runs one contestant and one workload, so the step
 * functions stay monomorphic and are inlined: the harness adds the same few nanoseconds to every
 * contestant.
 */
export function loopFor(
  driver: Driver,
  workload: Workload,
  mode: { sync: boolean; concurrency: number },
  tally: Tally,
  sampler: LatencySampler,
): Run {
  let cursor = 0
  const next = (): number => {
    const s = cursor
    cursor = (s + 1) & (ORDER_LENGTH - 1)
    return s
  }
  const { start, count } = stepFor(driver, workload, tally)
  if (mode.sync)
    return (n) => {
      for (let j = 0; j < n; j++) {
        const s = next()
        let result: unknown
        if ((s & sampler.mask) !== 0) result = start(s)
        else {
          const t0 = performance.now()
          result = start(s)
          sampler.record(performance.now() - t0)
        }
        count(result, s)
      }
    }
  const one = async (n: number): Promise<void> => {
    for (let j = 0; j < n; j++) {
      const s = next()
      let result: unknown
      if ((s & sampler.mask) !== 0) result = await start(s)
      else {
        const t0 = performance.now()
        result = await start(s)
        sampler.record(performance.now() - t0)
      }
      count(result, s)
    }
  }
  const c = mode.concurrency
  if (c <= 1) return one
  return (n) => {
    const each = Math.ceil(n / c)
    const lanes: Promise<void>[] = []
    for (let k = 0; k < c; k++) lanes.push(one(each))
    return Promise.all(lanes)
  }
}

const nowMs = () => performance.now()

/**
 * Warms the loop up for `plan.warmupMs`, tunes the latency sampler, and returns how many
 * operations make a round of about `plan.roundMs` (a multiple of `concurrency`).
 */
export async function calibrate(
  run: Run,
  plan: Plan,
  concurrency: number,
  sampler: LatencySampler,
): Promise<number> {
  let chunk = Math.max(concurrency, 16)
  let done = 0
  let spent = 0
  const start = nowMs()
  while (nowMs() - start < plan.warmupMs) {
    const t0 = nowMs()
    await run(chunk)
    const t = nowMs() - t0
    // Count only the second half of the warm-up for the rate; grow chunks until one lasts ~10 ms.
    if (nowMs() - start > plan.warmupMs / 2) {
      done += chunk
      spent += t
    }
    if (t < 10) chunk *= 2
  }
  const rate = spent > 0 ? done / spent : chunk / 10
  sampler.tune(1e6 / rate)
  return Math.max(concurrency * 4, Math.round((rate * plan.roundMs) / concurrency) * concurrency)
}

/** Times one round of `ops` operations: operations per second. */
export async function timeRound(run: Run, ops: number): Promise<number> {
  const t0 = nowMs()
  await run(ops)
  return (ops * 1000) / (nowMs() - t0)
}

/** Median, extremes and the spread (half the range, as a fraction of the median). */
export function summarize(rates: readonly number[]): {
  median: number
  min: number
  max: number
  spread: number
} {
  const sorted = [...rates].sort((a, b) => a - b)
  const min = sorted[0]!
  const max = sorted[sorted.length - 1]!
  const median = medianOf(sorted)
  return { median, min, max, spread: median > 0 ? (max - min) / 2 / median : 0 }
}

/** The median of numbers already sorted ascending. */
export function medianOf(sorted: readonly number[]): number {
  const mid = sorted.length >> 1
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/**
 * The order in which the rows of one workload take round `r`: forward in even rounds, backward in
 * odd ones. Over two rounds every pair of rows is measured once in each order, so a load that
 * rises or falls steadily during a round lands on both rows of a ratio alike, whatever their places.
 */
export function turnOrder<T>(rows: readonly T[], round: number): readonly T[] {
  return round % 2 === 0 ? rows : [...rows].reverse()
}
