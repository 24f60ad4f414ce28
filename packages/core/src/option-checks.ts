import { type Duration, parseDuration, ttlToMs, warnMilliseconds } from './durations.js'
import { CacheConfigError } from './errors.js'
import { describeGiven } from './keys.js'
import { warnOnce } from './logger.js'

/**
 * The one vocabulary of backend options: every duration is a {@link Duration} (a number of
 * **seconds**, or a string with a unit such as `'250ms'`), retries are `maxAttempts`, and a bad
 * option throws a {@link CacheConfigError} whose `setting` names it.
 */

/** How {@link durationOption} reads one option. */
export interface DurationOptionRules {
  /** `0` is allowed (and returned as 0 ms): "never wait", "always". Default: false. */
  zero?: boolean
  /**
   * A bare number of seconds from this one up is most likely milliseconds written by habit
   * (`timeout: 300` meaning 300 ms): it is read as seconds, and a warning goes to the logger once
   * per value. Core's own habit check (multiples of 1000) applies to every duration option.
   */
  msHabitFrom?: number
  /**
   * A wait a timer of Node's runs: at most {@link LONGEST_TIMER_MS} (about 24.8 days). Node runs a
   * longer timer after 1 ms, so a longer value is refused rather than turned into no wait at all.
   */
  timer?: boolean
}

/** The longest delay Node's `setTimeout` keeps (2³¹ − 1 ms, about 24.8 days). */
const LONGEST_TIMER_MS = 2 ** 31 - 1

/**
 * Milliseconds in the duration option `option`, or `fallback` (a Duration) when it is
 * `undefined`. A bad value throws {@link CacheConfigError} naming the option.
 */
export function durationOption(
  value: unknown,
  option: string,
  fallback: Duration,
  rules: DurationOptionRules = {},
): number {
  const given = value === undefined ? fallback : value
  if (rules.zero && (given === 0 || given === '0')) return 0
  const ms = checkOption(option, () => parseDuration(given as Duration, option))
  const seconds = typeof given === 'number' ? given : Number(given)
  if (rules.msHabitFrom !== undefined && seconds >= rules.msHabitFrom) warnMilliseconds(seconds, option)
  if (rules.timer && ms > LONGEST_TIMER_MS)
    throw new CacheConfigError(
      option,
      `${describeGiven(given)} is longer than a timer can wait (at most ${LONGEST_TIMER_MS} ms, about 24.8 days)`,
    )
  return ms
}

/**
 * Milliseconds in a TTL option such as `defaultTtl` (`undefined` for none: `undefined`, `null`,
 * `Infinity`); a bad value throws {@link CacheConfigError} naming the option.
 */
export function ttlOption(value: Duration | null | undefined, option: string): number | undefined {
  return checkOption(option, () => ttlToMs(value, option))
}

/**
 * The option `option`, a positive whole number (a count such as `maxAttempts`), or `fallback`
 * when it is `undefined`. Anything else throws {@link CacheConfigError} naming the option.
 */
export function countOption(value: unknown, option: string, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1)
    throw new CacheConfigError(option, `${describe(value)} is not a positive whole number`)
  return value
}

/**
 * The option `option`, `true` or `false`, or `fallback` when it is `undefined`. Anything else
 * (`'false'` from a configuration file, which would read as true) throws {@link CacheConfigError}
 * naming the option; `meaning` says what it switches.
 */
export function booleanOption<F extends boolean | undefined>(
  value: unknown,
  option: string,
  fallback: F,
  meaning?: string,
): boolean | F {
  if (value === undefined) return fallback
  if (typeof value === 'boolean') return value
  throw new CacheConfigError(
    option,
    `expected true or false${meaning === undefined ? '' : ` (${meaning})`}, got ${describeGiven(value)}`,
  )
}

/**
 * Runs `check` (a parser such as `parseSize` given the option's value) and turns what it throws
 * into a {@link CacheConfigError} naming `option`, with the original error as `cause`.
 */
export function checkOption<T>(option: string, check: () => T): T {
  try {
    return check()
  } catch (error) {
    if (error instanceof CacheConfigError) throw error
    const message = error instanceof Error ? error.message : String(error)
    const prefix = `${option}: `
    throw new CacheConfigError(option, message.startsWith(prefix) ? message.slice(prefix.length) : message, {
      cause: error,
    })
  }
}

/**
 * Reads an option that was renamed, keeping the old name as a deprecated alias for one minor
 * version: the new name wins; the old one is accepted, converted by `convert`, and the first time
 * it is seen a warning through the process-wide logger names the new option. Both given is a
 * {@link CacheConfigError}.
 *
 * @param options the options object as given
 * @param convert turns the old value into the new option's value (e.g. ms into `'250ms'`)
 */
export function renamedOption<O extends object, T>(
  options: O,
  newName: string,
  oldName: string,
  convert: (old: unknown) => T,
  hint = '',
): T | undefined {
  const given = options as Record<string, unknown>
  const current = given[newName] as T | undefined
  const old = given[oldName]
  if (old === undefined) return current
  if (current !== undefined)
    throw new CacheConfigError(oldName, `give \`${newName}\` or its deprecated name \`${oldName}\`, not both`)
  warnOnce(
    `renamed:${oldName}:${newName}`,
    `${oldName} is deprecated: use ${newName}${hint}. ${oldName} is still accepted until the next minor version.`,
  )
  return convert(old)
}

/**
 * Converts the value of a deprecated `…Ms` option (a number of milliseconds) into a Duration
 * (`'250ms'`); `false`, where the option allowed it, stays `false`. A value that was not valid
 * under the old name throws {@link CacheConfigError} naming the old name.
 */
export function fromMilliseconds(oldName: string, options: { zero?: boolean; false?: boolean } = {}) {
  return (old: unknown): Duration | false => {
    if (old === false && options.false) return false
    if (typeof old !== 'number' || !Number.isFinite(old) || old < 0 || (old === 0 && !options.zero))
      throw new CacheConfigError(oldName, `${describe(old)} is not a number of milliseconds`)
    return old === 0 ? 0 : `${old}ms`
  }
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value)
  if (typeof value === 'bigint') return `${value}n`
  if (typeof value === 'symbol') return value.toString()
  return String(value)
}

/**
 * Every option name of `O`, each `true`: written as a literal, the compiler checks that the list
 * is complete and names nothing else, so {@link assertKnownOptions} never refuses a real option.
 */
export type OptionNames<O> = { readonly [K in keyof Required<O>]: true }

/** The names of an {@link OptionNames} literal, for {@link assertKnownOptions}. */
export function optionNames<O>(names: OptionNames<O>): ReadonlySet<string> {
  return new Set(Object.keys(names))
}

/**
 * Throws a {@link CacheConfigError} naming the first key of `options` that is not in `known`:
 * a misspelt option (`namspace`, `ttll`) would otherwise be dropped in silence, and the cache
 * run without it (keys shared with another application, entries kept forever). The message
 * names the nearest known option when one is close; `hints` gives a fix for a name known to be
 * given by mistake (`url` where a URL is the first argument).
 *
 * `options` must be an object holding its settings as properties: `null`, a number, a string, an
 * array, a Map or a Set is refused ("expected an options object"), since its settings would be
 * read as none. An instance of a class (a typed settings class with getters) is checked on its
 * own names and on the names its prototypes define below `Object.prototype` (getters, fields,
 * methods; not `constructor`), so a misspelt getter is refused as a misspelt property is.
 *
 * @param where what the options were given to, e.g. `memoryBackend()`
 */
export function assertKnownOptions(
  options: unknown,
  known: ReadonlySet<string>,
  where: string,
  hints: Readonly<Record<string, string>> = {},
): asserts options is object {
  if (!isOptionsObject(options)) throw notAnOptionsObject(options, where)
  for (const name of settingNames(options)) checkName(name, known, where, hints)
}

/**
 * The names `options` holds settings under: its own (enumerable or not: a property added with
 * `Object.defineProperty` is a setting all the same), then those its prototypes define below
 * `Object.prototype` (a settings class's getters, fields, methods; not `constructor`), each once.
 */
export function settingNames(options: object): string[] {
  const names = new Set(Object.getOwnPropertyNames(options))
  let proto: object | null = Object.getPrototypeOf(options)
  while (proto !== null && proto !== Object.prototype) {
    for (const name of Object.getOwnPropertyNames(proto)) if (name !== 'constructor') names.add(name)
    proto = Object.getPrototypeOf(proto)
  }
  return [...names]
}

/**
 * {@link assertKnownOptions}, then the options as a new plain object holding the value of each
 * known name, read by name (getters read once, here): own or inherited, enumerable or not, and
 * through a Proxy's `get` even when it lists no names. Code spreading, destructuring or walking
 * the result (`{ backend, ...rest }`, `for…in`) sees every setting a property read would: the
 * options themselves, spread, would lose a settings class's getters and methods, an
 * `Object.create(settings)`'s inherited values and a non-enumerable property, in silence.
 * Read once where the options are given, never per request.
 */
export function readOptions<O extends object>(
  options: O,
  known: ReadonlySet<string>,
  where: string,
  hints: Readonly<Record<string, string>> = {},
): O {
  assertKnownOptions(options, known, where, hints)
  const plain: Record<string, unknown> = {}
  for (const name of known) {
    const value = optionValue(options, name)
    // `in` too: an option given as `undefined` stays given (refused beside a backend instance).
    if (value !== undefined || name in options) plain[name] = value
  }
  return plain as O
}

/**
 * The option `name` of `options`, read by name. A function held by a settings object that is not
 * a plain object (a class instance, `Object.create(settings)`) is bound to it, so that called from
 * a copy it still runs as `options.name(...)` would: a settings class's `key(req)` reading
 * `this[HEADER]` (a symbol, a `#private` field, a WeakMap keyed by the instance) keys each user
 * apart, as it does called on the instance. A plain object's functions, and functions bound here
 * already, are given as they are: reading a copy again keeps one identity (`now: clock` given to
 * several handlers stays one clock).
 */
export function optionValue(options: object, name: string): unknown {
  const value = (options as Record<string, unknown>)[name]
  if (typeof value !== 'function' || boundHere.has(value)) return value
  const proto: unknown = Object.getPrototypeOf(options)
  if (proto === Object.prototype || proto === null) return value
  const bound = value.bind(options)
  boundHere.add(bound)
  return bound
}

/** The functions {@link optionValue} bound. */
const boundHere = new WeakSet<Function>()

/** Whether `options` can hold settings as properties (not null, a primitive, a list or a Map). */
export function isOptionsObject(options: unknown): options is object {
  return (
    typeof options === 'object' &&
    options !== null &&
    !Array.isArray(options) &&
    !(options instanceof Map) &&
    !(options instanceof Set) &&
    !(options instanceof WeakMap) &&
    !(options instanceof WeakSet) &&
    // A boxed primitive (`new Boolean(false)`): a value, not options.
    !(options instanceof Boolean) &&
    !(options instanceof Number) &&
    !(options instanceof String)
  )
}

/** The {@link CacheConfigError} for options that are not an options object. */
export function notAnOptionsObject(options: unknown, where: string): CacheConfigError {
  const fix = options instanceof Map ? ' (write the settings as properties: Object.fromEntries(map))' : ''
  return new CacheConfigError(where, `expected an options object, got ${describeGiven(options)}${fix}`)
}

function checkName(
  name: string,
  known: ReadonlySet<string>,
  where: string,
  hints: Readonly<Record<string, string>>,
): void {
  if (known.has(name)) return
  const hint = Object.hasOwn(hints, name) ? hints[name] : undefined
  const near = hint === undefined ? nearestName(name, known) : undefined
  const fix = hint ?? (near === undefined ? '' : `; did you mean \`${near}\`?`)
  throw new CacheConfigError(name, `not an option of ${where}${fix}`)
}

/** The known name closest to `name` (case aside, at most two edits away), if one is. */
export function nearestName(name: string, known: ReadonlySet<string>): string | undefined {
  const wanted = name.toLowerCase()
  let best: string | undefined
  let bestDistance = Math.min(2, Math.floor(wanted.length / 3))
  for (const candidate of known) {
    const distance = editDistance(wanted, candidate.toLowerCase())
    if (distance <= bestDistance && (best === undefined || distance < bestDistance)) {
      best = candidate
      bestDistance = distance
    }
  }
  return best
}

/** Levenshtein distance, a swap of two neighbouring letters counting as one edit. */
function editDistance(a: string, b: string): number {
  const rows = [Array.from({ length: b.length + 1 }, (_, j) => j)]
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      let d = Math.min(rows[i - 1]![j]! + 1, row[j - 1]! + 1, rows[i - 1]![j - 1]! + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        d = Math.min(d, rows[i - 2]![j - 2]! + 1)
      row.push(d)
    }
    rows.push(row)
  }
  return rows[a.length]![b.length]!
}
