/**
 * A bounded request stream with autocannon (loopback only; stops at `seconds` or `maxRequests`,
 * whichever comes first), recording every response's time, status and whether its body belongs
 * to the path that was asked for.
 */
import autocannon from 'autocannon'

export interface LoadOptions {
  /** `http://127.0.0.1:<port>`: only loopback targets are accepted. */
  url: string
  /** A path for the next request; called once per request. */
  nextPath: () => string
  /** The body text a response to `path` must contain (a wrong body is a silent wrong answer). */
  expectInBody: (path: string) => string
  seconds: number
  rate: number
  connections: number
}

export interface Sample {
  /** performance.now() when the response arrived. */
  at: number
  ms: number
  status: number
}

export interface LoadResult {
  sent: number
  /** Non-2xx responses, request errors and timeouts. */
  failed: number
  /** 2xx responses whose body did not belong to the path asked for. */
  wrongBodies: number
  samples: Sample[]
  startedAt: number
}

export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const target = new URL(options.url)
  if (target.hostname !== '127.0.0.1' && target.hostname !== 'localhost')
    throw new Error(`load only targets loopback, not ${target.hostname}`)
  const samples: Sample[] = []
  let wrongBodies = 0
  const startedAt = performance.now()
  const instance = autocannon({
    url: options.url,
    connections: options.connections,
    duration: options.seconds,
    overallRate: options.rate,
    maxOverallRequests: Math.ceil(options.rate * options.seconds * 1.1),
    timeout: 5,
    requests: [
      {
        setupRequest: (request: Record<string, unknown>, context: Record<string, unknown>) => {
          const path = options.nextPath()
          context.path = path
          return { ...request, path }
        },
        onResponse: (status: number, body: string, context: Record<string, unknown>) => {
          if (status >= 200 && status < 300 && !body.includes(options.expectInBody(context.path as string)))
            wrongBodies++
        },
      },
    ],
  })
  instance.on('response', (_client: unknown, status: number, _bytes: number, ms: number) => {
    samples.push({ at: performance.now(), ms, status })
  })
  const result = await instance
  const failed = result.non2xx + result.errors + result.timeouts
  return { sent: result.requests.sent, failed, wrongBodies, samples, startedAt }
}

/** The `p`th percentile (0–100) of the response times in [from, to). */
export function percentile(
  samples: readonly Sample[],
  p: number,
  from = 0,
  to = Number.POSITIVE_INFINITY,
): number {
  const times = samples
    .filter((s) => s.at >= from && s.at < to)
    .map((s) => s.ms)
    .sort((a, b) => a - b)
  if (times.length === 0) return Number.NaN
  return times[Math.min(times.length - 1, Math.ceil((p / 100) * times.length) - 1)]!
}
