import {
  CacheClosedError,
  CacheConfigError,
  CacheTimeoutError,
  CacheUnavailableError,
  type Duration,
} from '@cache/core'
import { durationOption } from '@cache/core/backend'
import type memjs from 'memjs'
import {
  atTickEnd,
  type Done,
  LinkFailure,
  Opcode,
  type Response,
  send,
  sendNow,
  sendQuiet,
} from './protocol.js'
import { KetamaRing, type RingServer } from './ring.js'

/** When a failing server is taken out of use, and when it is tried again. */
export interface EjectOptions {
  /**
   * Consecutive failed reads (connection refused or reset, no answer within `timeout`) that eject
   * a server. A failed write or delete ejects it at once: what it holds may be stale. Default: 2.
   */
  failureThreshold?: number
  /**
   * Wait before an ejected server is tried again (±20% jitter). A server that refuses connections
   * is retried at this pace (a refused connection costs nothing); after a retry that times out
   * (a frozen or unreachable server) the wait doubles, up to `maxRetryAfter`. Seconds or a
   * duration string. Default: `'250ms'`.
   */
  retryAfter?: Duration
  /** Longest wait between retries of an ejected server that does not answer. Default: `'10s'`. */
  maxRetryAfter?: Duration
}

/** `up`: in use. `down`: ejected; its keys fail at once until a retry succeeds. */
export type ServerState = 'up' | 'down'

/** One server's health, as {@link ServerPool.report} gives it. */
export interface ServerReport {
  /** `host:port` as listed. */
  server: string
  weight: number
  state: ServerState
  /** Consecutive failures since its last success. */
  failures: number
  /** Times it was ejected. */
  ejections: number
  /** Failed requests, in all. */
  errors: number
  /** While down: when the next retry starts (epoch ms). */
  retryAt?: number
  /** The message of its last failure. */
  lastError?: string
}

/** What the pool tells its owner. */
export interface PoolEvents {
  /** Re-admits a server: resolves if it answers (and has been repaired), rejects otherwise. */
  retry(index: number): Promise<void>
  down(index: number, error: unknown): void
  up(index: number): void
}

interface Batch {
  operations: number
}

interface Health {
  state: ServerState
  failures: number
  ejections: number
  errors: number
  delayMs: number
  retryAt: number
  timer: NodeJS.Timeout | undefined
  lastError: string | undefined
  /** The operations (not counting generation reads) sent to the server in the current tick. */
  batch: Batch | undefined
}

/**
 * The servers of a backend: where each key lives (a ketama ring), whether each server may be
 * used, and sending a request to one. A server that keeps failing is ejected: its keys fail at
 * once instead of waiting for a timeout each, and a timer retries it in the background. Keys
 * never move to another server while theirs is down (other processes would not know, and would
 * read and write elsewhere).
 */
export class ServerPool {
  readonly names: readonly string[]
  private readonly weights: readonly number[]
  private readonly ring: KetamaRing | undefined
  private readonly health: Health[]
  private readonly threshold: number
  private readonly baseDelayMs: number
  private readonly maxDelayMs: number
  private closed = false

  constructor(
    private readonly client: memjs.Client,
    private readonly timeoutMs: number,
    weights: Readonly<Record<string, number>> | undefined,
    options: EjectOptions,
    private readonly events: PoolEvents,
    private readonly now: () => number = Date.now,
  ) {
    const servers = client.servers.map((server) => ({ host: server.host, port: Number(server.port) }))
    this.names = servers.map((server) => `${server.host}:${server.port}`)
    const twice = this.names.find((name, i) => this.names.indexOf(name) !== i)
    if (twice !== undefined) throw new CacheConfigError('servers', `${twice} is listed twice`)
    this.weights = resolveWeights(this.names, weights)
    const listed: RingServer[] = servers.map((server, i) => ({ ...server, weight: this.weights[i]! }))
    this.ring = servers.length > 1 ? new KetamaRing(listed) : undefined
    this.threshold = options.failureThreshold ?? 2
    if (!Number.isSafeInteger(this.threshold) || this.threshold < 1) {
      throw new CacheConfigError(
        'eject.failureThreshold',
        `${String(options.failureThreshold)} is not a positive whole number`,
      )
    }
    this.baseDelayMs = durationOption(options.retryAfter, 'eject.retryAfter', '250ms')
    this.maxDelayMs = Math.max(
      this.baseDelayMs,
      durationOption(options.maxRetryAfter, 'eject.maxRetryAfter', '10s'),
    )
    this.health = this.names.map(() => ({
      state: 'up',
      failures: 0,
      ejections: 0,
      errors: 0,
      delayMs: this.baseDelayMs,
      retryAt: 0,
      timer: undefined,
      lastError: undefined,
      batch: undefined,
    }))
  }

  /** The index of the server that holds `placementKey`. */
  serverOf(placementKey: string): number {
    return this.ring === undefined ? 0 : this.ring.serverOf(placementKey)
  }

  /**
   * Sends one request to server `index`. An ejected server fails at once; one that does not
   * answer fails with `CacheUnavailableError` / `CacheTimeoutError` (and may be ejected). The
   * errors name the `server` and are `partial` while another server of the pool is up.
   * A `companion` request (the generation read written with an operation) does not count
   * against the server's health when an operation was sent with it: theirs is one failure. A
   * write that does not answer in time is undone behind itself (see protocol.ts) unless
   * `undoable` is false (the generation counters: a generation is never given back).
   */
  send(
    index: number,
    buf: Buffer,
    operation: string,
    options: { companion?: boolean; undoable?: boolean } = {},
  ): Promise<Response> {
    return new Promise((resolve, reject) =>
      this.sendNow(
        index,
        buf,
        operation,
        options.companion ?? false,
        options.undoable ?? true,
        (error, response) => (error === undefined ? resolve(response!) : reject(error)),
      ),
    )
  }

  /** {@link send}, calling `done` (never before it returns) instead of returning a promise. */
  sendNow(
    index: number,
    buf: Buffer,
    operation: string,
    companion: boolean,
    undoable: boolean,
    done: Done<Response>,
  ): void {
    // Anything but a GET may have changed data.
    this.exchange(index, operation, buf[1] !== Opcode.get, companion ? 0 : 1, done, (sent) =>
      sendNow(this.client, index, buf, this.timeoutMs, undoable, sent),
    )
  }

  /**
   * Sends quiet requests (GETKQ or SETQ, see protocol.ts) to server `index` in one write, ended by
   * a NOOP: one round trip for all of them. Each request counts as one operation against the
   * server's health, as if sent alone (a failed read of ten keys is ten failed reads). `write`: the
   * requests may change data (the server is then ejected at once if they fail).
   */
  sendQuiet(
    index: number,
    requests: readonly Buffer[],
    operation: string,
    write: boolean,
  ): Promise<(Response | undefined)[]> {
    return new Promise((resolve, reject) =>
      this.exchange<(Response | undefined)[]>(
        index,
        operation,
        write,
        requests.length,
        (error, answers) => (error === undefined ? resolve(answers!) : reject(error)),
        (sent) => sendQuiet(this.client, index, requests, this.timeoutMs, sent),
      ),
    )
  }

  private exchange<R>(
    index: number,
    operation: string,
    write: boolean,
    operations: number,
    done: Done<R>,
    run: (sent: Done<R>) => void,
  ): void {
    if (this.closed) {
      // Not sent: a later round trip of a call in flight at close() (the write of an
      // atomicUpdate, the add of a first incr). Written to a connection being ended, it would fail
      // every request on it still waiting for its answer, though the server ran them.
      queueMicrotask(() => done(new CacheClosedError('memcached')))
      return
    }
    const server = this.names[index]!
    const health = this.health[index]!
    if (health.state !== 'up') {
      const wait = Math.round(Math.max(0, health.retryAt - this.now()))
      const error = new CacheUnavailableError(
        'memcached',
        `memcached: ${operation} on ${server} failed: the server is ejected after failing (${health.lastError ?? 'unknown error'}); next retry in ${wait} ms`,
        { server, partial: this.othersUp(index) },
      )
      queueMicrotask(() => done(error))
      return
    }
    const batch = this.batchOf(health)
    batch.operations += operations
    // Arrow functions passed straight on: the build names those kept in a variable, per call.
    try {
      run((failure, result) => this.settle(index, operation, write, operations, batch, done, failure, result))
    } catch (failure) {
      queueMicrotask(() => this.settle(index, operation, write, operations, batch, done, failure))
    }
  }

  /** A request answered (`failure` undefined) or failed: the server's health, then `done`. */
  private settle<R>(
    index: number,
    operation: string,
    write: boolean,
    operations: number,
    batch: Batch,
    done: Done<R>,
    failure: unknown,
    result?: R,
  ): void {
    const health = this.health[index]!
    if (failure === undefined) {
      if (health.state === 'up') health.failures = 0
      done(undefined, result)
      return
    }
    const server = this.names[index]!
    // A companion request (no operation of its own) fails with the operations sent with it:
    // theirs is the failure that counts.
    this.failed(index, failure, write, operations === 0 && batch.operations > 0, Math.max(1, operations))
    const options = { cause: failure, server, partial: this.othersUp(index) }
    if (failure instanceof LinkFailure && failure.timedOut) {
      done(new CacheTimeoutError('memcached', `${operation} on ${server}`, this.timeoutMs, options))
      return
    }
    const message = failure instanceof Error ? failure.message : String(failure)
    done(
      new CacheUnavailableError(
        'memcached',
        `memcached: ${operation} on ${server} failed: ${message}`,
        options,
      ),
    )
  }

  /** Sends one request whatever the server's health (the retry of an ejected server: a generation bump). */
  sendRaw(index: number, buf: Buffer): Promise<Response> {
    if (this.closed) return Promise.reject(new CacheClosedError('memcached'))
    return send(this.client, index, buf, this.timeoutMs, false)
  }

  /** True when another server of the pool is up: a failure of `index` is partial. */
  private othersUp(index: number): boolean {
    return this.health.some((health, i) => i !== index && health.state === 'up')
  }

  /** The requests sent to a server in this tick, which leave in one write. */
  private batchOf(health: Health): Batch {
    if (health.batch === undefined) {
      const batch = { operations: 0 }
      health.batch = batch
      atTickEnd(() => {
        if (health.batch === batch) health.batch = undefined
      })
    }
    return health.batch
  }

  /**
   * A request to the server failed (no answer); `write` if it may have changed data, `counted`
   * if the operation it was sent with counts the failure; `operations`: how many it carried.
   */
  private failed(index: number, error: unknown, write: boolean, counted: boolean, operations = 1): void {
    const health = this.health[index]!
    health.errors++
    health.lastError = error instanceof Error ? error.message : String(error)
    if (health.state !== 'up' || (counted && !write)) return
    health.failures += operations
    if (write || health.failures >= this.threshold) this.eject(index, error)
  }

  report(): ServerReport[] {
    return this.health.map((health, i) => ({
      server: this.names[i]!,
      weight: this.weights[i]!,
      state: health.state,
      failures: health.failures,
      ejections: health.ejections,
      errors: health.errors,
      ...(health.state === 'down' ? { retryAt: health.retryAt } : {}),
      ...(health.lastError === undefined ? {} : { lastError: health.lastError }),
    }))
  }

  /** Stops the retry timers. */
  close(): void {
    this.closed = true
    for (const health of this.health) clearTimeout(health.timer)
  }

  private eject(index: number, error: unknown): void {
    const health = this.health[index]!
    health.state = 'down'
    health.ejections++
    this.schedule(index)
    this.events.down(index, error)
  }

  private schedule(index: number): void {
    const health = this.health[index]!
    const wait = health.delayMs * (0.8 + Math.random() * 0.4)
    health.retryAt = this.now() + wait
    health.timer = setTimeout(() => this.retry(index), wait)
    health.timer.unref?.()
  }

  private retry(index: number): void {
    const health = this.health[index]!
    health.timer = undefined
    if (this.closed) return
    this.events.retry(index).then(
      () => {
        if (this.closed) return
        health.state = 'up'
        health.failures = 0
        health.delayMs = this.baseDelayMs
        this.events.up(index)
      },
      (error) => {
        if (this.closed) return
        health.errors++
        health.lastError = error instanceof Error ? error.message : String(error)
        // Waiting for a server that does not answer costs a request held for the timeout: back
        // off. One that refuses costs nothing: keep retrying at the base pace.
        const timedOut = (error as { timedOut?: unknown } | null)?.timedOut === true
        health.delayMs = timedOut ? Math.min(this.maxDelayMs, health.delayMs * 2) : this.baseDelayMs
        this.schedule(index)
      },
    )
  }
}

function resolveWeights(names: readonly string[], weights: Readonly<Record<string, number>> | undefined) {
  for (const [server, weight] of Object.entries(weights ?? {})) {
    if (!names.includes(server)) {
      throw new CacheConfigError(
        'weights',
        `${JSON.stringify(server)} is not one of the servers (${names.join(', ')})`,
      )
    }
    if (!Number.isSafeInteger(weight) || weight < 1 || weight > 0xffff)
      throw new CacheConfigError(
        'weights',
        `${server}: ${String(weight)} is not a whole number from 1 to 65535`,
      )
  }
  return names.map((name) => weights?.[name] ?? 1)
}
