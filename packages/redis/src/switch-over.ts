import { type CacheObserver, sentinelConnection, unrefRedisClient } from '@cache/core/backend'
import { Redis, type RedisOptions } from 'ioredis'
import { translateError } from './errors.js'

/** The sentinel events this guard reacts to (each published on a channel of its name). */
const PROMOTING = '+failover-state-send-slaveof-noone'
const SWITCHED = '+switch-master'
const ABORTED = [
  '-failover-abort-not-elected',
  '-failover-abort-no-good-slave',
  '-failover-abort-slave-timeout',
]
/** A switch-over that neither ends nor aborts within this long no longer holds calls back. */
const LONGEST_SWITCH_MS = 15_000
/** Pause before asking the sentinels again when the client reached the wrong master. */
const RETRY_MS = 50

/**
 * Holds calls back during a Sentinel switch-over. A write the old master acknowledges after its
 * replica was promoted is lost when the old master rejoins as a replica; the sentinels announce
 * the promotion (`+failover-state-send-slaveof-noone`, about 100 ms before they send `REPLICAOF
 * NO ONE`) and its end (`+switch-master`). From the first until the client is connected to the
 * new master, calls fail at once with `CacheUnavailableError` instead of being acknowledged and
 * lost. On `+switch-master` the client reconnects (what ioredis' `failoverDetector` does, which
 * this replaces) and the calls stay held until it is connected to the master that message names:
 * a sentinel that has not heard of the switch yet (cut off, or slow) may name the old master,
 * so the client asks again (ioredis asks the next sentinel each time) until one names the new
 * one. One subscriber connection per sentinel given.
 */
export class SwitchOverGuard {
  private readonly subscribers: Redis[]
  private promotingSince: number | undefined
  /** `host:port` of the new master once `+switch-master` named it. */
  private target: string | undefined
  private closed = false

  constructor(
    private readonly client: Redis,
    private readonly observer: CacheObserver,
    timeoutMs: number,
  ) {
    const options = client.options
    this.subscribers = (options.sentinels ?? []).map((sentinel) => {
      const subscriber = new Redis({
        ...sentinelConnection(options, sentinel),
        connectTimeout: options.connectTimeout,
        commandTimeout: timeoutMs,
        enableReadyCheck: false,
        retryStrategy: options.sentinelRetryStrategy ?? undefined,
        connectionName: 'cache-switch-over',
      } satisfies RedisOptions)
      unrefRedisClient(subscriber)
      subscriber.on('error', this.onError)
      subscriber.on('message', this.onMessage)
      subscriber.subscribe(PROMOTING, SWITCHED, ...ABORTED).catch(this.onError)
      return subscriber
    })
    client.on('ready', this.onReady)
  }

  /** True while a switch-over is promoting a replica and the client is not on the new master yet. */
  get holding(): boolean {
    if (this.promotingSince === undefined) return false
    if (performance.now() - this.promotingSince < LONGEST_SWITCH_MS) return true
    this.promotingSince = undefined
    return false
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    this.client.off('ready', this.onReady)
    for (const subscriber of this.subscribers) subscriber.disconnect()
  }

  private readonly onMessage = (channel: string, message: string): void => {
    const words = message.split(' ')
    if (channel === PROMOTING) {
      // "slave <name> <ip> <port> @ <master name> <ip> <port>"
      if (words[words.indexOf('@') + 1] !== this.client.options.name) return
      this.promotingSince ??= performance.now()
      this.target = undefined
      return
    }
    if (channel === SWITCHED) {
      // "<master name> <old ip> <old port> <new ip> <new port>"
      if (words[0] !== this.client.options.name) return
      this.target = this.mapped(words[3]!, Number(words[4]))
      if (this.connectedTo() === this.target) {
        this.promotingSince = undefined
        return
      }
      // Held until connected there, also when the promotion message was missed.
      this.promotingSince ??= performance.now()
      // A client still connecting is judged when it is ready (onReady): dropping it while ioredis
      // asks the sentinels ends it for good.
      if (!this.client.options.failoverDetector && this.client.status === 'ready')
        this.client.disconnect(true)
      return
    }
    // "-failover-abort-…": "master <name> <ip> <port>"
    if (words[1] === this.client.options.name) this.promotingSince = undefined
  }

  private readonly onReady = (): void => {
    if (!this.holding || this.target === undefined) return
    if (this.connectedTo() === this.target) {
      this.promotingSince = undefined
      return
    }
    // The sentinel asked still names the old master: ask again (the next one).
    const retry = setTimeout(() => {
      if (!this.closed && this.holding && this.target !== undefined && this.connectedTo() !== this.target)
        this.client.disconnect(true)
    }, RETRY_MS)
    retry.unref()
  }

  private readonly onError = (error: unknown): void => {
    if (!this.closed) this.observer.error('sentinel', translateError(error, 'sentinel', 0))
  }

  private connectedTo(): string | undefined {
    const stream = this.client.stream
    return stream?.remoteAddress === undefined ? undefined : `${stream.remoteAddress}:${stream.remotePort}`
  }

  /** The address as the client reaches it: through `natMap` when one is set (as ioredis does). */
  private mapped(host: string, port: number): string {
    const key = `${host}:${port}`
    const natMap = this.client.options.natMap
    const target = typeof natMap === 'function' ? natMap(key) : natMap?.[key]
    return target ? `${target.host}:${target.port}` : key
  }
}
