import { randomUUID } from 'node:crypto'
import { EventEmitter } from 'node:events'
import {
  CacheClosedError,
  CacheConfigError,
  type CacheLogger,
  checkLogger,
  type Duration,
  IncidentLog,
  parseDuration,
} from '@cache/core'
import { decode, encodeBatch } from './bus-messages.js'
import {
  addressOf,
  type Clients,
  closeClient,
  describe,
  isClient,
  openClients,
  type RedisBusConnection,
  type RedisClientLike,
  whenReady,
} from './redis-clients.js'

export type { RedisBusConnection, RedisClientLike } from './redis-clients.js'

/**
 * What travels on the bus: keys (or "clear this namespace"), never values. `origin` identifies the
 * multi-level instance that sent it, so it can ignore its own messages.
 */
export interface InvalidationMessage {
  origin: string
  namespace: string
  keys?: string[]
  clear?: boolean
}

/** A channel between processes that share a cache. {@link redisBus} is the implementation shipped. */
export interface InvalidationBus {
  /**
   * Sends a message to every subscriber. Resolves once it was handed to the transport, rejects
   * when it could not be; callers need not wait for it (a chain does not).
   */
  publish(message: InvalidationMessage): Promise<void>
  /**
   * Receives every message. `onResync` is called whenever messages may have been lost (the link
   * went down, came back, or a sender could not publish): the listener must forget what it
   * cached. Returns a function that unsubscribes.
   */
  subscribe(listener: (message: InvalidationMessage) => void, onResync?: () => void): () => void
  /** Resolves once messages are being received (the subscription is proven to work). */
  ready(): Promise<void>
  /** Idempotent. Closes only the connections the bus opened itself. */
  close(): Promise<void>
}

/** Options of {@link redisBus}. */
export interface RedisBusOptions {
  /** The pub/sub channel. Processes that should invalidate each other use the same one. Default: `'@cache/multi-level:invalidate'`. */
  channel?: string
  /**
   * Most time one PUBLISH may take (including waiting for a connection) before the messages in
   * it count as lost. Seconds or a duration string. Default: `'500ms'`.
   */
  publishTimeout?: Duration
  /**
   * How often the bus checks its link: it publishes a heartbeat to itself every `heartbeat` and
   * declares the link down when one has not come back by the next. A silent link is therefore
   * noticed within 2 × `heartbeat`. Seconds or a duration string. Default: `'1s'`.
   */
  heartbeat?: Duration
  /** More ioredis options for the connections the bus opens itself (e.g. `tls: { ca }`). */
  redisOptions?: Record<string, unknown>
  /**
   * Where the bus reports its link going down (or never coming up) and coming back, once each:
   * any object with `warn` and `error`, or `false`. Default: the process-wide logger (`console`).
   */
  logger?: CacheLogger | false
}

/** `connecting`: not yet proven. `up`: heartbeats come back. `down`: they stopped. */
export type BusState = 'connecting' | 'up' | 'down'

/** What a bus counted. */
export interface BusStats {
  /** Messages handed to Redis (several may share one PUBLISH). */
  published: number
  /** Messages that could not be sent (each batch also an `error` event). */
  publishFailures: number
  /** Messages received from other chains. */
  received: number
  /** Times the link was found down (no heartbeat back in time, or the connection closed). */
  linkDowns: number
  /** Times the listeners were told to resync (forget their faster levels). */
  resyncs: number
}

/** Events of a bus: a failed publish, and the link going down and coming back. */
export type BusEventName = 'error' | 'link-down' | 'link-up'

export interface BusEvent {
  backend: 'bus'
  operation?: string
  error?: unknown
  reason?: string
}

/**
 * An invalidation bus over Redis pub/sub, on `ioredis` (an optional peer dependency). See the
 * README ("Invalidation bus") for its delivery semantics, staleness window and dead-link bound.
 */
export function redisBus(connection: RedisBusConnection, options: RedisBusOptions = {}): RedisBus {
  return new RedisBus(connection, options)
}

/** Wait between a message being queued and its batch being sent, in ms. */
const BATCH_MS = 1
/** While the link is down, the subscriber is reconnected every this many heartbeats. */
const RECONNECT_EVERY = 5

interface Pending {
  /** Absent for a gap notice alone. */
  message?: InvalidationMessage
  resolve: () => void
  reject: (error: unknown) => void
}

interface Listener {
  message: (m: InvalidationMessage) => void
  resync?: () => void
}

/**
 * The bus: publishes batched after the write (never awaited by it), proves its own link with a
 * heartbeat on a private channel, and tells its listeners to resync whenever messages may have
 * been lost.
 */
export class RedisBus implements InvalidationBus {
  readonly stats: BusStats = { published: 0, publishFailures: 0, received: 0, linkDowns: 0, resyncs: 0 }
  /** This bus's id: its heartbeat channel, and its mark on gap notices. */
  readonly id = randomUUID()
  private readonly channel: string
  private readonly beatChannel: string
  private readonly publishTimeoutMs: number
  private readonly heartbeatMs: number
  private readonly events = new EventEmitter()
  private readonly listeners = new Set<Listener>()
  private readonly clients: Promise<Clients>
  private readonly firstUp: Promise<void>
  private markUp!: () => void
  private current: BusState = 'connecting'
  private queue: Pending[] = []
  private flushing: Promise<void> | undefined
  private flushScheduled = false
  /** A publish failed since the last successful one: the next message tells receivers to resync. */
  private gap = false
  private beatSent = 0
  /** The oldest heartbeat not back yet, and when it was sent (performance.now()). */
  private beatAwaited: number | undefined
  private beatAwaitedSince = 0
  private ticksDown = 0
  /** Heartbeats sent while still `connecting`: the link is reported down after a few. */
  private ticksConnecting = 0
  private readonly incidents: IncidentLog
  /** Where the bus connects, for the log. */
  private readonly address: string
  private timer: NodeJS.Timeout | undefined
  private closed: Promise<void> | undefined

  constructor(connection: RedisBusConnection, options: RedisBusOptions) {
    if ('publishTimeoutMs' in options) {
      throw new CacheConfigError(
        'publishTimeoutMs',
        'renamed `publishTimeout` (seconds or a duration string)',
      )
    }
    this.channel = options.channel ?? '@cache/multi-level:invalidate'
    if (typeof this.channel !== 'string' || this.channel === '')
      throw new CacheConfigError('channel', 'expected a non-empty string')
    this.beatChannel = `${this.channel}:heartbeat:${this.id}`
    this.publishTimeoutMs = parseDuration(options.publishTimeout ?? '500ms', 'publishTimeout')
    this.heartbeatMs = parseDuration(options.heartbeat ?? '1s', 'heartbeat')
    this.firstUp = new Promise<void>((resolve) => {
      this.markUp = resolve
    })
    this.incidents = new IncidentLog(checkLogger(options.logger))
    // A malformed URL or connection throws here, not on the first publish.
    const target = isClient(connection) ? connection : describe(connection)
    this.address = addressOf(target)
    this.clients = openClients(target, options.redisOptions ?? {})
    this.clients.then(
      (clients) => this.listen(clients),
      () => {},
    )
    this.timer = setInterval(() => this.tick(), this.heartbeatMs)
    this.timer.unref?.()
  }

  /** `up` while heartbeats come back. */
  get state(): BusState {
    return this.current
  }

  publish(message: InvalidationMessage): Promise<void> {
    if (this.closed) return Promise.reject(new CacheClosedError('bus'))
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ message, resolve, reject })
      this.scheduleFlush()
    })
  }

  subscribe(listener: (message: InvalidationMessage) => void, onResync?: () => void): () => void {
    const entry = { message: listener, resync: onResync }
    this.listeners.add(entry)
    return () => {
      this.listeners.delete(entry)
    }
  }

  ready(): Promise<void> {
    // The bus's connections do not keep the process alive; a caller waiting for it to be up does.
    const hold = setInterval(() => {}, 60_000)
    const up = this.clients.then(() => this.firstUp)
    up.finally(() => clearInterval(hold)).catch(() => {})
    return up
  }

  /**
   * Resolves once every message queued so far has been handed to Redis (or counted as failed).
   * For graceful shutdowns and tests; writes never wait for it.
   */
  async flush(): Promise<void> {
    while (this.flushScheduled || this.flushing || this.queue.length > 0) {
      if (this.flushing) await this.flushing
      else await new Promise((resolve) => setImmediate(resolve))
    }
  }

  on(event: BusEventName, listener: (event: BusEvent) => void): this {
    this.events.on(event, listener)
    return this
  }

  off(event: BusEventName, listener: (event: BusEvent) => void): this {
    this.events.off(event, listener)
    return this
  }

  /** Sends what is queued, then closes the connections the bus opened. Idempotent. */
  close(): Promise<void> {
    this.closed ??= (async () => {
      clearInterval(this.timer)
      await this.flushing
      while (this.queue.length > 0) await this.sendQueued()
      this.listeners.clear()
      const clients = await this.clients.catch(() => undefined)
      await Promise.all(clients?.owned.map((client) => closeClient(client, this.publishTimeoutMs)) ?? [])
    })()
    return this.closed
  }

  /**
   * Sends what is queued in one batch, {@link BATCH_MS} after the first message of it, one batch
   * in flight at a time (so order is kept): writes in between share a PUBLISH, which is what keeps
   * the bus cheap under a stream of writes. The writes that queued them have already resolved.
   */
  private scheduleFlush(): void {
    if (this.flushScheduled || this.flushing) return
    this.flushScheduled = true
    setTimeout(() => {
      this.flushScheduled = false
      this.flushing = this.sendQueued().finally(() => {
        this.flushing = undefined
        if (this.queue.length > 0) this.scheduleFlush()
      })
    }, BATCH_MS)
  }

  private async sendQueued(): Promise<void> {
    const batch = this.queue
    this.queue = []
    const messages = batch.flatMap((pending) => (pending.message ? [pending.message] : []))
    try {
      await this.send(encodeBatch(messages, this.gap ? this.id : undefined))
      this.gap = false
      this.stats.published += messages.length
      for (const pending of batch) pending.resolve()
    } catch (error) {
      this.stats.publishFailures += messages.length
      this.gap = true
      if (messages.length > 0) this.emit('error', { backend: 'bus', operation: 'publish', error })
      for (const pending of batch) pending.reject(error)
    }
  }

  /** PUBLISHes payloads on the channel, within `publishTimeout` (connecting included). */
  private async send(payloads: string[], channel = this.channel): Promise<void> {
    const { publisher } = await this.clients
    let timer: NodeJS.Timeout | undefined
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`invalidation bus: publish timed out after ${this.publishTimeoutMs} ms`)),
        this.publishTimeoutMs,
      )
    })
    try {
      await Promise.race([
        whenReady(publisher).then(() =>
          Promise.all(payloads.map((payload) => publisher.publish(channel, payload))),
        ),
        expired,
      ])
    } finally {
      clearTimeout(timer)
    }
  }

  private listen({ subscriber }: Clients): void {
    subscriber.on('message', (channel: string, text: string) => {
      if (channel === this.beatChannel) return this.onBeat(Number(text))
      if (channel !== this.channel) return
      const decoded = decode(text)
      if (decoded === undefined) return
      if (decoded.gapFrom !== undefined && decoded.gapFrom !== this.id) this.resync()
      for (const message of decoded.messages) {
        this.stats.received++
        for (const listener of this.listeners) listener.message(message)
      }
    })
    // A closed connection is known at once; a silent one only by the heartbeat.
    subscriber.on('close', () => this.down('the subscriber connection closed', false))
    // ioredis subscribes again after a reconnect, without telling when that took effect:
    // subscribing once more (a no-op for Redis) says when, and a heartbeat then proves it.
    subscriber.on('ready', () => this.subscribeAndBeat(subscriber))
    // ioredis reconnects by itself; a bus that cannot reach Redis is reported by its state.
    subscriber.on('error', () => {})
    this.subscribeAndBeat(subscriber)
  }

  private subscribeAndBeat(subscriber: RedisClientLike): void {
    subscriber.subscribe(this.channel, this.beatChannel).then(
      () => this.beat(),
      () => {},
    )
  }

  /** Every `heartbeat`: judge the oldest heartbeat out, send the next one. */
  private tick(): void {
    // Judged once it had half an interval at least (one sent on reconnect may be very recent).
    if (this.beatAwaited !== undefined && performance.now() - this.beatAwaitedSince >= this.heartbeatMs / 2)
      this.down(`no heartbeat came back within ${this.heartbeatMs} ms`)
    if (this.current === 'connecting' && ++this.ticksConnecting === RECONNECT_EVERY)
      this.reportDown(`not up after ${RECONNECT_EVERY} heartbeats`)
    if (this.current !== 'up') {
      // Nothing received while down can be trusted: keep the faster levels empty.
      this.resync()
      if (++this.ticksDown % RECONNECT_EVERY === 0) void this.reconnect()
    }
    this.beat()
    if (this.gap && this.queue.length === 0) {
      // Nobody writes: the lost messages are announced on a notice of their own.
      this.queue.push({ resolve() {}, reject() {} })
      this.scheduleFlush()
    }
  }

  private beat(): void {
    if (this.closed) return
    const seq = ++this.beatSent
    if (this.beatAwaited === undefined) {
      this.beatAwaited = seq
      this.beatAwaitedSince = performance.now()
    }
    this.send([String(seq)], this.beatChannel).catch(() => {})
  }

  private onBeat(seq: number): void {
    if (this.beatAwaited !== undefined && seq >= this.beatAwaited) this.beatAwaited = undefined
    if (this.current === 'up') return
    const wasDown = this.current === 'down'
    this.current = 'up'
    this.ticksDown = 0
    // The subscription works again; anything sent before it took effect may be lost.
    this.resync()
    this.markUp()
    this.incidents.resolve('link', `invalidation bus: the link to Redis (${this.address}) is back.`)
    if (wasDown) this.emit('link-up', { backend: 'bus' })
  }

  /** The link is down: tell the listeners, and reopen a silent connection (`reconnect`). */
  private down(reason: string, reconnect = true): void {
    this.beatAwaited = undefined
    if (this.current !== 'up' || this.closed) return
    this.current = 'down'
    this.stats.linkDowns++
    this.reportDown(reason)
    this.emit('link-down', { backend: 'bus', reason })
    this.resync()
    if (reconnect) void this.reconnect()
  }

  /** Drops and reopens the subscriber (and a publisher the bus owns): a silent link stays silent. */
  private async reconnect(): Promise<void> {
    if (this.closed) return
    const { subscriber, publisher, owned } = await this.clients
    subscriber.disconnect?.(true)
    if (owned.includes(publisher) && publisher !== subscriber) publisher.disconnect?.(true)
  }

  private reportDown(reason: string): void {
    this.incidents.report(
      'link',
      `invalidation bus: the link to Redis (${this.address}) is down: ${reason}. Until it is back, chains on this bus keep their faster levels empty (reads go to the shared level).`,
    )
  }

  private resync(): void {
    if (this.listeners.size === 0) return
    this.stats.resyncs++
    for (const listener of this.listeners) listener.resync?.()
  }

  private emit(name: BusEventName, event: BusEvent): void {
    if (this.events.listenerCount(name) > 0) this.events.emit(name, event)
  }
}

/** A fresh id for one multi-level instance. */
export function newOrigin(): string {
  return randomUUID()
}
