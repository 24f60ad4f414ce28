import { CacheConfigError } from './errors.js'

/**
 * Where @cache says what goes wrong in the background: a server that cannot be reached, a level
 * that is skipped, a TTL that looks like milliseconds. `console` by default; any object with
 * `warn` and `error` (pino, winston, bunyan, a Nest `Logger`) plugs in. Each method is called
 * with one string, so every logger prints it as it is.
 */
export interface CacheLogger {
  warn(message: string): unknown
  error(message: string): unknown
  /** Used for "back to normal" messages when present; `warn` otherwise. */
  info?(message: string): unknown
}

/** A backend's `logger` option: a logger, `false` for silence, `undefined` for the process-wide one. */
export type LoggerOption = CacheLogger | false | undefined

/** Prefix of every message, so that they are easy to find in an application's log. */
const PREFIX = '[@cache] '

/** Shared by every copy of @cache/core in the process (ESM and CJS builds). */
const PROCESS_LOGGER = Symbol.for('@cache/core:logger')
const WARNED = Symbol.for('@cache/core:warned')

type Holder = { [PROCESS_LOGGER]?: CacheLogger | false; [WARNED]?: Set<string> }
const holder = globalThis as Holder

/**
 * Standard error only (a program's standard output may be its data): "back to normal" messages
 * go to `console.warn`. Looked up at call time, so a console replaced later (by a test runner)
 * is the one used.
 */
const CONSOLE: CacheLogger = {
  warn: (message) => console.warn(message),
  error: (message) => console.error(message),
}

const SILENT: CacheLogger = { warn() {}, error() {} }

/**
 * Sets the logger of everything in this process that has no `logger` option of its own: backends,
 * multi-level chains, TTL warnings. `false` silences them; `undefined` restores the default,
 * `console`.
 * `configureCache({ logger })` calls it.
 */
export function setCacheLogger(logger: LoggerOption): void {
  holder[PROCESS_LOGGER] = checkLogger(logger, 'logger')
}

/** The process-wide logger ({@link setCacheLogger}), `console` unless set. */
export function processLogger(): CacheLogger {
  const logger = holder[PROCESS_LOGGER]
  return logger === undefined ? CONSOLE : logger === false ? SILENT : logger
}

/**
 * Checks a `logger` option: `undefined`, `false`, or an object with `warn` and `error` methods.
 * Anything else is a `CacheConfigError` naming the option.
 */
export function checkLogger<T extends LoggerOption>(logger: T, option = 'logger'): T {
  if (logger === undefined || logger === false) return logger
  const l = logger as Partial<CacheLogger> | null
  if (typeof l !== 'object' || l === null || typeof l.warn !== 'function' || typeof l.error !== 'function')
    throw new CacheConfigError(
      option,
      'expected an object with warn() and error() methods (console, pino, winston…), or false',
    )
  return logger
}

/**
 * Reports the incidents of one component, each once: `open` logs an error the first time a cause
 * is seen and stays quiet while it lasts; `close` logs that it is over (only if it was reported).
 * A server going down and coming back is two lines, however many operations failed in between.
 */
export class IncidentLog {
  private readonly open = new Map<string, number>()

  /** @param option the component's `logger` option; `undefined` follows the process-wide logger. */
  constructor(private readonly option: LoggerOption) {
    checkLogger(option)
  }

  /** True while `cause` is reported and not over. */
  has(cause: string): boolean {
    return this.open.has(cause)
  }

  /** When `cause` was first reported (epoch ms), or `undefined`. */
  since(cause: string): number | undefined {
    return this.open.get(cause)
  }

  /** Logs `message` as an error unless `cause` is already reported. `true` if it logged. */
  report(cause: string, message: string): boolean {
    if (this.open.has(cause)) return false
    this.open.set(cause, Date.now())
    this.logger().error(PREFIX + message)
    return true
  }

  /** Ends `cause`: logs `message` (info, else warn) if it was reported. `true` if it logged. */
  resolve(cause: string, message: string): boolean {
    if (!this.open.delete(cause)) return false
    const logger = this.logger()
    if (typeof logger.info === 'function') logger.info(PREFIX + message)
    else logger.warn(PREFIX + message)
    return true
  }

  /** A warning about something that is not an outage. */
  warn(message: string): void {
    this.logger().warn(PREFIX + message)
  }

  private logger(): CacheLogger {
    const option = this.option
    return option === undefined ? processLogger() : option === false ? SILENT : option
  }
}

/**
 * Tells a slow server from an unreachable one, for the "cannot reach" log. A refused connection,
 * an unknown host or a rejected password is an outage at once; a request that merely timed out
 * may be a healthy server on a loaded machine (a process's first connection can take longer than
 * a 300 ms operation timeout). Timeouts become an outage only when the server has answered
 * nothing for {@link windowMs} (5 s, or three operation timeouts if longer) and at least three
 * requests timed out in that time. Each timeout is still counted and thrown to its caller.
 */
export class SlowServerWatch {
  /** How long timeouts must go on, with no answer in between, to be an outage (ms). */
  readonly windowMs: number
  /** When the first timeout since the last answer happened (epoch ms). */
  private since: number | undefined
  private timeouts = 0

  /** @param timeoutMs the per-operation timeout, in ms */
  constructor(
    readonly timeoutMs: number,
    private readonly now: () => number = Date.now,
  ) {
    this.windowMs = Math.max(5_000, 3 * timeoutMs)
  }

  /** A request timed out. True when the server now counts as unreachable (report it). */
  timedOut(): boolean {
    const now = this.now()
    if (this.since === undefined) {
      this.since = now
      this.timeouts = 0
    }
    this.timeouts++
    return this.timeouts >= 3 && now - this.since >= this.windowMs
  }

  /** The server answered: timeouts start over. */
  answered(): void {
    this.since = undefined
  }

  /** The reason for the log: how long nothing was answered. */
  reason(): string {
    const seconds = Math.round((this.now() - (this.since ?? this.now())) / 1000)
    return `no answer for ${seconds} s (each operation gave up after ${this.timeoutMs} ms)`
  }
}

/** Logs `message` as an error through a component's `logger` option (`undefined`: the process-wide one). */
export function logError(option: LoggerOption, message: string): void {
  const logger = option === undefined ? processLogger() : option === false ? SILENT : option
  logger.error(PREFIX + message)
}

/**
 * Logs `message` as a warning through the process-wide logger, once per `id` for the life of the
 * process (shared by every copy of @cache/core).
 */
export function warnOnce(id: string, message: string): void {
  const warned = (holder[WARNED] ??= new Set())
  if (warned.has(id)) return
  warned.add(id)
  processLogger().warn(PREFIX + message)
}
