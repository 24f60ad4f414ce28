import type { LoggerOption } from '@cache/core'
import { type CacheObserver, checkLogger, IncidentLog, SlowServerWatch } from '@cache/core/backend'
import type memjs from 'memjs'
import type { MemcachedEvent } from './options.js'
import { ALWAYS_FITS, ServerLimits } from './limits.js'
import { type EjectOptions, ServerPool } from './pool.js'
import { type Done, LinkFailure, type Response, Status } from './protocol.js'

/** The answer, never sent for, to a write refused before it was sent: `error` says why. */
export interface Refused extends Response {
  error: Error
}

/** How a {@link Links} is set up: its servers' pool options and who is told what. */
export interface LinksOptions {
  timeoutMs: number
  weights: Readonly<Record<string, number>> | undefined
  eject: EjectOptions
  logger: LoggerOption | undefined
  observer: CacheObserver
  /** True once the backend is closed: failures after that are not outages. */
  closed: () => boolean
  /** Brings an ejected server back (bumping its generation first); rejects while it does not answer. */
  retry: (index: number, links: Links) => Promise<void>
}

/**
 * The backend's servers as it sees them: the pool that sends its requests (timed, failures
 * counted), and each server's health as the application hears of it — an outage logged once and
 * its end once, `server-down`/`server-up` events, a background probe at start so a server nobody
 * can reach is reported before the first request.
 */
export class Links {
  readonly pool: ServerPool
  /** Each server's item size limit (see limits.ts). */
  readonly limits: ServerLimits
  private readonly observer: CacheObserver
  private readonly closed: () => boolean
  /** Logs each server's outage once, and its end once. */
  private readonly incidents: IncidentLog
  /** Per server: an outage of it is logged and not over (checked on every answer). */
  private readonly reported: boolean[]
  /** Per server: timeouts alone (a slow server, a loaded machine) are an outage only once they last. */
  private readonly slowness: SlowServerWatch[]
  /**
   * Per server: a check armed when its timeouts start, at the end of the window after which they
   * are an outage. Once the server is ejected nothing else may time out before a backed-off retry
   * (up to `eject.maxRetryAfter` later): the outage is logged on time all the same.
   */
  private readonly checks: (NodeJS.Timeout | undefined)[]

  constructor(client: memjs.Client, options: LinksOptions) {
    this.observer = options.observer
    this.closed = options.closed
    this.incidents = new IncidentLog(checkLogger(options.logger))
    this.reported = client.servers.map(() => false)
    this.slowness = client.servers.map(() => new SlowServerWatch(options.timeoutMs))
    this.checks = client.servers.map(() => undefined)
    this.pool = new ServerPool(client, options.timeoutMs, options.weights, options.eject, {
      retry: (index) =>
        options.retry(index, this).catch((error: unknown) => {
          // An ejected server that keeps not answering becomes an outage once that lasts.
          if (!this.closed() && isTimeout(error)) this.unreachable(index, error)
          throw error
        }),
      down: (index, error) => {
        this.unreachable(index, error)
        this.serverEvent('server-down', index, error)
      },
      up: (index) => {
        this.answered(index)
        this.serverEvent('server-up', index)
      },
    })
    this.limits = new ServerLimits(client, this.pool.names, options.timeoutMs, (index, buf) =>
      this.pool.sendRaw(index, buf),
    )
    this.probe(client.servers.length)
  }

  /**
   * One request (see {@link ServerPool.send}), timed; failures are counted and rethrown, except
   * those of generation requests (`countErrors` false), counted by the operation that waited.
   * `undoable` false: not undone when given up (a generation is never given back).
   */
  call(
    index: number,
    buf: Buffer,
    operation: string,
    key?: string,
    countErrors = true,
    undoable = true,
  ): Promise<Response> {
    return new Promise((resolve, reject) =>
      this.callNow(index, buf, operation, key, countErrors, undoable, (error, response) =>
        error === undefined ? resolve(response!) : reject(error),
      ),
    )
  }

  /** {@link call}, calling `done` (never before it returns) instead of returning a promise. */
  callNow(
    index: number,
    buf: Buffer,
    operation: string,
    key: string | undefined,
    countErrors: boolean,
    undoable: boolean,
    done: Done<Response>,
  ): void {
    if (this.limits.mustWait(index, buf.length) && !this.closed()) {
      this.limits.wait(index, (failure) => {
        if (failure === undefined || buf.length <= ALWAYS_FITS)
          this.callNow(index, buf, operation, key, countErrors, undoable, done)
        else this.refuse(operation, key, countErrors, failure, done)
      })
      return
    }
    if (buf.length > ALWAYS_FITS) {
      const refused = this.limits.refusal(index, buf, key)
      if (refused !== undefined) {
        this.refuse(operation, key, countErrors, refused, done)
        return
      }
    }
    const start = performance.now()
    this.pool.sendNow(index, buf, operation, !countErrors, undoable, (error, response) => {
      if (error !== undefined) {
        if (countErrors) this.observer.error(operation, error, key)
        return done(error)
      }
      this.observer.latency(performance.now() - start)
      this.heard(index)
      done(undefined, response)
    })
  }

  /** A request not sent (see limits.ts): `done` with `error`, counted. */
  private refuse(
    operation: string,
    key: string | undefined,
    countErrors: boolean,
    error: Error,
    done: Done<Response>,
  ): void {
    if (countErrors) this.observer.error(operation, error, key)
    queueMicrotask(() => done(error))
  }

  /**
   * Quiet requests to one server (see {@link ServerPool.sendQuiet}), timed; a failure counts once
   * per key. A write whose value is over the server's item size limit is not sent: its answer is a
   * {@link Refused} (counted with its key), the others are sent.
   */
  callQuiet(
    index: number,
    requests: Buffer[],
    operation: string,
    write: boolean,
    keys: readonly string[],
  ): Promise<(Response | undefined)[]> {
    return new Promise((resolve, reject) =>
      this.quietNow(index, requests, operation, write, keys, undefined, (error, answers) =>
        error === undefined ? resolve(answers!) : reject(error),
      ),
    )
  }

  private quietNow(
    index: number,
    requests: Buffer[],
    operation: string,
    write: boolean,
    keys: readonly string[],
    unread: Error | undefined,
    done: Done<(Response | undefined)[]>,
  ): void {
    if (unread === undefined && this.limits.mustWaitAny(index, requests) && !this.closed()) {
      this.limits.wait(index, (failure) =>
        this.quietNow(index, requests, operation, write, keys, failure, done),
      )
      return
    }
    let refused: (Refused | undefined)[] | undefined
    for (let i = 0; i < requests.length; i++) {
      const buf = requests[i]!
      if (buf.length <= ALWAYS_FITS) continue
      const error = unread ?? this.limits.refusal(index, buf, keys[i])
      if (error === undefined) continue
      this.observer.error(operation, error, keys[i])
      refused ??= new Array(requests.length).fill(undefined)
      refused[i] = { status: Status.tooLarge, value: EMPTY, flags: 0, cas: NO_CAS, error }
    }
    const sent = refused === undefined ? requests : requests.filter((_, i) => refused[i] === undefined)
    const merge = (answers: (Response | undefined)[]) => {
      if (refused === undefined) return answers
      const all: (Response | undefined)[] = refused.slice()
      let j = 0
      for (let i = 0; i < all.length; i++) if (all[i] === undefined) all[i] = answers[j++]
      return all
    }
    if (sent.length === 0) {
      queueMicrotask(() => done(undefined, merge([])))
      return
    }
    const sentKeys = refused === undefined ? keys : keys.filter((_, i) => refused[i] === undefined)
    const start = performance.now()
    this.pool.sendQuiet(index, sent, operation, write).then(
      (answers) => {
        this.observer.latency(performance.now() - start)
        this.heard(index)
        done(undefined, merge(answers))
      },
      (error: unknown) => {
        for (const key of sentKeys) this.observer.error(operation, error, key)
        done(error)
      },
    )
  }

  /** Server `index` answered: a timeout streak ends, and a logged outage is over. */
  private heard(index: number): void {
    this.slowness[index]!.answered()
    if (this.checks[index] !== undefined) this.disarm(index)
    if (this.reported[index]) this.answered(index)
  }

  /**
   * Asks every server for its version once, in the background, so that one nobody can reach
   * (connection refused, unknown host) is reported while the application starts, not at its first
   * request. One that only answers late is not reported for that (see {@link unreachable}).
   * Counts nothing.
   */
  private probe(servers: number): void {
    for (let index = 0; index < servers; index++) {
      // The item size limit is read with it (see limits.ts).
      this.limits.read(index).then(
        () => this.heard(index),
        (error: unknown) => {
          if (!this.closed()) this.unreachable(index, error)
        },
      )
    }
  }

  /**
   * Logs that server `index` is down, once. A refused or reset connection, an unknown host, is
   * reported at once; a request that timed out only once the server has answered nothing for a
   * while (a healthy server on a loaded machine can miss the first timeouts of a process).
   */
  private unreachable(index: number, error: unknown): void {
    const server = this.pool.names[index]!
    let reason = (error instanceof Error ? error.message : String(error)).replace(/\.+$/, '')
    if (isTimeout(error)) {
      if (this.reported[index]) return
      if (!this.slowness[index]!.timedOut()) {
        this.arm(index, error)
        return
      }
      reason = this.slowness[index]!.reason()
    }
    if (this.checks[index] !== undefined) this.disarm(index)
    this.reported[index] = true
    this.incidents.report(
      server,
      `memcached: cannot reach ${server}: ${reason}. Its keys fail with CacheUnavailableError (memoized functions run uncached) until it answers; it is retried in the background.`,
    )
  }

  /** Checks server `index` again once its timeouts may have lasted the window (see {@link checks}). */
  private arm(index: number, error: unknown): void {
    if (this.checks[index] !== undefined) return
    const timer = setTimeout(() => {
      this.checks[index] = undefined
      if (this.closed() || this.reported[index]) return
      // Still no answer: a timeout more (the retry of an ejected server is one, when it comes).
      if (this.pool.report()[index]!.state === 'down') this.unreachable(index, error)
    }, this.slowness[index]!.windowMs + 50)
    timer.unref?.()
    this.checks[index] = timer
  }

  private disarm(index: number): void {
    clearTimeout(this.checks[index])
    this.checks[index] = undefined
  }

  private answered(index: number): void {
    this.slowness[index]!.answered()
    if (this.checks[index] !== undefined) this.disarm(index)
    this.reported[index] = false
    const server = this.pool.names[index]!
    this.incidents.resolve(server, `memcached: ${server} answers again.`)
  }

  private serverEvent(name: 'server-down' | 'server-up', index: number, error?: unknown): void {
    if (this.observer.listenerCount(name) === 0) return
    const event: MemcachedEvent = { backend: 'memcached', server: this.pool.names[index]! }
    if (error !== undefined) event.error = error
    this.observer.emitEach(name, event)
  }
}

const EMPTY = Buffer.alloc(0)
const NO_CAS = Buffer.alloc(8)

export function isTimeout(error: unknown): boolean {
  if (error instanceof LinkFailure) return error.timedOut
  return (error as { code?: unknown } | null)?.code === 'CACHE_TIMEOUT'
}
