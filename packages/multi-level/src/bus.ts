import { randomUUID } from 'node:crypto'
import {
  CacheClosedError,
  CacheConfigError,
  type CacheLogger,
  CacheUnavailableError,
  type Duration,
} from '@cache/core'
import {
  CacheObserver,
  checkLogger,
  IncidentLog,
  durationOption,
  fromMilliseconds,
  renamedOption,
} from '@cache/core/backend'
import {
  type Decoded,
  decode,
  encodeBatch,
  farewell,
  heartbeat,
  type Payload,
  stamp,
} from './bus-messages.js'
import { describeError, Flushes } from './bus-flushes.js'
import { Senders } from './bus-senders.js'
import { checkBusOptionNames } from './option-names.js'
import { type RedisConstructor, SentinelWatch } from './bus-sentinel.js'
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
  /**
   * Resolves once every message published so far has been handed to the connection (written,
   * not yet acknowledged) or has failed. A chain waits for it before it rejects a write that
   * failed on the shared level: a process that exits on that error has told the others first.
   * Optional for buses of your own; without it the message goes out when the bus sends it.
   */
  handed?(): Promise<void>
  /** Resolves once messages are being received (the subscription is proven to work). */
  ready(): Promise<void>
  /** Idempotent. Closes only the connections the bus opened itself. */
  close(): Promise<void>
}

/** Options of {@link redisBus}. */
export interface RedisBusOptions {
  /**
   * The pub/sub channel. Processes that should invalidate each other use the same one. A bus that
   * cannot publish also subscribes to `<channel>:mute` (the others count it there). Default:
   * `'@cache/multi-level:invalidate'`.
   */
  channel?: string
  /**
   * Most time one PUBLISH may take (including waiting for a connection) before the messages in
   * it count as lost and the link as down (a heartbeat too). Seconds or a duration string.
   * Default: `'500ms'`.
   */
  publishTimeout?: Duration
  /** @deprecated Use `publishTimeout` (seconds, or `'500ms'`); accepted until the next minor version. */
  publishTimeoutMs?: number
  /**
   * How often the bus proves its link and tells the others it is there: it publishes a heartbeat
   * every `heartbeat`, declares its own link down when one has not come back by the next, and
   * counts another bus as gone (messages from it may be lost) when nothing came from it for
   * 2 × its `heartbeat`. Seconds or a duration string. Default: `'1s'`.
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
  /** Times messages from another bus were found missing (a gap in its numbers, or its silence). */
  gaps: number
}

/**
 * Events of a bus: a failed publish, the link going down and coming back, and messages found
 * missing (`gap`: a skipped sequence number or a sender fallen silent; the listeners resync).
 */
export type BusEventName = 'error' | 'link-down' | 'link-up' | 'gap'

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
/** Most wait before answering a bus heard for the first time (answers to several are shared). */
const ANSWER_MS = 5

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
 * The bus: publishes batched after the write (never awaited by it), numbers every payload and
 * sends a heartbeat on the channel (which proves its own link and tells the others it is there),
 * and tells its listeners to resync whenever messages may have been lost: its link went down, a
 * sender's numbers skipped, or a sender fell silent.
 */
export class RedisBus implements InvalidationBus {
  readonly stats: BusStats = {
    published: 0,
    publishFailures: 0,
    received: 0,
    linkDowns: 0,
    resyncs: 0,
    gaps: 0,
  }
  /** This bus's id: the sender of its messages. */
  readonly id = randomUUID()
  private readonly channel: string
  private readonly publishTimeoutMs: number
  private readonly heartbeatMs: number
  /** Listeners of the bus's events; one that throws is logged and goes no further (see emit). */
  private readonly events: CacheObserver
  private readonly listeners = new Set<Listener>()
  private readonly clients: Promise<Clients>
  private readonly firstUp: Promise<void>
  private markUp!: () => void
  private refuse!: (error: CacheConfigError) => void
  /** Set once Redis refused the channel to the bus's user (see {@link refused}). */
  private refusal: CacheConfigError | undefined
  private current: BusState = 'connecting'
  private queue: Pending[] = []
  /** Messages published, and handed to the connection (or failed), since the bus was made. */
  private published = 0
  private handedOver = 0
  private handedWaiters: { upTo: number; resolve: () => void }[] = []
  private readonly flushes = new Flushes()
  private flushing: Promise<void> | undefined
  private flushScheduled = false
  /** A publish failed since the last successful one: the next message tells receivers to resync. */
  private gap = false
  /** Sequence number of the last payload published (each one gets the next). */
  private seq = 0
  /** The next number expected from this bus itself: a gap means its own messages were lost. */
  private ownNext: number | undefined
  /** The oldest heartbeat not back yet, and when it was sent (performance.now()). */
  private beatAwaited: number | undefined
  private beatAwaitedSince = 0
  /** The other buses heard from, by their sequence numbers. */
  private readonly senders: Senders
  /** The cluster node this bus publishes through (one node keeps its messages in order). */
  private pinned: RedisClientLike | undefined
  private sentinels: SentinelWatch | undefined
  private answering = false
  private ticksDown = 0
  /**
   * The link is down because a PUBLISH could not be sent (the subscriber may work): this bus is
   * subscribed to {@link muteChannel} meanwhile, which tells the others it cannot be heard.
   */
  private unsent = false
  /** Where a bus that cannot publish listens, so that the others can count it (see probeMuted). */
  private readonly muteChannel: string
  /** Another bus was found unable to publish at the last probe (its messages are being lost). */
  private mutedElsewhere = false
  private probing = false
  /** When the subscriber last received anything (performance.now()). */
  private heardAt = 0
  /** Heartbeats sent while still `connecting`: the link is reported down after a few. */
  private ticksConnecting = 0
  private readonly incidents: IncidentLog
  /** Where the bus connects, for the log. */
  private readonly address: string
  private timer: NodeJS.Timeout | undefined
  private closed: Promise<void> | undefined

  constructor(connection: RedisBusConnection, options: RedisBusOptions) {
    checkBusOptionNames(connection, options)
    this.channel = options.channel ?? '@cache/multi-level:invalidate'
    if (typeof this.channel !== 'string' || this.channel === '')
      throw new CacheConfigError('channel', 'expected a non-empty string')
    this.muteChannel = `${this.channel}:mute`
    const publishTimeout = renamedOption(
      options,
      'publishTimeout',
      'publishTimeoutMs',
      fromMilliseconds('publishTimeoutMs'),
      " (a Duration: seconds, or e.g. '500ms')",
    )
    this.publishTimeoutMs = durationOption(publishTimeout, 'publishTimeout', '500ms', { msHabitFrom: 10 })
    this.heartbeatMs = durationOption(options.heartbeat, 'heartbeat', '1s', { msHabitFrom: 100 })
    this.senders = new Senders(this.heartbeatMs)
    this.firstUp = new Promise<void>((resolve, reject) => {
      this.markUp = resolve
      this.refuse = reject
    })
    // Seen through ready() only; a bus nobody awaits reports the refusal as an error event.
    this.firstUp.catch(() => {})
    // A malformed URL or connection throws here, not on the first publish.
    this.incidents = new IncidentLog(checkLogger(options.logger))
    this.events = new CacheObserver('bus', options.logger)
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
    this.published++
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ message, resolve, reject })
      this.scheduleFlush()
    })
  }

  handed(): Promise<void> {
    const upTo = this.published
    if (this.handedOver >= upTo) return Promise.resolve()
    return new Promise((resolve) => this.handedWaiters.push({ upTo, resolve }))
  }

  /** `count` more queued messages were handed to the connection, or failed before. */
  private markHanded(count: number): void {
    this.handedOver += count
    const due = this.handedWaiters.filter((waiter) => waiter.upTo <= this.handedOver)
    if (due.length === 0) return
    this.handedWaiters = this.handedWaiters.filter((waiter) => waiter.upTo > this.handedOver)
    for (const waiter of due) waiter.resolve()
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
   * Resolves once every message queued so far was sent (Redis answered the PUBLISH); rejects with
   * a `CacheUnavailableError` (`backend: 'bus'`, the PUBLISH's failure as `cause`) once they are
   * settled if any of them could not be sent within `publishTimeout`: the other processes were not
   * told of those writes. For graceful shutdowns and tests; writes never wait for it.
   */
  flush(): Promise<void> {
    return this.flushes.wait(this.published)
  }

  on(event: BusEventName, listener: (event: BusEvent) => void): this {
    this.events.on(event, listener)
    return this
  }

  off(event: BusEventName, listener: (event: BusEvent) => void): this {
    this.events.off(event, listener)
    return this
  }

  /** Sends what is queued (and a farewell), then closes the connections the bus opened. Idempotent. */
  close(): Promise<void> {
    this.closed ??= (async () => {
      clearInterval(this.timer)
      const failuresBefore = this.stats.publishFailures
      await this.flushing
      while (this.queue.length > 0) await this.sendQueued()
      const unsent = this.stats.publishFailures - failuresBefore
      if (unsent > 0) {
        const error = new CacheUnavailableError(
          'bus',
          `invalidation bus: closed with ${unsent} message(s) not sent (Redis ${this.address}); the other processes were not told of those writes and may serve what they replaced until their faster levels' TTL`,
        )
        this.incidents.report('close', error.message)
        this.emit('error', { backend: 'bus', operation: 'close', error })
      }
      // The others stop expecting heartbeats from this bus without counting its silence as a loss.
      await this.send([farewell()]).catch(() => {})
      this.listeners.clear()
      this.sentinels?.close()
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
    let marked = false
    const handed = () => {
      if (marked) return
      marked = true
      this.markHanded(messages.length)
    }
    try {
      await this.send(encodeBatch(messages, this.gap), handed)
      this.gap = false
      this.stats.published += messages.length
      this.flushes.settle(messages.length, undefined)
      for (const pending of batch) pending.resolve()
    } catch (error) {
      this.stats.publishFailures += messages.length
      this.gap = true
      if (messages.length > 0) this.emit('error', { backend: 'bus', operation: 'publish', error })
      this.flushes.settle(messages.length, error)
      this.cannotSend(error)
      for (const pending of batch) pending.reject(error)
    } finally {
      handed()
    }
  }

  /**
   * A PUBLISH could not be sent within `publishTimeout`: the link is as good as lost, whether or
   * not the subscriber still hears (a heartbeat that never left is never awaited, so the
   * heartbeat alone would not show it). The others cannot hear this bus, so it tells them by the
   * one means it may still have: its subscriber joins {@link muteChannel}, which they count.
   */
  private cannotSend(error: unknown): void {
    if (this.closed) return
    if (!this.unsent) {
      this.unsent = true
      this.clients.then(
        ({ subscriber }) =>
          subscriber
            .subscribe(this.muteChannel)
            .catch((error: unknown) => this.muteRefused('SUBSCRIBE', error)),
        () => {},
      )
    }
    this.down(`a PUBLISH could not be sent (${describeError(error)})`, 'publisher')
  }

  /**
   * PUBLISHes payloads on the channel, within `publishTimeout` (connecting included). Each is
   * stamped with this bus's id and the next sequence number at the moment it is handed to the
   * connection, so the numbers follow the order on the wire.
   */
  private async send(payloads: Payload[], handed?: () => void): Promise<void> {
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
        whenReady(publisher).then(() => {
          const target = this.publishTarget(publisher)
          const replies = Promise.all(
            payloads.map((payload) => {
              const seq = ++this.seq
              if (payload.h !== undefined && this.beatAwaited === undefined) {
                this.beatAwaited = seq
                this.beatAwaitedSince = performance.now()
              }
              return target.publish(this.channel, stamp(payload, this.id, seq))
            }),
          )
          handed?.()
          return replies
        }),
        expired,
      ])
    } finally {
      clearTimeout(timer)
    }
  }

  /**
   * Where to PUBLISH: the client itself, or on a cluster always the same node while it is up
   * (ioredis sends a command without a key to any node; two nodes relay to a third in either
   * order, which would look like lost messages).
   */
  private publishTarget(publisher: RedisClientLike): RedisClientLike {
    if (!publisher.isCluster || publisher.nodes === undefined) return publisher
    if (this.pinned?.status === 'ready' && publisher.nodes('master').includes(this.pinned)) return this.pinned
    const name = (node: RedisClientLike) => `${node.options?.host}:${node.options?.port}`
    const ready = publisher
      .nodes('master')
      .filter((node) => node.status === 'ready')
      .sort((x, y) => (name(x) < name(y) ? -1 : 1))
    this.pinned = ready[0]
    return this.pinned ?? publisher
  }

  private listen(clients: Clients): void {
    const { subscriber } = clients
    subscriber.on('message', (channel: string, text: string) => {
      this.heardAt = performance.now()
      if (channel !== this.channel) return
      const decoded = decode(text)
      if (decoded !== undefined) this.receive(decoded)
    })
    // A closed connection is known at once; a silent one only by the heartbeat.
    subscriber.on('close', () => this.down('the subscriber connection closed', false))
    // ioredis subscribes again after a reconnect, without telling when that took effect:
    // subscribing once more (a no-op for Redis) says when, and a heartbeat then proves it.
    subscriber.on('ready', () => this.subscribeAndBeat(subscriber))
    // ioredis reconnects by itself; a bus that cannot reach Redis is reported by its state.
    subscriber.on('error', () => {})
    this.subscribeAndBeat(subscriber)
    if (subscriber.options?.sentinels?.length > 0) void this.watchSentinels(clients)
  }

  /** Sentinel: keeps the bus's connections on the master the sentinels name (see bus-sentinel.ts). */
  private async watchSentinels({ publisher, subscriber, owned }: Clients): Promise<void> {
    const { Redis } = await import('ioredis')
    if (this.closed) return
    const clients = publisher === subscriber ? [subscriber] : [publisher, subscriber]
    this.sentinels = new SentinelWatch(
      Redis as unknown as RedisConstructor,
      subscriber.options!,
      clients,
      new Set(owned),
      this.publishTimeoutMs,
      (reason) => this.down(reason, false),
    )
  }

  /** One payload from the channel: its sender's numbers tell whether anything was missed. */
  private receive(decoded: Decoded): void {
    const { from, seq } = decoded
    if (from === this.id) {
      if (seq !== undefined) this.onOwn(seq)
    } else {
      if (decoded.gapFrom !== undefined) this.resync()
      if (from !== undefined && seq !== undefined) {
        const { first, missed } = this.senders.heard(from, seq, decoded, performance.now())
        if (missed) this.lost(`messages of bus ${from} were missed (its payload ${seq} arrived)`)
        // A bus heard for the first time learns this one's number now, not a heartbeat later:
        // what it cached until then is what it forgets if that number shows a gap.
        if (first) this.answer()
      }
    }
    // Own messages too: several chains may share this bus (each ignores its own origin).
    for (const message of decoded.messages) {
      this.stats.received++
      for (const listener of this.listeners) listener.message(message)
    }
  }

  /** This bus's own payload came back: the link works; a skipped number means messages were lost. */
  private onOwn(seq: number): void {
    if (this.ownNext !== undefined && seq > this.ownNext && this.current === 'up')
      this.lost(`own payloads ${this.ownNext}-${seq - 1} did not come back`)
    this.ownNext = Math.max(this.ownNext ?? 0, seq + 1)
    if (this.beatAwaited !== undefined && seq >= this.beatAwaited) this.beatAwaited = undefined
    if (this.current === 'up') return
    const wasDown = this.current === 'down'
    this.current = 'up'
    this.ticksDown = 0
    if (this.unsent) {
      this.unsent = false
      this.clients.then(
        ({ subscriber }) => subscriber.unsubscribe?.(this.muteChannel).catch(() => {}),
        () => {},
      )
    }
    // The subscription works again; anything sent before it took effect may be lost.
    this.resync()
    this.markUp()
    this.incidents.resolve('link', `invalidation bus: the link to Redis (${this.address}) is back.`)
    if (wasDown) this.emit('link-up', { backend: 'bus' })
  }

  /** Messages of this or another bus went missing: the listeners forget what they cached. */
  private lost(reason: string): void {
    this.stats.gaps++
    this.emit('gap', { backend: 'bus', reason })
    this.resync()
  }

  private subscribeAndBeat(subscriber: RedisClientLike): void {
    subscriber.subscribe(this.channel).then(
      () => this.beat(),
      (error) => this.refused('subscribe', error),
    )
  }

  /**
   * A SUBSCRIBE or PUBLISH failed: if Redis refused it by its ACL (`NOPERM`), the bus can never be
   * up with this user. `ready()` rejects with a `CacheConfigError`, and an `error` event says so
   * at once (once), rather than the link being found "not up" heartbeats later.
   */
  private refused(operation: 'subscribe' | 'publish', error: unknown): void {
    if (this.refusal !== undefined || this.current === 'up' || this.closed) return
    const message = error instanceof Error ? error.message : String(error)
    if (!/\bNOPERM\b/.test(message)) return
    this.refusal = new CacheConfigError(
      'bus',
      `Redis (${this.address}) refuses to let the bus's user ${operation.toUpperCase()} on channel '${this.channel}' (${message}); grant it the channel (ACL: &<channel> or allchannels, +subscribe, +publish)`,
      { cause: error },
    )
    this.reportDown(this.refusal.message)
    this.emit('error', { backend: 'bus', operation, error: this.refusal })
    this.refuse(this.refusal)
  }

  /** Every `heartbeat`: judge the link and the other buses, send the next heartbeat. */
  private tick(): void {
    // Judged once it had half an interval at least (one sent on reconnect may be very recent).
    if (this.beatAwaited !== undefined && performance.now() - this.beatAwaitedSince >= this.heartbeatMs / 2)
      this.down(`no heartbeat came back within ${this.heartbeatMs} ms`)
    if (this.current === 'connecting' && ++this.ticksConnecting === RECONNECT_EVERY)
      this.reportDown(`not up after ${RECONNECT_EVERY} heartbeats`)
    if (this.current !== 'up') {
      // Nothing received while down can be trusted: keep the faster levels empty.
      this.resync()
      if (++this.ticksDown % RECONNECT_EVERY === 0) {
        // A subscriber that kept receiving meanwhile works: only a silent one is reopened.
        const heard = performance.now() - this.heardAt < RECONNECT_EVERY * this.heartbeatMs
        void this.reconnect(this.unsent && heard ? 'publisher' : 'all')
      }
    } else if (this.mutedElsewhere) {
      // Another bus cannot publish: what it writes is not heard here, keep the faster levels empty.
      this.resync()
    }
    // A bus not heard from for two of its heartbeats (and one of ours) is gone, or cut off.
    const silent = this.senders.forgetSilent(performance.now(), this.heartbeatMs)
    if (silent > 0 && this.current === 'up') this.lost(`${silent} other bus(es) fell silent`)
    void this.sentinels?.check()
    if (this.current === 'up') void this.probeMuted()
    this.beat()
    if (this.gap && this.queue.length === 0) {
      // Nobody writes: the lost messages are announced on a notice of their own.
      this.queue.push({ resolve() {}, reject() {} })
      this.scheduleFlush()
    }
  }

  /** A heartbeat out of turn, within {@link ANSWER_MS}: one for every bus heard first meanwhile. */
  private answer(): void {
    if (this.answering || this.closed) return
    this.answering = true
    setTimeout(() => {
      this.answering = false
      this.beat()
    }, ANSWER_MS).unref?.()
  }

  private beat(): void {
    if (this.closed) return
    this.send([heartbeat(this.heartbeatMs)]).catch((error) => {
      this.refused('publish', error)
      this.cannotSend(error)
    })
  }

  /**
   * Counts the buses that cannot publish (subscribed to {@link muteChannel}: the PUBLISH answers
   * how many received it). While there are some, their writes are not heard here: the faster
   * levels are emptied every heartbeat, as for a link of this bus down. One PUBLISH a heartbeat;
   * on a Redis Cluster it counts the subscribers of one node only.
   */
  private async probeMuted(): Promise<void> {
    if (this.probing || this.closed) return
    this.probing = true
    try {
      const { publisher } = await this.clients
      if (publisher.status !== undefined && publisher.status !== 'ready') return
      const receivers = Number(await this.publishTarget(publisher).publish(this.muteChannel, ''))
      const muted = receivers > 0 && this.current === 'up'
      if (muted && !this.mutedElsewhere)
        this.lost(`${receivers} bus(es) cannot publish (subscribed to '${this.muteChannel}')`)
      this.mutedElsewhere = muted
    } catch (error) {
      // A failed link is the heartbeat's to find; a refusal is reported once.
      this.muteRefused('PUBLISH', error)
    } finally {
      this.probing = false
    }
  }

  /**
   * Redis refuses the bus's user {@link muteChannel} (an ACL granting `&<channel>` alone): a
   * process that cannot publish is then not noticed by the others. Reported once (event and log
   * line); the bus works on without it.
   */
  private muteRefused(command: string, error: unknown): void {
    const message = error instanceof Error ? error.message : String(error)
    if (!/\bNOPERM\b/.test(message) || this.incidents.has('mute')) return
    const refusal = new CacheConfigError(
      'bus',
      `Redis (${this.address}) refuses to let the bus's user ${command} on channel '${this.muteChannel}' (${message}): a process whose bus cannot publish will not be noticed by the others. Grant the user the channels '${this.channel}*' (ACL: &${this.channel}*)`,
      { cause: error },
    )
    this.incidents.report('mute', refusal.message)
    this.emit('error', {
      backend: 'bus',
      operation: command === 'SUBSCRIBE' ? 'subscribe' : 'publish',
      error: refusal,
    })
  }

  /** The link is down: tell the listeners, and reopen connections (`reconnect`: which ones). */
  private down(reason: string, reconnect: 'all' | 'publisher' | false = 'all'): void {
    this.beatAwaited = undefined
    if (this.current !== 'up' || this.closed) return
    this.current = 'down'
    this.stats.linkDowns++
    this.reportDown(reason)
    this.emit('link-down', { backend: 'bus', reason })
    this.resync()
    if (reconnect) void this.reconnect(reconnect)
  }

  /**
   * Drops and reopens the subscriber (`all`: a silent link stays silent) and a publisher the bus
   * owns (`publisher`: only that one, when it could not send and the subscriber still hears).
   */
  private async reconnect(which: 'all' | 'publisher'): Promise<void> {
    if (this.closed) return
    const { subscriber, publisher, owned } = await this.clients
    if (which === 'all') subscriber.disconnect?.(true)
    if (owned.includes(publisher) && publisher !== subscriber) publisher.disconnect?.(true)
  }

  private reportDown(reason: string): void {
    const others = this.unsent
      ? ` The other processes are not told of its writes meanwhile; it subscribes to '${this.muteChannel}' so that they count it and keep their faster levels empty too.`
      : ''
    this.incidents.report(
      'link',
      `invalidation bus: the link to Redis (${this.address}) is down: ${reason}. Until it is back, chains on this bus keep their faster levels empty (reads go to the shared level).${others}`,
    )
  }

  private resync(): void {
    if (this.listeners.size === 0) return
    this.stats.resyncs++
    for (const listener of this.listeners) listener.resync?.()
  }

  private emit(name: BusEventName, event: BusEvent): void {
    // Told where a link or a publish is failing: a listener that throws must not break the bus.
    if (this.events.listenerCount(name) > 0) this.events.emitEach(name, event)
  }
}

/** A fresh id for one multi-level instance. */
export function newOrigin(): string {
  return randomUUID()
}
