/**
 * A steady stream of backend calls from a few concurrent workers, each call recorded with when
 * it settled, how long it took and how it ended; bounded by a stop condition and a hard limit.
 */
import { sleep, within } from './bounded.js'

export interface Call {
  /** performance.now() when the call settled. */
  at: number
  ms: number
  /** The sequence number the call was made with. */
  seq: number
  ok: boolean
  value?: unknown
  error?: unknown
}

export interface CallStream {
  /** Every call settled so far, in the order they settled. */
  readonly calls: Call[]
  /** Stops starting calls; resolves once the calls in flight have settled. */
  stop(): Promise<Call[]>
}

/** Starts `workers` loops calling `op(seq)` with a pause of `pauseMs` between calls, for at most `maxMs`. */
export function streamCalls(
  op: (seq: number) => Promise<unknown>,
  options: { workers: number; pauseMs: number; maxMs: number },
): CallStream {
  const calls: Call[] = []
  let stopped = false
  let next = 0
  const deadline = performance.now() + options.maxMs
  const worker = async () => {
    while (!stopped && performance.now() < deadline) {
      const seq = next++
      const start = performance.now()
      try {
        // Every call must settle: a hang is a failure of the suite, never a stuck run.
        const value = await within(10_000, op(seq), `call ${seq}`)
        calls.push({ at: performance.now(), ms: performance.now() - start, seq, ok: true, value })
      } catch (error) {
        if (error instanceof Error && error.message.includes('(a hang)')) throw error
        calls.push({ at: performance.now(), ms: performance.now() - start, seq, ok: false, error })
      }
      await sleep(options.pauseMs)
    }
  }
  const running = Promise.all(Array.from({ length: options.workers }, worker))
  return {
    calls,
    async stop() {
      stopped = true
      await running
      return calls
    },
  }
}

/** Counts of the failures by error class name, e.g. `{ CacheUnavailableError: 12 }`. */
export function failuresByKind(calls: readonly Call[]): Record<string, number> {
  const kinds: Record<string, number> = {}
  for (const call of calls) {
    if (call.ok) continue
    const name = (call.error as Error | undefined)?.constructor?.name ?? 'unknown'
    kinds[name] = (kinds[name] ?? 0) + 1
  }
  return kinds
}
