import { randomUUID } from 'node:crypto'

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
  /** Sends a message to every subscriber, this process's included. Rejects when it cannot be sent. */
  publish(message: InvalidationMessage): Promise<void>
  /**
   * Receives every message. `onResync` is called when the bus reconnects after a drop: messages
   * sent meanwhile may have been lost. Returns a function that unsubscribes.
   */
  subscribe(listener: (message: InvalidationMessage) => void, onResync?: () => void): () => void
  /** Resolves once messages are being received (the subscription is active). */
  ready(): Promise<void>
  /** Idempotent. Closes only the connections the bus opened itself. */
  close(): Promise<void>
}

/** The part of an ioredis client (`Redis` or `Cluster`) the bus uses. */
export interface RedisClientLike {
  publish(channel: string, message: string): Promise<unknown>
  subscribe(...channels: string[]): Promise<unknown>
  duplicate(): RedisClientLike
  on(event: string, listener: (...args: any[]) => void): unknown
  quit(): Promise<unknown>
}

/** Options of {@link redisBus}. */
export interface RedisBusOptions {
  /** The pub/sub channel. Processes that should invalidate each other use the same one. Default: `'@cache/multi-level:invalidate'`. */
  channel?: string
  /** Most time a publish may take before it is given up (and reported as an error), in ms. Default: 500. */
  publishTimeoutMs?: number
}

/**
 * An invalidation bus over Redis pub/sub, on `ioredis` (an optional peer dependency).
 *
 * Pass a URL (the bus opens and later closes two connections) or an ioredis client (the bus
 * publishes on it and subscribes on a `duplicate()`; only the duplicate is closed). Delivery is
 * at most once: while Redis is unreachable messages are lost, so after a reconnect every
 * subscriber is told to resync (multi-level then empties its faster levels).
 */
export function redisBus(
  connection: string | RedisClientLike,
  options: RedisBusOptions = {},
): InvalidationBus {
  return new RedisBus(connection, options)
}

class RedisBus implements InvalidationBus {
  private readonly channel: string
  private readonly timeoutMs: number
  private readonly listeners = new Set<{ message: (m: InvalidationMessage) => void; resync?: () => void }>()
  private readonly clients: Promise<{
    publisher: RedisClientLike
    subscriber: RedisClientLike
    owned: RedisClientLike[]
  }>
  private readonly subscribed: Promise<void>
  private closed: Promise<void> | undefined

  constructor(connection: string | RedisClientLike, options: RedisBusOptions) {
    this.channel = options.channel ?? '@cache/multi-level:invalidate'
    this.timeoutMs = options.publishTimeoutMs ?? 500
    if (!(this.timeoutMs > 0))
      throw new RangeError(`publishTimeoutMs: ${String(this.timeoutMs)} is not positive`)
    if (typeof connection !== 'string' && typeof connection?.publish !== 'function') {
      throw new TypeError('redisBus: expected a redis:// URL or an ioredis client')
    }
    this.clients = openClients(connection)
    this.subscribed = this.clients.then(({ subscriber }) => this.listen(subscriber))
    // Reported through ready(); never an unhandled rejection.
    this.subscribed.catch(() => {})
  }

  async publish(message: InvalidationMessage): Promise<void> {
    const { publisher } = await this.clients
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`invalidation bus: publish timed out after ${this.timeoutMs} ms`)),
        this.timeoutMs,
      )
    })
    try {
      await Promise.race([publisher.publish(this.channel, encode(message)), timeout])
    } finally {
      clearTimeout(timer)
    }
  }

  subscribe(listener: (message: InvalidationMessage) => void, onResync?: () => void): () => void {
    const entry = { message: listener, resync: onResync }
    this.listeners.add(entry)
    return () => {
      this.listeners.delete(entry)
    }
  }

  ready(): Promise<void> {
    return this.subscribed
  }

  close(): Promise<void> {
    this.closed ??= this.clients.then(
      async ({ owned }) => {
        this.listeners.clear()
        await Promise.all(owned.map((client) => client.quit().catch(() => {})))
      },
      () => {},
    )
    return this.closed
  }

  private async listen(subscriber: RedisClientLike): Promise<void> {
    let dropped = false
    subscriber.on('message', (channel: string, text: string) => {
      if (channel !== this.channel) return
      const message = decode(text)
      if (message === undefined) return
      for (const listener of this.listeners) listener.message(message)
    })
    subscriber.on('close', () => {
      dropped = true
    })
    subscriber.on('ready', () => {
      if (!dropped) return
      dropped = false
      for (const listener of this.listeners) listener.resync?.()
    })
    // Swallow connection errors: ioredis reconnects by itself, and a bus that cannot connect
    // only means other processes' faster levels may be stale (see the README).
    subscriber.on('error', () => {})
    await subscriber.subscribe(this.channel)
  }
}

async function openClients(connection: string | RedisClientLike) {
  if (typeof connection !== 'string') {
    const subscriber = connection.duplicate()
    return { publisher: connection, subscriber, owned: [subscriber] }
  }
  const { Redis } = await import('ioredis')
  const settings = {
    // Fail a publish at once while Redis is down; reconnect forever in the background.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: (attempt: number) => Math.min(attempt * 50, 500),
  }
  const publisher = new Redis(connection, settings) as unknown as RedisClientLike
  publisher.on('error', () => {})
  // The subscriber queues its SUBSCRIBE until the first connection is up.
  const subscriber = new Redis(connection, {
    ...settings,
    enableOfflineQueue: true,
    maxRetriesPerRequest: null,
  }) as unknown as RedisClientLike
  return { publisher, subscriber, owned: [publisher, subscriber] }
}

/** A fresh id for one multi-level instance. */
export function newOrigin(): string {
  return randomUUID()
}

function encode(message: InvalidationMessage): string {
  return JSON.stringify(
    message.clear
      ? { o: message.origin, n: message.namespace, c: 1 }
      : { o: message.origin, n: message.namespace, k: message.keys ?? [] },
  )
}

/** A message from the wire, or `undefined` for anything malformed (ignored). */
function decode(text: string): InvalidationMessage | undefined {
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch {
    return undefined
  }
  if (typeof raw !== 'object' || raw === null) return undefined
  const { o, n, k, c } = raw as Record<string, unknown>
  if (typeof o !== 'string' || typeof n !== 'string') return undefined
  if (c === 1) return { origin: o, namespace: n, clear: true }
  if (!Array.isArray(k) || !k.every((key) => typeof key === 'string')) return undefined
  return { origin: o, namespace: n, keys: k as string[] }
}
