import { randomUUID } from 'node:crypto'
import {
  CacheConfigError,
  CacheTimeoutError,
  CacheUnavailableError,
  type Duration,
  type LoggerOption,
} from '@cache/core'
import {
  type CacheObserver,
  assertKnownOptions,
  countOption,
  durationOption,
  IncidentLog,
  optionNames,
  unrefRedisClient,
} from '@cache/core/backend'
import type { Redis } from 'ioredis'
import { commandTimeoutOf } from './client.js'
import type { Connection } from './connection.js'
import { CommandDeadlines, timeEveryCommand } from './deadlines.js'
import { translateError } from './errors.js'

/** Where Redis publishes invalidations for a client that redirects them (RESP2). */
const INVALIDATE = '__redis__:invalidate'

/** The longest pause between tries of a set-up step Redis refused (unless `heartbeat` is longer). */
const MAX_RETRY_MS = 5000

/** The incident of copies being off for a failure (see {@link NearCache.report}). */
const OFF = 'near cache off'

/** The `nearCache` option as an object. */
export interface NearCacheOptions {
  /** Copies kept at most; the least recently used go first. Default: 10 000. */
  maxKeys?: number
  /**
   * How often the backend proves that invalidations still arrive: it publishes on a channel of
   * its own through the connection it reads with and waits for it on the invalidation
   * connection. A copy is served only while a heartbeat sent less than 2 × `heartbeat` ago has
   * come back, so a silent link serves nothing older than that. Seconds, or `'500ms'`, `'1s'`.
   * Default: `'500ms'`.
   */
  heartbeat?: Duration
}

const OPTION_NAMES = optionNames<NearCacheOptions>({ maxKeys: true, heartbeat: true })

/** The `nearCache` option resolved, or undefined when it is off. */
export interface NearCacheSettings {
  maxKeys: number
  heartbeatMs: number
}

/** A value read from Redis and kept in this process, with its expiry. */
export interface NearEntry {
  bytes: Buffer
  /** ms since the epoch; undefined: no TTL. */
  expiresAt: number | undefined
}

/**
 * Values this backend read, kept in the process and evicted by Redis itself (server-assisted
 * client-side caching, `CLIENT TRACKING ON REDIRECT` to a subscriber connection): a change of a
 * key by any client — this one, another process, `redis-cli`, an expiry — makes Redis send an
 * invalidation, and the copy is dropped when it arrives.
 *
 * Copies are served only while (1) tracking is on for the current connection and the subscriber
 * is connected — when either connection drops, every copy is dropped and reads go to Redis until
 * both are back and tracking is on again — and (2) a heartbeat proves the path recent: the
 * reading connection publishes on a private channel every `heartbeat`, and the subscriber
 * receives it after every invalidation Redis sent before it. A copy is served only while a
 * heartbeat sent less than 2 × `heartbeat` ago has come back; past that, every copy is dropped
 * and the subscriber reconnected. A read that an invalidation overtakes is not kept (a token per
 * read, removed by any invalidation of its key).
 *
 * Copies are keyed by the bytes of the key as Redis stores it (UTF-8), and invalidations are
 * matched by bytes, so keys that are not plain text match too.
 *
 * Every command of the set-up (the subscriber's own `CLIENT SETNAME` and ready check, `CLIENT ID`,
 * `SUBSCRIBE`, then `CLIENT TRACKING`) has the backend's `timeout`: a server that stops answering
 * meanwhile fails the set-up, and the subscriber reconnects, instead of leaving it waiting for
 * good. A step Redis refuses (an error reply: an ACL, a transient error) is tried again after a
 * pause of `heartbeat` that doubles up to 5 s. Until a set-up completes on the subscriber's current
 * connection, copies are off and reads go to Redis. A failure that turns copies off is reported
 * once (counted, an `error` event, logged) until they are served again.
 */
export class NearCache {
  private readonly entries = new Map<string, NearEntry>()
  /** Reads under way: key → the token of the latest one. */
  private readonly reading = new Map<string, number>()
  private nextToken = 0
  private readonly client: Redis
  private readonly subscriber: Redis
  private readonly incidents: IncidentLog
  /** Why copies went off last, for {@link whyOff}. */
  private offReason: string | undefined
  private readonly maxKeys: number
  private readonly heartbeatMs: number
  private readonly beatChannel = `__cache_near__:${randomUUID()}`
  /** Tracking is on, redirected to the connected subscriber: copies may be kept. */
  private active = false
  /** Bumped whenever tracking stops, so that reads started before cannot store. */
  private epoch = 0
  private closed = false
  /** The subscriber's client id on its current connection, once it listens for invalidations. */
  private subscriberId: number | undefined
  private beatsSent = 0
  /** When each heartbeat not back yet was sent (performance.now()), by number. */
  private readonly beatTimes = new Map<number, number>()
  /** When the latest heartbeat that came back was sent: every invalidation sent before it has arrived. */
  private provenAt = Number.NEGATIVE_INFINITY
  /** The last heartbeat PUBLISH was answered: the reading connection works, so a silent path is the subscriber's. */
  private publishAnswered = false
  private readonly timer: NodeJS.Timeout
  /** The next try of a set-up step Redis refused, while one waits. */
  private retryTimer: NodeJS.Timeout | undefined
  /** The pause before that try: `heartbeat` at first, doubled after each refusal up to {@link MAX_RETRY_MS}. */
  private retryMs: number

  constructor(
    private readonly connection: Connection,
    settings: NearCacheSettings,
    private readonly observer: CacheObserver,
    logger?: LoggerOption,
  ) {
    const client = connection.client as Redis
    this.client = client
    this.incidents = new IncidentLog(logger)
    this.maxKeys = settings.maxKeys
    this.heartbeatMs = settings.heartbeatMs
    this.retryMs = this.heartbeatMs
    // Subscribed anew on each connection, after CLIENT ID (refused once subscribed).
    const subscriber = client.duplicate({
      connectionName: 'cache-near-invalidations',
      enableOfflineQueue: true,
      autoResubscribe: false,
      lazyConnect: false,
    })
    this.subscriber = subscriber
    // The backend's deadline on every command of the subscriber (a client passed in with its own
    // `commandTimeout` hands that down to its duplicate, which enforces it). No caller awaits
    // them: they do not keep the process alive.
    if (commandTimeoutOf(subscriber) === undefined) {
      const timeoutMs = connection.timeoutMs
      const deadlines = new CommandDeadlines(
        timeoutMs,
        () => new Map([[subscriber, subscriber.stream?.bytesRead ?? 0]]),
        (operation) => new CacheTimeoutError('redis', `${operation} on ${connection.address}`, timeoutMs),
        undefined,
        false,
      )
      timeEveryCommand(subscriber, deadlines)
    }
    unrefRedisClient(this.subscriber)
    this.subscriber.on('error', this.onError)
    this.subscriber.on('messageBuffer', this.onMessage)
    this.subscriber.on('ready', this.onSubscriberReady)
    this.subscriber.on('close', this.onSubscriberClose)
    client.on('ready', this.enable)
    client.on('close', this.stop)
    this.timer = setInterval(this.tick, this.heartbeatMs)
    this.timer.unref()
  }

  /**
   * The copy of `key` (a full Redis key), or what `load` reads from Redis (value and PTTL, both
   * tracked by Redis), kept unless tracking stopped or an invalidation of `key` came meanwhile.
   */
  async read(key: string, load: () => Promise<[Buffer | null, number]>): Promise<NearEntry | undefined> {
    const id = wireKey(key)
    const copy = this.get(id)
    if (copy !== undefined) return copy
    const token = ++this.nextToken
    if (this.active) this.reading.set(id, token)
    const epoch = this.epoch
    let bytes: Buffer | null
    let ttl: number
    // The TTL counts from no earlier than now (see `Reads.getEntry`), not from the reply's arrival.
    const asked = Date.now()
    try {
      ;[bytes, ttl] = await load()
    } catch (error) {
      if (this.reading.get(id) === token) this.reading.delete(id)
      throw error
    }
    const entry = bytes === null ? undefined : { bytes, expiresAt: ttl >= 0 ? asked + ttl : undefined }
    this.keep(id, token, epoch, entry)
    return entry
  }

  /** Drops the copy of `key` (a full Redis key: this backend is about to write it). */
  forget(key: string): void {
    this.drop(wireKey(key))
  }

  /** Drops every copy. */
  forgetAll(): void {
    this.entries.clear()
    this.reading.clear()
  }

  /** Waits (at most `ms`) until copies are kept and served. */
  async whenActive(ms: number): Promise<boolean> {
    const deadline = Date.now() + ms
    while (!this.serving() && !this.closed && Date.now() < deadline)
      await delay(Math.min(20, deadline - Date.now()))
    return this.serving()
  }

  /** Why copies are off, if a failure turned them off and they have not been served since. */
  whyOff(): string | undefined {
    return this.incidents.has(OFF) ? this.offReason : undefined
  }

  close(): void {
    this.closed = true
    clearInterval(this.timer)
    clearTimeout(this.retryTimer)
    this.stop()
    this.client.off('ready', this.enable).off('close', this.stop)
    this.subscriber.disconnect()
  }

  /** Copies may be served now: tracking is on and a recent heartbeat proves the path. */
  private serving(): boolean {
    return this.active && performance.now() - this.provenAt < 2 * this.heartbeatMs
  }

  /** The copy of `id` if one may be served now. */
  private get(id: string): NearEntry | undefined {
    if (!this.serving()) return undefined
    const entry = this.entries.get(id)
    if (entry === undefined) return undefined
    if (entry.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
      this.entries.delete(id)
      return undefined
    }
    // Least recently used first: a hit moves the key to the end.
    this.entries.delete(id)
    this.entries.set(id, entry)
    return entry
  }

  private keep(id: string, token: number, epoch: number, entry: NearEntry | undefined): void {
    if (this.reading.get(id) !== token) return
    this.reading.delete(id)
    if (!this.active || epoch !== this.epoch || entry === undefined) return
    this.entries.set(id, entry)
    if (this.entries.size > this.maxKeys) this.entries.delete(this.entries.keys().next().value!)
  }

  private drop(id: string): void {
    this.entries.delete(id)
    this.reading.delete(id)
  }

  /**
   * Sets up the subscriber's new connection: its id, then the subscriptions. Each step is checked
   * to still be on that connection (one that dropped meanwhile may have given way to another, whose
   * id differs: tracking redirected to it would send invalidations to some other client).
   */
  private readonly onSubscriberReady = (): void => {
    const subscriber = this.subscriber
    const link = subscriber.stream
    const current = () => !this.closed && subscriber.status === 'ready' && subscriber.stream === link
    ;(async () => {
      const id = Number(await subscriber.call('CLIENT', 'ID'))
      if (!current()) return
      await subscriber.subscribe(INVALIDATE, this.beatChannel)
      if (!current()) return
      this.subscriberId = id
      this.enable()
    })().catch((error: unknown) => {
      this.report('subscribe', error)
      if (!current()) return
      // No answer in time: a silent link, which ioredis would keep for good. A fresh connection
      // may answer. Refused (an ACL, a transient error): a fresh connection tries again after a
      // pause that grows with each refusal. Copies stay off meanwhile.
      if ((error as Error).name !== 'ReplyError') subscriber.disconnect(true)
      else this.retryLater(() => current() && subscriber.disconnect(true))
    })
  }

  private readonly onSubscriberClose = (): void => {
    this.subscriberId = undefined
    this.stop()
  }

  /**
   * Turns tracking on for the client's current connection, redirected to the subscriber. Both
   * must be connected to the same server: a client id names a different client elsewhere.
   */
  private readonly enable = (): void => {
    const id = this.subscriberId
    if (this.closed || id === undefined || this.client.status !== 'ready') return
    if (address(this.client) !== address(this.subscriber)) {
      // The subscriber is still on the old master of a switch-over: reconnect it (the sentinels
      // name the new one).
      this.subscriber.disconnect(true)
      return
    }
    const epoch = this.epoch
    const tracking = this.client.call('CLIENT', 'TRACKING', 'ON', 'REDIRECT', String(id))
    this.connection.timed(tracking, 'near cache').then(
      () => {
        if (epoch !== this.epoch || this.closed || this.subscriberId !== id) return
        this.active = true
        this.retryMs = this.heartbeatMs
        clearTimeout(this.retryTimer)
        this.retryTimer = undefined
        this.incidents.resolve(OFF, 'redis: nearCache: tracking is on again; copies are served.')
        // Copies are served once a heartbeat sent from now on comes back.
        this.beat()
      },
      (error: unknown) => {
        this.report('CLIENT TRACKING', error)
        // The subscriber's connection went away meanwhile: reconnect it. Any other refusal (an
        // ACL, Redis before 6) leaves copies off, reads going to Redis, and is tried again after
        // a pause that grows with each refusal.
        if (
          /redirect to does not exist/.test(String((error as Error).message)) &&
          this.subscriber.status === 'ready'
        )
          this.subscriber.disconnect(true)
        else if ((error as Error).name === 'ReplyError') this.retryLater(this.enable)
      },
    )
  }

  /** Every `heartbeat`: judge the path, send the next heartbeat. */
  private readonly tick = (): void => {
    if (this.closed) return
    if (this.active && performance.now() - this.provenAt >= 2 * this.heartbeatMs) {
      this.report(`no heartbeat came back within ${2 * this.heartbeatMs} ms; every copy was dropped`)
      this.stop()
      // The reading connection answers but nothing arrives on the subscriber: replace it. (When
      // the reading connection does not answer either, reads fail on their own; nothing to redo.)
      // (Only a connected one: dropping one while ioredis asks the sentinels ends it for good.)
      if (this.publishAnswered && this.subscriber.status === 'ready') this.subscriber.disconnect(true)
    }
    this.beat()
  }

  private beat(): void {
    if (this.closed || this.client.status !== 'ready' || this.subscriberId === undefined) return
    const seq = ++this.beatsSent
    this.beatTimes.set(seq, performance.now())
    // Beats that never came back are forgotten once they no longer matter.
    for (const old of this.beatTimes.keys()) if (old < seq - 16) this.beatTimes.delete(old)
    this.connection.timed(this.client.publish(this.beatChannel, String(seq)), 'near cache').then(
      () => {
        this.publishAnswered = true
      },
      () => {
        this.publishAnswered = false
      },
    )
  }

  private onBeat(seq: number): void {
    const sentAt = this.beatTimes.get(seq)
    if (sentAt === undefined) return
    for (const old of this.beatTimes.keys()) if (old <= seq) this.beatTimes.delete(old)
    this.provenAt = Math.max(this.provenAt, sentAt)
    // The path works again after a silence that stopped tracking with both connections open
    // (not while a refused set-up waits for its next try).
    if (!this.active && this.subscriberId !== undefined && this.retryTimer === undefined) this.enable()
  }

  /**
   * Runs `retry` after the current pause ({@link retryMs}), then doubles the pause up to
   * {@link MAX_RETRY_MS}: a set-up step Redis refused is tried again, never given up. One try
   * waits at a time.
   */
  private retryLater(retry: () => unknown): void {
    if (this.closed || this.retryTimer !== undefined) return
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined
      if (!this.closed) retry()
    }, this.retryMs)
    this.retryTimer.unref()
    this.retryMs = Math.min(this.retryMs * 2, Math.max(MAX_RETRY_MS, this.heartbeatMs))
  }

  /** Stops serving copies and drops them all: invalidations may be missed from now on. */
  private readonly stop = (): void => {
    this.active = false
    this.epoch++
    this.forgetAll()
  }

  private readonly onMessage = (channel: Buffer, message: Buffer | Buffer[] | null): void => {
    if (channel.length === this.beatChannel.length && channel.toString() === this.beatChannel) {
      this.onBeat(Number(String(message)))
      return
    }
    // RESP2 sends the invalidated keys as an array; null (or an empty message) means "all".
    if (message === null || (Array.isArray(message) && message.length === 0)) {
      this.forgetAll()
      return
    }
    const keys = Array.isArray(message) ? message : [message]
    for (const key of keys) this.drop(key.toString('latin1'))
  }

  /** The subscriber's connection failed (ioredis reconnects it by itself). */
  private readonly onError = (error: unknown): void => {
    this.report('invalidation connection', error)
  }

  /**
   * Reports a failure that leaves copies off (reads go to Redis meanwhile): counted, emitted as
   * an `error` event and logged, once until copies are served again, however often the set-up
   * is retried meanwhile.
   */
  private report(what: string, error?: unknown): void {
    if (this.closed || this.incidents.has(OFF)) return
    const address = this.connection.address
    // With an error, `what` is the step that failed: the error says how (timed out, refused).
    const cause =
      error === undefined
        ? undefined
        : translateError(error, what, this.connection.timeoutMs, undefined, address)
    this.offReason = cause === undefined ? what : cause.message.replace(/^redis: /, '')
    const message = `redis: nearCache: ${this.offReason}. Reads go to Redis until tracking is on again.`
    this.observer.error('near cache', new CacheUnavailableError('redis', message, { cause, server: address }))
    this.incidents.report(OFF, message)
  }
}

/**
 * The key as the bytes Redis holds (UTF-8), one char per byte: what invalidations name. A key of
 * plain ASCII is its own text; any other is encoded (a lone surrogate becomes what ioredis sends).
 */
function wireKey(key: string): string {
  return /^[\u0000-\u007f]*$/.test(key) ? key : Buffer.from(key, 'utf8').toString('latin1')
}

function address(client: Redis): string | undefined {
  const stream = client.stream
  return stream?.remoteAddress === undefined ? undefined : `${stream.remoteAddress}:${stream.remotePort}`
}

/** The `nearCache` option resolved, undefined when it is off. */
export function nearCacheSettings(
  option: boolean | NearCacheOptions | undefined,
): NearCacheSettings | undefined {
  if (option === undefined || option === false) return undefined
  const given = option === true ? {} : option
  if (typeof given !== 'object' || given === null)
    throw new CacheConfigError('nearCache', 'expected true, false or { maxKeys, heartbeat }')
  assertKnownOptions(given, OPTION_NAMES, "redisBackend()'s nearCache")
  const maxKeys = countOption(given.maxKeys, 'nearCache.maxKeys', 10_000)
  const heartbeatMs = durationOption(given.heartbeat, 'nearCache.heartbeat', '500ms', { msHabitFrom: 10 })
  return { maxKeys, heartbeatMs }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref())
}
