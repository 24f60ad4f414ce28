import { warnOnce } from './logger.js'

/**
 * A duration: a number of **seconds** (fractions allowed, `0.25` is 250 ms), the same as a
 * string (`'300'`), or a string with units: `'250ms'`, `'30s'`, `'5m'`, `'1h'`, `'7d'`,
 * `'1.5h'`, `'1m30s'`, `'2 hours'`, `'1 hour 30 minutes'`.
 *
 * As a TTL, `Infinity` means "never expires", whatever the backend's default TTL.
 */
export type Duration = number | string

const SECOND = 1000
const MINUTE = 60 * SECOND
const HOUR = 60 * MINUTE
const DAY = 24 * HOUR
const WEEK = 7 * DAY

/** Every unit name, lower case: the short forms and the words, singular and plural. */
const UNIT_MS: Record<string, number> = {}
for (const [ms, names] of [
  [1, 'ms msec msecs millisecond milliseconds'],
  [SECOND, 's sec secs second seconds'],
  [MINUTE, 'm min mins minute minutes'],
  [HOUR, 'h hr hrs hour hours'],
  [DAY, 'd day days'],
  [WEEK, 'w wk wks week weeks'],
] as const) {
  for (const name of names.split(' ')) UNIT_MS[name] = ms
}

const NUMBER = '(?:\\d+(?:\\.\\d+)?|\\.\\d+)'
/** A number of seconds written as text: `'300'`, `'1.5'`. */
const SECONDS = new RegExp(`^\\s*${NUMBER}\\s*$`)
/** One or more `<number><unit>` parts, optionally separated by spaces or commas: `'1h 30m'`. */
const PARTS = new RegExp(`^\\s*(?:${NUMBER}\\s*[a-z]+[\\s,]*)+$`, 'i')
const PART = new RegExp(`(${NUMBER})\\s*([a-z]+)`, 'gi')

const FORMS = "use seconds, or e.g. '250ms', '30s', '5m', '1h30m', '2 hours', '7d'"

/**
 * Milliseconds in a duration. Throws a `RangeError` naming the value for `0`, negatives,
 * `NaN`, `Infinity` and malformed strings. The result is never rounded to 0: `0.0001` s is 1 ms.
 *
 * A bare number of seconds that is a multiple of 1000 (`60000`, `300000`; not a whole number of
 * days such as `2592000`, 30 days) is most likely milliseconds written by habit: it is read as
 * seconds, and the first time each such value is seen a warning goes to the logger.
 *
 * @param what how to name the value in the error, e.g. `ttl` or `CACHE_DEFAULT_TTL`
 */
export function parseDuration(value: Duration, what = 'duration'): number {
  return toMs(value, what, true)
}

function toMs(value: Duration, what: string, warn: boolean): number {
  let ms: number
  if (typeof value === 'number') {
    ms = value * SECOND
    if (warn && looksLikeMilliseconds(value)) warnMilliseconds(value, what)
  } else if (typeof value === 'string') {
    ms = parseText(value, what, warn)
  } else {
    throw new RangeError(`${what}: ${describe(value)} is not a duration (${FORMS})`)
  }
  if (!(ms > 0) || !Number.isFinite(ms)) {
    throw new RangeError(`${what}: ${describe(value)} is not a positive, finite duration`)
  }
  return Math.max(1, Math.ceil(ms))
}

function parseText(text: string, what: string, warn: boolean): number {
  if (SECONDS.test(text)) {
    const seconds = Number(text)
    if (warn && looksLikeMilliseconds(seconds)) warnMilliseconds(seconds, what)
    return seconds * SECOND
  }
  if (!PARTS.test(text)) throw new RangeError(`${what}: ${JSON.stringify(text)} is not a duration (${FORMS})`)
  let ms = 0
  for (const [, amount, unit] of text.matchAll(PART)) {
    const size = UNIT_MS[unit!.toLowerCase()]
    if (size === undefined)
      throw new RangeError(`${what}: ${JSON.stringify(text)} is not a duration (${FORMS})`)
    ms += Number(amount) * size
  }
  return ms
}

/**
 * Milliseconds in a TTL, or `undefined` for no expiry: `Infinity`, and `undefined`/`null`, which
 * a backend reads as "my default TTL" before calling this. Otherwise as {@link parseDuration}.
 *
 * @param what the option the TTL was given as (`ttl`, `defaultTtl`): given, a TTL that looks like
 *   milliseconds is warned about, as by {@link parseDuration}; left out (a TTL computed by code
 *   and handed to a backend), it is not.
 */
export function ttlToMs(ttl: Duration | null | undefined, what?: string): number | undefined {
  // Numbers are the common case on hot paths: skip the parser.
  if (typeof ttl === 'number' && ttl > 0 && ttl < 1e15 && (what === undefined || !looksLikeMilliseconds(ttl)))
    return Math.max(1, Math.ceil(ttl * SECOND))
  return ttl === undefined || ttl === null || ttl === Number.POSITIVE_INFINITY
    ? undefined
    : toMs(ttl, what ?? 'ttl', what !== undefined)
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

/** A duration in ms as the shortest text with units: `'16h40m'`, `'1m30s'`, `'250ms'`. */
export function formatDuration(ms: number): string {
  let left = Math.round(ms)
  let text = ''
  for (const [unit, size] of [
    ['d', DAY],
    ['h', HOUR],
    ['m', MINUTE],
    ['s', SECOND],
  ] as const) {
    if (left >= size) {
      text += `${Math.floor(left / size)}${unit}`
      left %= size
    }
  }
  if (left > 0 || text === '') text += `${left}ms`
  return text
}

/**
 * A multiple of 1000 seconds, except whole numbers of days under 1000 days (30 days, a year:
 * common in seconds, odd in milliseconds). `86400000` (one day in ms) is 1000 days: flagged.
 */
function looksLikeMilliseconds(seconds: number): boolean {
  return (
    seconds >= 1000 &&
    seconds % 1000 === 0 &&
    Number.isFinite(seconds) &&
    !(seconds % 86_400 === 0 && seconds < 86_400_000)
  )
}

/** Warns once that `seconds` (given as `what`) is read as seconds, not the milliseconds it looks like. */
export function warnMilliseconds(seconds: number, what: string): void {
  const read = formatDuration(seconds * SECOND)
  const meant = seconds / 1000
  warnOnce(
    `ms-habit:${what}:${seconds}`,
    `${what}: ${seconds} is read as seconds (${read}). If you meant milliseconds, write ${meant} or '${meant}s'; to keep ${read}, write '${read}' and this warning goes away.`,
  )
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value)
  if (typeof value === 'bigint') return `${value}n`
  if (typeof value === 'symbol') return value.toString()
  return String(value)
}
