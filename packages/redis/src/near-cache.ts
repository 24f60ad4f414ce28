import { CacheConfigError, type CacheObserver, unrefRedisClient } from '@cache/core'
import type { Redis } from 'ioredis'
import { translateError } from './errors.js'

/** Where Redis publishes invalidations for a client that redirects them (RESP2). */
const INVALIDATE = '__redis__:invalidate'

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
 * Copies are served only while tracking is on for the current connection and the subscriber is
 * connected: when either connection drops, every copy is dropped (invalidations may have been
 * missed) and reads go to Redis until both are back and tracking is on again. A read that an
 * invalidation overtakes is not kept (a token per read, removed by any invalidation of its key).
 */
export class NearCache {
  private readonly entries = new Map<string, NearEntry>()
  /** Reads under way: key → the token of the latest one. */
  private readonly reading = new Map<string, number>()
  private nextToken = 0
  private readonly subscriber: Redis
  /** Tracking is on, redirected to the connected subscriber: copies may be kept and served. */
  private active = false
  /** Bumped whenever tracking stops, so that reads started before cannot store. */
  private epoch = 0
  private closed = false

  constructor(
    private readonly client: Redis,
    private readonly maxKeys: number,
    private readonly observer: CacheObserver,
  ) {
    // Subscribed anew on each connection, after CLIENT ID (refused once subscribed).
    this.subscriber = client.duplicate({
      connectionName: 'cache-near-invalidations',
      enableOfflineQueue: true,
      autoResubscribe: false,
      lazyConnect: false,
    })
    unrefRedisClient(this.subscriber)
    this.subscriber.on('error', this.onError)
    this.subscriber.on('messageBuffer', this.onMessage)
    this.subscriber.on('ready', this.onSubscriberReady)
    this.subscriber.on('close', this.onSubscriberClose)
    client.on('ready', this.enable)
    client.on('close', this.stop)
  }

  /** The copy of `key` if one may be served now. */
  private get(key: string): NearEntry | undefined {
    if (!this.active) return undefined
    const entry = this.entries.get(key)
    if (entry === undefined) return undefined
    if (entry.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
      this.entries.delete(key)
      return undefined
    }
    // Least recently used first: a hit moves the key to the end.
    this.entries.delete(key)
    this.entries.set(key, entry)
    return entry
  }

  /**
   * The copy of `key`, or what `load` reads from Redis (value and PTTL, both tracked by Redis),
   * kept unless tracking stopped or an invalidation of `key` came while it was read.
   */
  async read(key: string, load: () => Promise<[Buffer | null, number]>): Promise<NearEntry | undefined> {
    const copy = this.get(key)
    if (copy !== undefined) return copy
    const token = this.startRead(key)
    const epoch = this.epoch
    let bytes: Buffer | null
    let ttl: number
    try {
      ;[bytes, ttl] = await load()
    } catch (error) {
      if (this.reading.get(key) === token) this.reading.delete(key)
      throw error
    }
    const entry = bytes === null ? undefined : { bytes, expiresAt: ttl >= 0 ? Date.now() + ttl : undefined }
    this.keep(key, token, epoch, entry)
    return entry
  }

  private startRead(key: string): number {
    const token = ++this.nextToken
    if (this.active) this.reading.set(key, token)
    return token
  }

  private keep(key: string, token: number, epoch: number, entry: NearEntry | undefined): void {
    if (this.reading.get(key) !== token) return
    this.reading.delete(key)
    if (!this.active || epoch !== this.epoch || entry === undefined) return
    this.entries.set(key, entry)
    if (this.entries.size > this.maxKeys) this.entries.delete(this.entries.keys().next().value!)
  }

  /** Drops the copy of `key` (this backend is about to write it). */
  forget(key: string): void {
    this.entries.delete(key)
    this.reading.delete(key)
  }

  /** Drops every copy. */
  forgetAll(): void {
    this.entries.clear()
    this.reading.clear()
  }

  close(): void {
    this.closed = true
    this.stop()
    this.client.off('ready', this.enable).off('close', this.stop)
    this.subscriber.disconnect()
  }

  /** The subscriber's client id on its current connection, once it listens for invalidations. */
  private subscriberId: number | undefined

  private readonly onSubscriberReady = (): void => {
    const subscriber = this.subscriber
    ;(async () => {
      const id = Number(await subscriber.call('CLIENT', 'ID'))
      await subscriber.subscribe(INVALIDATE)
      if (subscriber.status !== 'ready') return
      this.subscriberId = id
      this.enable()
    })().catch(this.onError)
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
    this.client.call('CLIENT', 'TRACKING', 'ON', 'REDIRECT', String(id)).then(
      () => {
        if (epoch === this.epoch && !this.closed && this.subscriberId === id) this.active = true
      },
      (error: unknown) => {
        this.onError(error)
        // The subscriber's connection went away meanwhile: reconnect it. Any other refusal (Redis
        // before 6, an ACL) leaves copies off; reads go to Redis.
        if (/redirect to does not exist/.test(String((error as Error).message)))
          this.subscriber.disconnect(true)
      },
    )
  }

  /** Waits (at most `ms`) until copies are kept and served. */
  async whenActive(ms: number): Promise<boolean> {
    const deadline = Date.now() + ms
    while (!this.active && !this.closed && Date.now() < deadline)
      await delay(Math.min(20, deadline - Date.now()))
    return this.active
  }

  /** Stops serving copies and drops them all: invalidations may be missed from now on. */
  private readonly stop = (): void => {
    this.active = false
    this.epoch++
    this.forgetAll()
  }

  private readonly onMessage = (_channel: Buffer, message: Buffer | Buffer[] | null): void => {
    // RESP2 sends the invalidated keys as an array; null (or an empty message) means "all".
    if (message === null || (Array.isArray(message) && message.length === 0)) {
      this.forgetAll()
      return
    }
    const keys = Array.isArray(message) ? message : [message]
    for (const key of keys) this.forget(key.toString())
  }

  private readonly onError = (error: unknown): void => {
    if (!this.closed) this.observer.error('connection', translateError(error, 'near cache', 0))
  }
}

function address(client: Redis): string | undefined {
  const stream = client.stream
  return stream?.remoteAddress === undefined ? undefined : `${stream.remoteAddress}:${stream.remotePort}`
}

/** `maxKeys` of the `nearCache` option, undefined when it is off. */
export function nearCacheSize(option: boolean | { maxKeys?: number } | undefined): number | undefined {
  if (option === undefined || option === false) return undefined
  const maxKeys = option === true ? 10_000 : (option.maxKeys ?? 10_000)
  if (!Number.isSafeInteger(maxKeys) || maxKeys < 1)
    throw new CacheConfigError('nearCache', `maxKeys: ${String(maxKeys)} is not a positive whole number`)
  return maxKeys
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref())
}
