import type { Driver, Workload } from './contestant.js'
import { KEY_COUNT, keys, MIX_LENGTH, mixIsSet, mixKey, values } from './data.js'

/** How long to warm up and how the measured rounds are sized. */
export interface Plan {
  warmupMs: number
  rounds: number
  roundMs: number
}

export const FULL: Plan = { warmupMs: 1000, rounds: 7, roundMs: 300 }
export const QUICK: Plan = { warmupMs: 100, rounds: 3, roundMs: 40 }

/** Counters the loops keep; the worker checks them after the run. */
export interface Tally {
  gets: number
  hits: number
}

/** Runs `n` operations of a workload and resolves when all are done. */
type Run = (n: number) => unknown

/**
 * Builds the loop for one row. Each loop walks the keys (or the mixed sequence) from where the
 * last call stopped, so rounds cover the whole key set rather than its first few keys.
 * Async loops await every operation; with `concurrency` > 1, that many loops share the cursor.
 */
export function loopFor(
  driver: Driver,
  workload: Workload,
  mode: { sync: boolean; concurrency: number },
  tally: Tally,
): Run {
  let cursor = 0
  const next = (): number => {
    const i = cursor
    cursor = i + 1 === (workload === 'mixed' ? MIX_LENGTH : KEY_COUNT) ? 0 : i + 1
    return i
  }
  if (mode.sync) {
    if (workload === 'get-hit')
      return (n) => {
        for (let j = 0; j < n; j++) {
          const i = next()
          const v = driver.get(keys[i]!, i)
          tally.gets++
          if (v != null) tally.hits++
        }
      }
    if (workload === 'set')
      return (n) => {
        for (let j = 0; j < n; j++) {
          const i = next()
          driver.set(keys[i]!, values[i]!, i)
        }
      }
    return (n) => {
      for (let j = 0; j < n; j++) {
        const s = next()
        const i = mixKey[s]!
        if (mixIsSet[s] === 1) driver.set(keys[i]!, values[i]!, i)
        else {
          const v = driver.get(keys[i]!, i)
          tally.gets++
          if (v != null) tally.hits++
        }
      }
    }
  }
  let one: (n: number) => Promise<void>
  if (workload === 'get-hit')
    one = async (n) => {
      for (let j = 0; j < n; j++) {
        const i = next()
        const v = await driver.get(keys[i]!, i)
        tally.gets++
        if (v != null) tally.hits++
      }
    }
  else if (workload === 'set')
    one = async (n) => {
      for (let j = 0; j < n; j++) {
        const i = next()
        await driver.set(keys[i]!, values[i]!, i)
      }
    }
  else
    one = async (n) => {
      for (let j = 0; j < n; j++) {
        const s = next()
        const i = mixKey[s]!
        if (mixIsSet[s] === 1) await driver.set(keys[i]!, values[i]!, i)
        else {
          const v = await driver.get(keys[i]!, i)
          tally.gets++
          if (v != null) tally.hits++
        }
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

const nowMs = () => Number(process.hrtime.bigint()) / 1e6

/**
 * Warms the loop up for `plan.warmupMs` and returns how many operations make a round of about
 * `plan.roundMs` (a multiple of `concurrency`).
 */
export async function calibrate(run: Run, plan: Plan, concurrency: number): Promise<number> {
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
  const mid = sorted.length >> 1
  const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
  const min = sorted[0]!
  const max = sorted[sorted.length - 1]!
  return { median, min, max, spread: median > 0 ? (max - min) / 2 / median : 0 }
}
