import {
  CacheClosedError,
  CacheConfigError,
  CacheTimeoutError,
  CacheUnavailableError,
  isUnavailable,
  type LoggerOption,
} from '@cache/core'
import {
  type CacheObserver,
  IncidentLog,
  SlowServerWatch,
  unrefRedisClient,
  waitAtMost,
} from '@cache/core/backend'
import type { Socket } from 'node:net'
import type { Cluster, Redis } from 'ioredis'
import {
  addressOf,
  type ConnectionSettings,
  checkClientOptions,
  commandTimeoutOf,
  createClient,
  isRedisClient,
  type RedisClient,
  type RedisConnection,
} from './client.js'
import { CommandDeadlines, timeEveryCommand } from './deadlines.js'
import { translateError } from './errors.js'
import { handleAskingFailures } from './slots.js'
import { SwitchOverGuard } from './switch-over.js'
import { ClusterTopology } from './topology.js'

/** A failure this long after the previous one keeps an outage open: it is not over yet. */
const QUIET_MS = 1000

/**
 * One backend's hold on its ioredis client: whether commands may be sent now, how long they may
 * take, what their failures become, and closing. Every failure is counted by the observer; an
 * outage (the server unreachable, or not answering in time) is logged once, and its end once.
 */
export class Connection {
  readonly client: RedisClient
  /** Per-operation timeout in ms. */
  readonly timeoutMs: number
  /** Where the client connects (`host:port`, the sentinels, the seed nodes): said in errors and logs. */
  readonly address: string
  /** The client's latest connection error: the `cause` of "not connected" failures. */
  private lastError: Error | undefined
  private readonly incidents: IncidentLog
  /** Timeouts alone (a slow server, a loaded machine) are an outage only once they last. */
  private readonly slowness: SlowServerWatch
  /** When an operation last failed for want of the server (epoch ms). */
  private lastFailure = 0
  /** When the last outage ended (epoch ms). */
  private recoveredAt = 0
  /** We built the client, so we close it; a client passed in stays open. */
  private readonly owned: boolean
  /**
   * The deadlines of the commands, unless the client enforces its own `commandTimeout` (a client
   * passed in with one): see {@link timed}.
   */
  private readonly deadlines: CommandDeadlines | undefined
  /** The promise of the command the client we built sent last: it has its deadline already. */
  private lastSent: Promise<unknown> | undefined
  /** Cluster only: which masters are connected, connecting or down. */
  private readonly topology: ClusterTopology | undefined
  /** Sentinel only: holds calls back while a switch-over promotes a replica. */
  private readonly switchOver: SwitchOverGuard | undefined
  private readySignal: Promise<boolean> | undefined
  private closed = false
  /**
   * Why the connection is not on the database it must be on, once known: the server's refusal of
   * the database the client selects (`/99` in the URL, `db: 99`; ioredis emits it and goes on
   * connected to DB 0), or the `CacheConfigError` of a client passed in found on another database
   * than it names (see {@link checkDatabase}). From then on nothing is sent (see {@link refuseDatabase}).
   */
  private databaseRefusal: Error | undefined
  /**
   * Set while the database a client passed in is on is being asked of the server (see
   * {@link checkDatabase}): commands wait for it.
   */
  private databaseCheck: Promise<void> | undefined
  /** A command of this tick went through {@link corkTick}: the next ones are corked. */
  private tickOpen = false
  /** The socket {@link corkTick} holds until the end of the current tick. */
  private corked: Socket | undefined
  /** performance.now() when the current tick's first command was sent; NaN: not read this tick. */
  private tickStart = Number.NaN
  /**
   * Runs at the end of every tick that went through {@link corkTick}, before the socket is
   * uncorked: the gets waiting for the end of their tick are sent then (see coalesce.ts). One
   * step per tick for all of them: a lone call schedules one callback, not one per part.
   */
  atTickEnd: (() => void) | undefined
  private closing: Promise<void> | undefined
  /** Operations under way (see {@link run}): `close()` lets them finish before it quits the client. */
  private active = 0
  /** Called once {@link active} falls to 0 while `close()` waits for it. */
  private idle: (() => void) | undefined
  /** `close()` is ending the client we built: a command refused from now on was not sent. */
  private quitting = false
  /**
   * Runs in `close()` once the calls under way are done, before the client quits: the settling
   * of `incr`/`atomicUpdate` calls whose reply was lost (see exactly-once.ts).
   */
  beforeQuit: (() => Promise<void>) | undefined

  constructor(
    connection: RedisConnection,
    settings: ConnectionSettings,
    private readonly observer: CacheObserver,
    logger?: LoggerOption,
    /** The backend's namespace, for the advice of a refused `keyPrefix`. */
    namespace = '',
  ) {
    this.incidents = new IncidentLog(logger)
    this.owned = !isRedisClient(connection)
    this.client = this.owned
      ? createClient(connection as Exclude<RedisConnection, Redis | Cluster>, settings)
      : (connection as RedisClient)
    try {
      checkClientOptions(this.client, namespace)
    } catch (error) {
      if (this.owned) this.client.disconnect()
      throw error
    }
    this.address = addressOf(this.client)
    // A client we built must not keep the process alive (a client passed in is its owner's).
    if (this.owned) unrefRedisClient(this.client)
    const clientTimeout = commandTimeoutOf(this.client)
    this.timeoutMs = clientTimeout ?? settings.timeoutMs
    this.deadlines =
      clientTimeout === undefined
        ? new CommandDeadlines(this.timeoutMs, this.bytesRead, this.timedOut, this.tickCorked)
        : undefined
    // Every command of the client we built (a command the backend sends, and one your code sends
    // on `backend.client`) gets its deadline: rejected with ioredis's `Command timed out`, it
    // holds the process while it waits, as before.
    if (this.owned && this.deadlines !== undefined)
      timeEveryCommand(this.client, this.deadlines, (promise) => {
        this.lastSent = promise
      })
    this.slowness = new SlowServerWatch(this.timeoutMs)
    // Without a listener ioredis prints every connection error; we count them instead.
    this.client.on('error', this.onClientError)
    this.client.on('ready', this.onReady)
    this.topology = this.client.isCluster
      ? new ClusterTopology(this.client as Cluster, this.timeoutMs)
      : undefined
    if (this.client.isCluster) handleAskingFailures(this.client as Cluster)
    const sentinels = this.client.isCluster ? undefined : (this.client as Redis).options.sentinels
    this.switchOver =
      sentinels && sentinels.length > 0
        ? new SwitchOverGuard(this.client as Redis, observer, this.timeoutMs)
        : undefined
    if (this.asksDatabase && this.client.status === 'ready') this.checkDatabase()
  }

  /** Whether the server is asked the database of each connection (see {@link checkDatabase}). */
  private get asksDatabase(): boolean {
    return !this.owned && !this.client.isCluster
  }

  /**
   * A client passed in: ioredis's record of its database (its options, `select()`) is not always
   * the server's. A `RESET`, or a `SELECT` in a transaction that was aborted (sent before it was
   * handed over, or waiting in its offline queue until it connects), leaves the connection on
   * another database than ioredis believes, and every write would land there. So on each
   * connection the server is asked (`CLIENT INFO`, Redis 6.2+), after what the client queued
   * while connecting (ioredis sends that right after `ready`) and before any command of the
   * backend; on another database, the backend refuses as for a refused `SELECT`. A server that
   * cannot answer (older than 6.2, a user without `CLIENT`) leaves ioredis's record as the one checked.
   */
  private checkDatabase(): void {
    const client = this.client as Redis
    const configured = Number(client.options.db ?? 0)
    const queued = new Promise<void>((resolve) => process.nextTick(resolve))
    const asked = queued
      .then(() => client.call('client', 'info') as Promise<unknown>)
      .then(
        (reply) => {
          const db = /(?:^| )db=(\d+)/.exec(String(reply))?.[1]
          if (db === undefined || Number(db) === configured) return
          this.refuseDatabase(
            new CacheConfigError(
              'db',
              `redis: the client passed in is on database ${db} of ${this.address}, while its options (and ioredis) name database ${configured} (a RESET, or a SELECT in an aborted transaction, before it was handed over): every write would land in database ${db}. Nothing is sent on it: every operation fails with CacheConfigError. Give the backend a client on its options' database (a new one, or client.duplicate())`,
            ),
          )
        },
        // Not known: the database is the one ioredis selected, as checked when the client was given.
        noop,
      )
    this.databaseCheck = asked.finally(() => {
      this.databaseCheck = undefined
    })
  }

  /** Waits, at most `ms`, for the {@link checkDatabase} under way, if any; false if it did not end. */
  private async databaseAnswered(ms: number): Promise<boolean> {
    const check = this.databaseCheck
    if (check === undefined) return true
    return (
      (await waitAtMost(
        check.then(() => true),
        Math.max(0, ms),
      )) === true
    )
  }

  /**
   * Waits, at most the operation timeout, for the {@link checkDatabase} under way: a server that
   * does not say which database the connection is on fails the operation as a timeout, and
   * nothing is sent meanwhile.
   */
  private async databaseChecked(operation: string, key: string | undefined): Promise<void> {
    if (await this.databaseAnswered(this.timeoutMs)) return
    const error = new CacheTimeoutError(
      'redis',
      `${operation} on ${this.address} (waiting for the server to say which database the connection is on)`,
      this.timeoutMs,
      { server: this.address },
    )
    throw this.failed(operation, error, key)
  }

  /** True when a command cannot be sent right now: {@link run} waits for {@link ready} first. */
  get blocked(): boolean {
    return (
      this.client.status !== 'ready' ||
      this.databaseCheck !== undefined ||
      this.closed ||
      this.databaseRefusal !== undefined ||
      (this.topology !== undefined && !this.topology.settled) ||
      this.switchOver?.holding === true
    )
  }

  /**
   * Waits, at most the operation timeout, for a connection that is being established (a new
   * backend, a reconnect attempt under way; on a cluster also a master's first connection). A
   * client that is down between attempts fails at once: waiting out the reconnect window is what
   * fail-fast avoids.
   */
  async ready(operation: string, key?: string): Promise<void> {
    if (this.closed) throw this.failed(operation, new CacheClosedError('redis'), key)
    await this.databaseChecked(operation, key)
    this.assertDatabase()
    if (this.switchOver?.holding) {
      const reason = `redis: ${operation} failed: a Sentinel switch-over is promoting a replica`
      throw this.failed(operation, new CacheUnavailableError('redis', reason), key)
    }
    const client = this.client
    const status = client.status
    const deadline = Date.now() + this.timeoutMs
    if (status !== 'ready') {
      if (status === 'wait') client.connect().catch(noop)
      if (status !== 'wait' && status !== 'connecting' && status !== 'connect')
        throw this.failed(operation, this.notConnected(operation), key)
      await waitAtMost(this.connected(), this.timeoutMs)
    }
    // Refused while it waited (ioredis readies the connection anyway, on DB 0), or on another
    // database than ioredis believes (asked once it is ready).
    await this.databaseChecked(operation, key)
    if (!this.closed) this.assertDatabase()
    if (client.status === 'ready') {
      // A cluster's masters connect once its slot map is known: wait for those too.
      if (this.topology === undefined || (await this.topology.connected(deadline - Date.now()))) {
        if (this.closed) throw this.failed(operation, new CacheClosedError('redis'), key)
        return
      }
    }
    // Closed while it waited: nothing was sent, and the caller's own close() is no outage.
    if (this.closed) throw this.failed(operation, new CacheClosedError('redis'), key)
    const stillConnecting =
      client.status === 'connecting' || client.status === 'connect' || client.status === 'ready'
    const error = stillConnecting
      ? new CacheTimeoutError(
          'redis',
          `${operation} on ${this.address} (waiting for the connection)`,
          this.timeoutMs,
          {
            server: this.address,
          },
        )
      : this.notConnected(operation)
    throw this.failed(operation, error, key)
  }

  /**
   * Before a command that must not run twice: as {@link ready}, and on a cluster fails at once
   * (so the caller knows nothing was sent) when the master serving `key` is known to be down.
   */
  async reachable(operation: string, userKey: string, key: string): Promise<void> {
    if (!this.blocked) return
    await this.ready(operation, userKey)
    try {
      await this.topology?.assertReachable(operation, key, userKey)
    } catch (error) {
      throw this.failed(operation, error, userKey)
    }
  }

  /**
   * Waits, at most `ms`, until a command for `key` can be sent: the connection (on a cluster: the
   * master serving `key`, across a failover) is up. False when it is not within `ms`. Also while
   * `close()` waits for its calls under way, until it quits the client.
   */
  async serving(key: string, ms: number): Promise<boolean> {
    const deadline = Date.now() + ms
    if (!(await this.clientReady(ms, true))) return false
    if (!(await this.databaseAnswered(deadline - Date.now()))) return false
    if (this.databaseRefusal !== undefined) return false
    if (this.topology === undefined) return true
    return (await this.topology.masterReady(key, deadline - Date.now())) !== undefined
  }

  /**
   * Waits, at most `ms`, until the client is ready (a cluster: its slot map covers every slot and
   * every master is connected), through reconnection attempts. Rejects with
   * {@link CacheUnavailableError} (or {@link CacheClosedError}) otherwise.
   */
  async whenReady(ms: number): Promise<void> {
    if (this.closed) throw new CacheClosedError('redis')
    const deadline = Date.now() + ms
    const left = () => Math.max(0, deadline - Date.now())
    const answered = await this.databaseAnswered(left())
    this.assertDatabase()
    while (this.switchOver?.holding && left() > 0) await delay(Math.min(left(), 20))
    const ready =
      !this.switchOver?.holding &&
      (await this.clientReady(left())) &&
      (this.topology === undefined || (await this.topology.healthy(left())))
    if (this.closed) throw new CacheClosedError('redis')
    const checked = answered && (await this.databaseAnswered(left()))
    this.assertDatabase()
    if (ready && checked) return
    const state = !checked
      ? 'the server did not say which database the connection is on'
      : this.client.status === 'ready'
        ? 'a master is unreachable'
        : this.client.status
    throw new CacheUnavailableError('redis', `redis: not ready within ${ms} ms (${state})`)
  }

  /**
   * Runs `work` once commands may be sent: at once, in the caller's turn (so commands go out in
   * call order), unless {@link blocked}; then after {@link ready}, whose failure it rejects with.
   * Until it settles the operation is under way: `close()` waits for it before quitting the
   * client, so every command of it (a `clear()`'s whole sweep) is answered.
   */
  run<T>(operation: string, key: string | undefined, work: () => Promise<T>): Promise<T> {
    return this.track(this.blocked ? this.ready(operation, key).then(work) : work())
  }

  /** An operation under way until `work` settles: `close()` waits for it (see {@link run}). */
  track<T>(work: Promise<T>): Promise<T> {
    this.active++
    return work.finally(this.finished)
  }

  /** An operation is under way until its {@link finished} (as {@link track}, without a promise). */
  started(): void {
    this.active++
  }

  /**
   * Called before a command that may share its tick with others. The first of a tick is written
   * at once, as it always was (a lone call waits for nothing); from the second on, the client's
   * socket holds what it is given until the end of the tick, then writes it at once: one syscall
   * for the rest of the tick's commands, in call order, each keeping its own reply and timeout.
   * One node or Sentinel only: a cluster has a socket per master.
   */
  corkTick(): void {
    if (this.corked !== undefined || this.topology !== undefined) return
    if (!this.tickOpen) {
      this.tickOpen = true
      process.nextTick(this.endTick)
      return
    }
    const stream = (this.client as unknown as { stream?: Socket }).stream
    if (stream === undefined || typeof stream.cork !== 'function' || stream.destroyed) return
    stream.cork()
    this.corked = stream
  }

  /**
   * performance.now() when the current tick's first command was sent, read once for the tick
   * (a tick's commands leave together, see {@link corkTick}); call it after {@link corkTick}.
   */
  tickTime(): number {
    if (!this.tickOpen) return performance.now()
    if (Number.isNaN(this.tickStart)) this.tickStart = performance.now()
    return this.tickStart
  }

  /**
   * Runs `send`, which sends several commands, with the client's socket corked: they leave in
   * one socket write (one system call, one read on the server) instead of one each, in order.
   */
  together<T>(send: () => T): T {
    const stream = (this.client as unknown as { stream?: Socket }).stream
    if (this.topology !== undefined || stream === undefined || typeof stream.cork !== 'function')
      return send()
    stream.cork()
    try {
      return send()
    } finally {
      stream.uncork()
    }
  }

  /** Throws `CacheClosedError` once `close()` was called: the same refusal on every backend. */
  assertOpen(): void {
    if (this.closed) throw new CacheClosedError('redis')
  }

  /**
   * A later step of a call whose first step was sent (getMany's second read): goes out even once
   * `close()` was called, which waits for it before quitting the client (see {@link settled}),
   * so the call ends with its real outcome. Otherwise as {@link send}.
   */
  sendNext<T>(operation: string, key: string | undefined, command: () => Promise<T>): Promise<T> {
    if (!this.closed || this.quitting || this.client.status !== 'ready')
      return this.send(operation, key, command)
    return this.track(this.call(operation, key, command()))
  }

  /** Sends `command()` once commands may be sent (see {@link run}), awaited as {@link call} does. */
  send<T>(operation: string, key: string | undefined, command: () => Promise<T>): Promise<T> {
    return this.run(operation, key, () => this.call(operation, key, command()))
  }

  /** Awaits one command sent when not {@link blocked}: measures it and translates its failure. */
  async call<T>(operation: string, key: string | undefined, command: Promise<T>): Promise<T> {
    const start = performance.now()
    try {
      const reply = await this.timed(command, operation)
      this.observer.latency(performance.now() - start)
      this.answered()
      return reply
    } catch (error) {
      throw this.failed(operation, error, key)
    }
  }

  /**
   * The command's outcome, or a {@link CacheTimeoutError} once `timeoutMs` passed from its write
   * without one (see {@link CommandDeadlines}: a reply that arrived while this process was busy
   * is read before the deadline is judged). Call it in the tick the command was sent. A client
   * passed in with its own `commandTimeout` times its commands itself: its promise as it is.
   */
  timed<T>(command: Promise<T>, operation: string): Promise<T> {
    if (this.deadlines === undefined || command === this.lastSent) return command
    return this.deadlines.watch(command, operation)
  }

  private readonly timedOut = (operation: string): Error =>
    new CacheTimeoutError('redis', `${operation} on ${this.address}`, this.timeoutMs, {
      server: this.address,
    })

  /** Bytes read so far from the server (a cluster: from each node), on the current sockets. */
  private readonly bytesRead = (): Map<object, number> => {
    if (!this.client.isCluster) return new Map([[this.client, streamOf(this.client)?.bytesRead ?? 0]])
    const bytes = new Map<object, number>()
    for (const node of (this.client as Cluster).nodes('all')) bytes.set(node, streamOf(node)?.bytesRead ?? 0)
    return bytes
  }

  /**
   * The @cache error for a failure. One that says Redis is unavailable (down, unreachable, timed
   * out) is counted, emitted as an `error` event, and logged once per outage; any other (a value
   * that is not a number, a key of another type) is the caller's: thrown to them, not counted.
   */
  failed(operation: string, error: unknown, key: string | undefined): Error {
    let translated = translateError(error, operation, this.timeoutMs, key, this.address)
    if (!isUnavailable(translated)) return translated
    // Refused because close() ended the connection (so not applied): the caller's own doing.
    if (this.quitting && !isTimeout(translated)) translated = new CacheClosedError('redis')
    this.observer.error(operation, translated, key)
    if (!this.closed && !(translated instanceof CacheClosedError))
      this.outage(reasonOf(translated, this.timeoutMs), isTimeout(translated))
    return translated
  }

  /** A command was answered: an outage that has been quiet for a while is over. */
  answered(): void {
    this.slowness.answered()
    if (this.lastFailure !== 0 && Date.now() - this.lastFailure >= QUIET_MS) this.recovered()
  }

  /** Idempotent. Quits a client we created; a client passed in is left open. */
  close(): Promise<void> {
    this.closing ??= this.shutdown()
    return this.closing
  }

  private async shutdown(): Promise<void> {
    this.closed = true
    this.switchOver?.close()
    const client = this.client
    // Operations under way finish first, with their real outcome; those that have not sent
    // anything yet are refused (see ready()). A client that is down has nothing under way to
    // wait for: it ends at once, and calls waiting for it to connect are refused.
    if (client.status === 'ready') await this.settled()
    // Calls whose outcome is still being settled (also with the client down): one last attempt
    // each. On a cluster the topology still follows the masters meanwhile (a failover).
    await this.beforeQuit?.()
    this.topology?.close()
    if (!this.owned) {
      await this.settled()
      client.off('error', this.onClientError)
      return
    }
    if (client.status === 'end') return this.settled()
    const ended = new Promise<void>((resolve) => client.once('end', resolve))
    this.quitting = true
    try {
      if (client.status !== 'ready') throw new Error('not connected')
      await this.timed(client.quit(), 'close')
    } catch {
      client.disconnect()
    }
    // QUIT's reply comes before the socket closes; wait (briefly) for the close itself. The wait
    // holds the process (the socket does not): `await close()` must return before it may exit.
    await waitAtMost(ended, this.timeoutMs)
    await this.settled()
  }

  /**
   * Resolves once no operation is under way and none follows within the tick: a step an
   * operation sends right after another's reply (a second read of a value) goes out before QUIT.
   */
  private async settled(): Promise<void> {
    for (;;) {
      if (this.active > 0) await new Promise<void>((resolve) => (this.idle = resolve))
      await new Promise<void>((resolve) => setImmediate(resolve))
      if (this.active === 0) return
    }
  }

  private readonly endTick = (): void => {
    this.atTickEnd?.()
    this.tickOpen = false
    this.tickStart = Number.NaN
    const stream = this.corked
    this.corked = undefined
    stream?.uncork()
    // The tick's commands are written now: their deadline starts.
    this.deadlines?.seal()
  }

  /** True while a tick that went through {@link corkTick} is open: {@link endTick} ends it. */
  private readonly tickCorked = (): boolean => this.tickOpen

  /** The end of an operation {@link started} (or tracked). */
  readonly finished = (): void => {
    if (--this.active > 0) return
    const idle = this.idle
    this.idle = undefined
    idle?.()
  }

  /** Resolves true on `ready`, false when the attempt fails; one shared listener set for all waiters. */
  private connected(): Promise<boolean> {
    const client = this.client
    this.readySignal ??= new Promise<boolean>((resolve) => {
      const settle = (ok: boolean) => () => {
        client.off('ready', onReady).off('close', onClose).off('end', onClose)
        this.readySignal = undefined
        resolve(ok)
      }
      const onReady = settle(true)
      const onClose = settle(false)
      client.once('ready', onReady).once('close', onClose).once('end', onClose)
    })
    return this.readySignal
  }

  /**
   * True once the client is ready, waiting at most `ms` (through reconnection attempts); false
   * once `close()` was called (with `untilQuit`: once it quits the client).
   */
  private async clientReady(ms: number, untilQuit = false): Promise<boolean> {
    const client = this.client
    const deadline = Date.now() + ms
    const ended = () => (untilQuit ? this.quitting || client.status === 'end' : this.closed)
    while (!ended() && client.status !== 'ready') {
      if (client.status === 'wait') client.connect().catch(noop)
      if (client.status === 'end') return false
      const left = deadline - Date.now()
      if (left <= 0) return false
      await waitAtMost(this.connected(), left)
    }
    return client.status === 'ready' && !ended()
  }

  private readonly onClientError = (error: unknown): void => {
    // Once the database was refused, what the connection reports (ioredis's ready check failing
    // on the socket we ended) is no outage: nothing is sent on it any more.
    if (this.databaseRefusal !== undefined) return
    if ((error as { command?: { name?: unknown } } | null)?.command?.name === 'select') {
      this.refuseDatabase(error as Error)
      return
    }
    this.lastError = error instanceof Error ? error : new Error(String(error))
    this.observer.error(
      'connection',
      translateError(error, 'connection', this.timeoutMs, undefined, this.address),
    )
    if (!this.closed) this.outage(this.lastError.message, isTimeout(this.lastError))
  }

  private readonly onReady = (): void => {
    // Ready on DB 0 after the server refused the database: no recovery, nothing is sent on it.
    if (this.databaseRefusal !== undefined) return
    if (this.asksDatabase) this.checkDatabase()
    this.lastError = undefined
    this.slowness.answered()
    this.recovered()
  }

  /**
   * Logs an outage once. A connection refused, an unknown host, a rejected password is one at
   * once; a `timedOut` failure only once the server has answered nothing for a while (a healthy
   * server on a loaded machine can miss the first timeouts of a process).
   */
  private outage(reason: string, timedOut: boolean): void {
    const now = Date.now()
    this.lastFailure = now
    // A command sent before the connection came back may still fail just after: the same outage.
    if (now - this.recoveredAt < QUIET_MS) return
    if (timedOut) {
      if (this.incidents.has('down') || !this.slowness.timedOut()) return
      reason = this.slowness.reason()
    }
    this.incidents.report(
      'down',
      `redis: cannot reach ${this.address}: ${reason.replace(/\.+$/, '')}. Operations fail fast with CacheUnavailableError (memoized functions run uncached) while the client keeps reconnecting.`,
    )
  }

  private recovered(): void {
    this.lastFailure = 0
    if (this.incidents.has('down')) this.recoveredAt = Date.now()
    this.incidents.resolve('down', `redis: ${this.address} answers again.`)
  }

  /**
   * The server refused the SELECT of the client's database (`ERR DB index is out of range`, a
   * server without that database; `ERR SELECT is not allowed in cluster mode`). ioredis emits it
   * and readies the connection anyway, on DB 0: the application's entries would land in the
   * database something else uses. A configuration error, not an outage: it is logged and counted
   * once, a client we built is ended (a reconnect would select the same database), and every
   * operation fails with {@link CacheConfigError} from then on without sending anything.
   */
  private refuseDatabase(error: Error): void {
    if (this.databaseRefusal !== undefined) return
    this.databaseRefusal = error
    const refusal = this.databaseRefused()
    this.incidents.report('database', refusal.message.replace(/^db: /, ''))
    this.observer.error('connection', refusal)
    if (this.owned) this.client.disconnect()
  }

  /** Throws the {@link refuseDatabase} refusal, once the server refused the database. */
  private assertDatabase(): void {
    if (this.databaseRefusal !== undefined) throw this.databaseRefused()
  }

  private databaseRefused(): CacheConfigError {
    const error = this.databaseRefusal!
    if (error instanceof CacheConfigError) return error
    const args = (error as { command?: { args?: unknown[] } }).command?.args
    const db = args?.[0] ?? (this.client as Redis).options?.db
    return new CacheConfigError(
      'db',
      `redis: ${this.address} refused database ${db} (SELECT ${db}: ${error.message}), the database of the URL (\`/${db}\`) or the \`db\` option. Nothing is sent on this connection: every operation fails with CacheConfigError (never written into DB 0). Give a database the server has (0 to \`databases\` - 1).`,
      { cause: error },
    )
  }

  /** Why a command cannot be sent: the client is not connected; the cause is its latest error. */
  private notConnected(operation: string): CacheUnavailableError {
    const last = this.lastError
    return new CacheUnavailableError(
      'redis',
      `redis: ${operation} on ${this.address} failed: not connected (${this.client.status})${last ? `: ${last.message}` : ''}`,
      { cause: last, server: this.address },
    )
  }
}

function streamOf(client: RedisClient): Socket | undefined {
  return (client as unknown as { stream?: Socket }).stream
}

/** A wait that does not keep the process alive. */
function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref())
}

function noop(): void {}

/** A request that got no answer in time (ours, ioredis's `Command timed out`, a TCP connect timeout). */
function isTimeout(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code
  if (code === 'CACHE_TIMEOUT' || code === 'ETIMEDOUT') return true
  return error instanceof Error && /timed? ?out/i.test(error.message)
}

/** What went wrong, for the log: the client's own error when there is one. */
function reasonOf(error: Error, timeoutMs: number): string {
  if ((error as { code?: string }).code === 'CACHE_TIMEOUT') return `no answer within ${timeoutMs} ms`
  const cause = error.cause
  if (cause instanceof Error) return cause.message
  return error.message.replace(/^redis: .*? failed: /, '')
}
