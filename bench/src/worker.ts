/**
 * One row in its own process: builds one contestant, prefills it, warms up and sizes its rounds,
 * then times one round each time the runner asks. The runner alternates rounds between the rows
 * of a workload, so a burst of load on the machine hits every contestant alike; a process per row
 * keeps one contestant's JIT state and garbage out of the others' numbers.
 *
 * Messages: worker → `ready` { opsPerRound } → runner; runner → `round`; worker → `round` { rate };
 * runner → `finish`; worker → `result` (hits checked) and exits. `error` on any failure.
 */
import type { Environment, Workload } from './contestant.js'
import { KEY_COUNT, keys, TTL, values } from './data.js'
import {
  calibrate,
  type Latency,
  LatencySampler,
  loopFor,
  type Plan,
  type Tally,
  timeRound,
} from './measure.js'
import { findContestant } from './scenarios/index.js'

export interface WorkerSpec {
  scenario: string
  contestant: string
  workload: Workload
  plan: Plan
  env: Environment
}

export interface WorkerResult {
  gets: number
  hits: number
  /** Sampled per-operation latency over the measured rounds. */
  latency?: Latency
  /** Set when the row must not be trusted (e.g. a get-hit row that missed). */
  failure?: string
}

export type WorkerMessage =
  | { type: 'ready'; opsPerRound: number }
  | { type: 'round'; rate: number }
  | { type: 'result'; result: WorkerResult }
  | { type: 'error'; message: string }

/** Async stores are prefilled this many writes at a time (cacache alone takes ~10 ms a write). */
const PREFILL_IN_FLIGHT = 16

const send = (message: WorkerMessage) =>
  new Promise<void>((resolve) => process.send!(message, () => resolve()))

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2]!) as WorkerSpec
  const contestant = findContestant(spec.scenario, spec.contestant)
  const driver = await contestant.create!(spec.env)
  const close = () =>
    // A client that will not close must not hold the result back.
    Promise.race([driver.close?.(), new Promise((resolve) => setTimeout(resolve, 2000).unref())])
  const sync = contestant.sync === true
  if (spec.workload !== 'set') {
    if (sync) for (let i = 0; i < KEY_COUNT; i++) driver.set(keys[i]!, values[i]!, i, TTL)
    else {
      let next = 0
      const lane = async () => {
        for (let i = next++; i < KEY_COUNT; i = next++) await driver.set(keys[i]!, values[i]!, i, TTL)
      }
      await Promise.all(Array.from({ length: PREFILL_IN_FLIGHT }, lane))
    }
  }
  const tally: Tally = { gets: 0, hits: 0 }
  const concurrency = contestant.concurrency ?? 1
  const sampler = new LatencySampler()
  const run = loopFor(
    driver,
    spec.workload,
    { sync: sync && contestant.awaited !== true, concurrency },
    tally,
    sampler,
  )
  // Hits are checked from here on: the warm-up and every measured round.
  const loadsBefore = driver.loads?.()
  const opsPerRound = await calibrate(run, spec.plan, concurrency, sampler)
  // Latency is reported over the measured rounds only.
  sampler.reset()
  process.on('message', async (message: { type: string }) => {
    try {
      if (message.type === 'round') await send({ type: 'round', rate: await timeRound(run, opsPerRound) })
      if (message.type === 'finish') {
        const result: WorkerResult = { gets: tally.gets, hits: tally.hits, latency: sampler.summary() }
        if (spec.workload !== 'set' && tally.hits !== tally.gets)
          result.failure = `only ${tally.hits} of ${tally.gets} gets hit`
        const loads = driver.loads?.()
        if (loads !== undefined && loads !== loadsBefore)
          result.failure = `the memoized function ran ${loads - loadsBefore!} times during hit rounds`
        await close()
        await send({ type: 'result', result })
        process.exit(0)
      }
    } catch (error) {
      await fail(error)
    }
  })
  await send({ type: 'ready', opsPerRound })
}

async function fail(error: unknown): Promise<never> {
  const message = error instanceof Error ? (error.stack ?? error.message) : String(error)
  await send({ type: 'error', message })
  process.exit(1)
}

main().catch(fail)
