/**
 * One row in its own process: builds one contestant, prefills it, warms up, times the rounds and
 * sends the result to the runner over IPC. A fresh process per row keeps one contestant's JIT
 * state and garbage out of the next one's numbers.
 */
import type { Environment, Workload } from './contestant.js'
import { KEY_COUNT, keys, values } from './data.js'
import { loopFor, measure, type Plan, type Tally } from './measure.js'
import { findContestant } from './scenarios/index.js'

export interface WorkerSpec {
  scenario: string
  contestant: string
  workload: Workload
  plan: Plan
  env: Environment
}

export interface WorkerResult {
  rates: number[]
  opsPerRound: number
  gets: number
  hits: number
  /** Set when the row must not be trusted (e.g. a get-hit row that missed). */
  failure?: string
}

async function main(): Promise<WorkerResult> {
  const spec = JSON.parse(process.argv[2]!) as WorkerSpec
  const contestant = findContestant(spec.scenario, spec.contestant)
  const driver = await contestant.create!(spec.env)
  try {
    if (spec.workload !== 'set') {
      for (let i = 0; i < KEY_COUNT; i++) await driver.set(keys[i]!, values[i]!, i)
    }
    const loadsBefore = driver.loads?.()
    const tally: Tally = { gets: 0, hits: 0 }
    const concurrency = contestant.concurrency ?? 1
    const run = loopFor(
      driver,
      spec.workload,
      { sync: contestant.sync === true && contestant.awaited !== true, concurrency },
      tally,
    )
    const { rates, opsPerRound } = await measure(run, spec.plan, concurrency)
    const result: WorkerResult = { rates, opsPerRound, gets: tally.gets, hits: tally.hits }
    if (spec.workload !== 'set' && tally.hits !== tally.gets) {
      result.failure = `only ${tally.hits} of ${tally.gets} gets hit`
    }
    const loads = driver.loads?.()
    if (loads !== undefined && loads !== loadsBefore) {
      result.failure = `the memoized function ran ${loads - loadsBefore!} times during hit rounds`
    }
    return result
  } finally {
    // A client that will not close must not hold the result back.
    await Promise.race([driver.close?.(), new Promise((resolve) => setTimeout(resolve, 2000).unref())])
  }
}

main().then(
  (result) => {
    process.send!({ type: 'result', result }, () => process.exit(0))
  },
  (error: unknown) => {
    const message = error instanceof Error ? (error.stack ?? error.message) : String(error)
    process.send!({ type: 'error', message }, () => process.exit(1))
  },
)
