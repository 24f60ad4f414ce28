import { randomUUID } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { CacheClosedError, CacheConfigError, type Duration, parseDuration, parseRedisUrl } from '@cache/core'

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

/** The part of an ioredis client (`Redis` or `Cluster`) the bus uses. */
export interface RedisClientLike {
  publish(channel: string, message: string): Promise<unknown>
  subscribe(...channels: string[]): Promise<unknown>
  duplicate(...args: any[]): RedisClientLike
  on(event: string, listener: (...args: any[]) => void): unknown
  once?(event: string, listener: (...args: any[]) => void): unknown
  off?(event: string, listener: (...args: any[]) => void): unknown
  quit(): Promise<unknown>
  disconnect?(reconnect?: boolean): void
  readonly status?: string
  readonly isCluster?: boolean
  readonly options?: Record<string, any>
}

/**
 * Where the bus connects: any form the redis backend accepts.
 *
 * - a URL: `redis://`, `rediss://`, `redis+sentinel://host:port[,…]/masterName`,
 *   `redis+cluster://host:port[,…]` (see @cache/redis for the full grammar);
 * - ioredis options for one node or Sentinel (`{ host, port }`, `{ sentinels, name }`), or
 *   `{ cluster: [{ host, port }, …], …ClusterOptions }`;
 * - an ioredis `Redis` or `Cluster` client (e.g. `redisBackend(url).client`).
 */
export type RedisBusConnection = string | RedisClientLike | Record<string, unknown>

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
/** Keys per message: a batch of writes with more keys is split into several PUBLISHes. */
const MAX_KEYS_PER_MESSAGE = 1000
/** While the link is down, the subscriber is reconnected every this many heartbeats. */
const RECONNECT_EVERY = 5

interface Clients {
  publisher: RedisClientLike
  subscriber: RedisClientLike
  owned: RedisClientLike[]
}

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
    // A malformed URL or connection throws here, not on the first publish.
    const target = isClient(connection) ? connection : describe(connection)
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
    return this.clients.then(() => this.firstUp)
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
    if (wasDown) this.emit('link-up', { backend: 'bus' })
  }

  /** The link is down: tell the listeners, and reopen a silent connection (`reconnect`). */
  private down(reason: string, reconnect = true): void {
    this.beatAwaited = undefined
    if (this.current !== 'up' || this.closed) return
    this.current = 'down'
    this.stats.linkDowns++
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

  private resync(): void {
    if (this.listeners.size === 0) return
    this.stats.resyncs++
    for (const listener of this.listeners) listener.resync?.()
  }

  private emit(name: BusEventName, event: BusEvent): void {
    if (this.events.listenerCount(name) > 0) this.events.emit(name, event)
  }
}

/**
 * QUIT when connected (bounded), else drop the connection: a QUIT sent while Redis is unreachable
 * would wait in the offline queue for good.
 */
async function closeClient(client: RedisClientLike, ms: number): Promise<void> {
  if (client.status === 'ready') {
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms)
    })
    await Promise.race([client.quit().catch(() => {}), late])
    clearTimeout(timer)
  }
  client.disconnect?.()
}

const CONNECTING = new Set(['wait', 'connecting', 'connect', 'reconnecting'])
const readiness = new WeakMap<RedisClientLike, Promise<void>>()

/** Resolves when the client can send, or at once if it is not connecting (the send then fails fast). */
function whenReady(client: RedisClientLike): Promise<void> {
  if (client.status === undefined || !CONNECTING.has(client.status) || !client.once) return Promise.resolve()
  let ready = readiness.get(client)
  if (ready === undefined) {
    // One listener per client however many sends wait for it.
    ready = new Promise<void>((resolve) => client.once!('ready', () => resolve())).finally(() =>
      readiness.delete(client),
    )
    readiness.set(client, ready)
  }
  return ready
}

/** Connection settings of the bus's own clients: fail fast when publishing, queue the SUBSCRIBE. */
const PUBLISHER = { enableOfflineQueue: false, maxRetriesPerRequest: 0 }
const SUBSCRIBER = { enableOfflineQueue: true, maxRetriesPerRequest: null, autoResubscribe: true }
const RECONNECT = { retryStrategy: (attempt: number) => Math.min(attempt * 50, 500) }

/** What the bus connects to: a client passed in, or the ioredis settings of a URL or options. */
type Target = RedisClientLike | Described

async function openClients(target: Target, extra: Record<string, unknown>): Promise<Clients> {
  if (isClient(target)) {
    const subscriber = duplicateForSubscribing(target)
    return { publisher: target, subscriber, owned: [subscriber] }
  }
  const { Redis, Cluster } = await import('ioredis')
  const { nodes, options } = target
  const build = (settings: Record<string, unknown>): RedisClientLike => {
    if (nodes !== undefined) {
      const { redisOptions, ...clusterOptions } = options as { redisOptions?: Record<string, unknown> }
      return new Cluster(nodes, {
        clusterRetryStrategy: RECONNECT.retryStrategy,
        ...clusterOptions,
        enableOfflineQueue: settings.enableOfflineQueue as boolean,
        redisOptions: { ...redisOptions, ...extra, ...settings },
      }) as unknown as RedisClientLike
    }
    return new Redis({ ...RECONNECT, ...options, ...extra, ...settings }) as unknown as RedisClientLike
  }
  const publisher = build(PUBLISHER)
  publisher.on('error', () => {})
  const subscriber = build(SUBSCRIBER)
  return { publisher, subscriber, owned: [publisher, subscriber] }
}

/** The subscriber for a client passed in: its settings, but queueing commands until connected. */
function duplicateForSubscribing(client: RedisClientLike): RedisClientLike {
  // A client built to fail fast (no offline queue, a command timeout) would drop the SUBSCRIBE
  // sent before its connection is up, and never receive anything.
  if (client.isCluster) {
    const redisOptions = { ...client.options?.redisOptions, ...SUBSCRIBER, commandTimeout: undefined }
    return client.duplicate([], { enableOfflineQueue: true, lazyConnect: false, redisOptions })
  }
  return client.duplicate({ ...SUBSCRIBER, commandTimeout: undefined, lazyConnect: false })
}

/** ioredis options for a URL or an options object; `nodes` for a cluster. */
interface Described {
  nodes?: { host: string; port: number }[]
  options: Record<string, unknown>
}

function describe(connection: string | Record<string, unknown>): Described {
  if (typeof connection !== 'string' && (typeof connection !== 'object' || connection === null))
    throw new CacheConfigError('connection', 'expected a Redis URL, ioredis options or an ioredis client')
  if (typeof connection !== 'string') {
    const { cluster, ...options } = connection as { cluster?: unknown }
    if (Array.isArray(cluster)) return { nodes: cluster, options }
    return { options }
  }
  const url = parseRedisUrl(connection)
  const common: Record<string, unknown> = {
    ...(url.auth.username === undefined ? {} : { username: url.auth.username }),
    ...(url.auth.password === undefined ? {} : { password: url.auth.password }),
    ...(url.query.connectionName === undefined ? {} : { connectionName: url.query.connectionName }),
    ...(url.query.family === undefined ? {} : { family: url.query.family }),
    ...(url.tls ? { tls: {} } : {}),
  }
  if (url.mode === 'cluster') return { nodes: url.nodes, options: { redisOptions: common } }
  if (url.mode === 'sentinel') {
    return {
      options: {
        ...common,
        sentinels: url.sentinels,
        name: url.name,
        db: url.db,
        ...(url.query.sentinelUsername === undefined ? {} : { sentinelUsername: url.query.sentinelUsername }),
        ...(url.query.sentinelPassword === undefined ? {} : { sentinelPassword: url.query.sentinelPassword }),
        ...(url.tls ? { enableTLSForSentinelMode: true, sentinelTLS: {} } : {}),
      },
    }
  }
  return { options: { ...common, host: url.host, port: url.port, db: url.db } }
}

function isClient(value: unknown): value is RedisClientLike {
  const v = value as Partial<RedisClientLike> | null
  return typeof v?.publish === 'function' && typeof v.duplicate === 'function'
}

/** A fresh id for one multi-level instance. */
export function newOrigin(): string {
  return randomUUID()
}

/**
 * The PUBLISH payloads for a batch: one message per chain and namespace with all their keys (a
 * clear covers them all), at most {@link MAX_KEYS_PER_MESSAGE} keys each. The wire format is the
 * one older versions read (`o`, `n`, `k` or `c`); `g` (a gap notice from bus `b`) is new.
 */
function encodeBatch(messages: readonly InvalidationMessage[], gapFrom: string | undefined): string[] {
  const groups = new Map<string, { origin: string; namespace: string; keys: Set<string>; clear: boolean }>()
  for (const message of messages) {
    const id = `${message.origin}\u0000${message.namespace}`
    let group = groups.get(id)
    if (group === undefined) {
      group = { origin: message.origin, namespace: message.namespace, keys: new Set(), clear: false }
      groups.set(id, group)
    }
    if (message.clear) group.clear = true
    else for (const key of message.keys ?? []) group.keys.add(key)
  }
  const payloads: Record<string, unknown>[] = []
  for (const { origin, namespace, keys, clear } of groups.values()) {
    if (clear) {
      payloads.push({ o: origin, n: namespace, c: 1 })
      continue
    }
    const list = [...keys]
    for (let i = 0; i < list.length; i += MAX_KEYS_PER_MESSAGE)
      payloads.push({ o: origin, n: namespace, k: list.slice(i, i + MAX_KEYS_PER_MESSAGE) })
  }
  if (gapFrom !== undefined) {
    if (payloads.length === 0) payloads.push({})
    Object.assign(payloads[0]!, { b: gapFrom, g: 1 })
  }
  return payloads.map((payload) => JSON.stringify(payload))
}

/** What one payload says, or `undefined` for anything malformed (ignored). */
function decode(text: string): { messages: InvalidationMessage[]; gapFrom?: string } | undefined {
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch {
    return undefined
  }
  if (typeof raw !== 'object' || raw === null) return undefined
  const { o, n, k, c, b, g } = raw as Record<string, unknown>
  const gapFrom = g === 1 && typeof b === 'string' ? b : undefined
  const base = gapFrom === undefined ? {} : { gapFrom }
  if (typeof o !== 'string' || typeof n !== 'string')
    return gapFrom === undefined ? undefined : { messages: [], ...base }
  if (c === 1) return { messages: [{ origin: o, namespace: n, clear: true }], ...base }
  if (!Array.isArray(k) || !k.every((key) => typeof key === 'string')) return undefined
  return { messages: [{ origin: o, namespace: n, keys: k as string[] }], ...base }
}
