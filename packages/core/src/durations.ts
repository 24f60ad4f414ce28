/**
 * A duration: a number of **seconds** (fractions allowed, `0.25` is 250 ms) or a string with a
 * unit: `'250ms'`, `'30s'`, `'5m'`, `'1h'`, `'7d'`, `'1.5h'`.
 */
export type Duration = number | string

const UNIT_MS: Record<string, number> = {
  ms: 1,
  s: 1000,
  sec: 1000,
  m: 60_000,
  min: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
}

const DURATION = /^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|sec|m|min|h|d|w)\s*$/i

/**
 * Milliseconds in a duration. Throws a `RangeError` naming the value for `0`, negatives,
 * `NaN`, `Infinity` and malformed strings. The result is never rounded to 0: `0.0001` s is 1 ms.
 *
 * @param what how to name the value in the error, e.g. `ttl` or `CACHE_DEFAULT_TTL`
 */
export function parseDuration(value: Duration, what = 'duration'): number {
  let ms: number
  if (typeof value === 'number') {
    ms = value * 1000
  } else if (typeof value === 'string') {
    const match = DURATION.exec(value)
    if (!match) {
      throw new RangeError(
        `${what}: ${JSON.stringify(value)} is not a duration (use seconds or e.g. '250ms', '30s', '5m', '1h', '7d')`,
      )
    }
    ms = Number(match[1]) * UNIT_MS[match[2]!.toLowerCase()]!
  } else {
    throw new RangeError(
      `${what}: ${describe(value)} is not a duration (use seconds or a string such as '5m')`,
    )
  }
  if (!(ms > 0) || !Number.isFinite(ms)) {
    throw new RangeError(`${what}: ${describe(value)} is not a positive, finite duration`)
  }
  return Math.max(1, Math.ceil(ms))
}

/** Like {@link parseDuration} but `undefined` stays `undefined` (no TTL / backend default). */
export function ttlToMs(ttl: Duration | undefined, what = 'ttl'): number | undefined {
  // Numbers are the common case on hot paths: skip the parser.
  if (typeof ttl === 'number' && ttl > 0 && ttl < 1e15) return Math.max(1, Math.ceil(ttl * 1000))
  return ttl === undefined ? undefined : parseDuration(ttl, what)
}

/**
 * The absolute expiry (epoch ms) for a TTL, or `undefined` for "never expires".
 * `defaultTtlMs` is used when `ttl` is `undefined`.
 */
export function expiryFor(
  ttl: Duration | undefined,
  defaultTtlMs: number | undefined,
  now: number,
): number | undefined {
  const ms = ttl === undefined ? defaultTtlMs : ttlToMs(ttl)
  return ms === undefined ? undefined : now + ms
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value)
  if (typeof value === 'bigint') return `${value}n`
  if (typeof value === 'symbol') return value.toString()
  return String(value)
}
