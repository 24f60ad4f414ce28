import { lookup } from 'node:dns/promises'
import { isIP } from 'node:net'
import type { RedisClientLike } from './redis-clients.js'
import { sentinelConnection } from '@cache/core/backend'

/** What the watch needs from ioredis: a client constructor. */
export type RedisConstructor = new (
  options: Record<string, unknown>,
) => RedisClientLike & {
  call(...args: unknown[]): Promise<unknown>
}

/** Pause before moving a connection again that came back on the wrong master. */
const RETRY_MS = 50

/** The master the newest configuration names, and the addresses its host resolves to. */
interface Master {
  label: string
  port: number
  addresses: string[]
  epoch: number
}

/**
 * Keeps the bus's connections on the master the sentinels name (Sentinel deployments only). A
 * bus left on a demoted master publishes to, and hears from, nobody else: until Redis demotes it
 * (~10 s after a `SENTINEL FAILOVER`, never while it is cut off) processes split into two groups
 * that invalidate only among themselves.
 *
 * Every heartbeat the sentinels are asked for the master (`SENTINEL MASTER`) and the answer with
 * the highest `config-epoch` wins — the newest configuration, which a sentinel that has not heard
 * of a switch-over yet cannot outvote. A subscriber connection to each sentinel asks again at once
 * on `+switch-master`. A connection found on another master is reported (`onMoved`: what was
 * published or received there is lost for the others) and, if the bus opened it, reconnected;
 * ioredis asks the next sentinel each time, so one still naming the old master is passed over.
 * Costs two connections per sentinel and one command per sentinel per heartbeat.
 */
export class SentinelWatch {
  private readonly subscribers: RedisClientLike[]
  private readonly askers: InstanceType<RedisConstructor>[]
  private target: Master | undefined
  private closed = false

  constructor(
    private readonly Redis: RedisConstructor,
    private readonly options: Record<string, any>,
    private readonly clients: RedisClientLike[],
    private readonly owned: ReadonlySet<RedisClientLike>,
    private readonly timeoutMs: number,
    private readonly onMoved: (reason: string) => void,
  ) {
    const sentinels = (options.sentinels ?? []) as { host?: string; port?: number }[]
    this.subscribers = sentinels.map((sentinel) => {
      const subscriber = this.connect(sentinel)
      subscriber.on('message', this.onMessage)
      subscriber.subscribe('+switch-master').catch(() => {})
      return subscriber
    })
    this.askers = sentinels.map((sentinel) => this.connect(sentinel))
    for (const client of owned) client.on('ready', this.onReady)
  }

  /** Asks the sentinels for the master, then moves the connections that are elsewhere. Bounded by the timeout. */
  async check(): Promise<void> {
    if (this.closed) return
    const answers = await Promise.all(
      this.askers.map((asker) =>
        within(asker.call('SENTINEL', 'MASTER', this.options.name), this.timeoutMs).then(
          (reply) => parseMaster(reply),
          () => undefined,
        ),
      ),
    )
    let newest: { host: string; port: number; epoch: number } | undefined
    for (const answer of answers) if (answer && (!newest || answer.epoch > newest.epoch)) newest = answer
    if (newest === undefined || (this.target && newest.epoch < this.target.epoch)) return
    const { host, port } = this.mapped(newest.host, newest.port)
    const addresses = await resolve(host)
    // A host that does not resolve cannot be compared with: no connection is moved for it.
    if (this.closed || addresses.length === 0 || (this.target && newest.epoch < this.target.epoch)) return
    this.target = { label: `${host}:${port}`, port, addresses, epoch: newest.epoch }
    this.align()
  }

  close(): void {
    this.closed = true
    for (const client of this.owned) client.off?.('ready', this.onReady)
    for (const client of [...this.subscribers, ...this.askers]) client.disconnect?.()
  }

  private readonly onMessage = (channel: string, message: string): void => {
    // "<master name> <old ip> <old port> <new ip> <new port>"
    if (channel === '+switch-master' && message.split(' ')[0] === this.options.name) void this.check()
  }

  /** Moves every connection that is on another master than the target. */
  private align(): void {
    for (const client of this.clients) {
      if (this.closed || client.status !== 'ready' || this.isOnTarget(client) !== false) continue
      this.onMoved(`the bus is connected to ${address(client)}, the sentinels name ${this.target?.label}`)
      if (this.owned.has(client)) client.disconnect?.(true)
    }
  }

  /** A connection came up: if it is on the wrong master still, ask again (the next sentinel). */
  private readonly onReady = (): void => {
    if (this.target === undefined) return
    const timer = setTimeout(() => {
      for (const client of this.owned)
        if (!this.closed && client.status === 'ready' && this.isOnTarget(client) === false)
          client.disconnect?.(true)
    }, RETRY_MS)
    timer.unref?.()
  }

  /** `undefined` when not known (no target yet, or not connected). */
  private isOnTarget(client: RedisClientLike): boolean | undefined {
    const stream = client.stream
    if (this.target === undefined || stream?.remoteAddress === undefined) return undefined
    return (
      stream.remotePort === this.target.port &&
      this.target.addresses.includes(stream.remoteAddress.replace(/^::ffff:/, ''))
    )
  }

  private connect(sentinel: {
    host?: string
    port?: number
    family?: number
  }): InstanceType<RedisConstructor> {
    const options = this.options
    const client = new this.Redis({
      ...sentinelConnection(options, sentinel),
      connectTimeout: this.timeoutMs,
      enableReadyCheck: false,
      enableOfflineQueue: true,
      retryStrategy: (attempt: number) => Math.min(attempt * 100, 2000),
      connectionName: 'cache-bus-sentinel',
    })
    client.on('error', () => {})
    return client
  }

  /** The address as the client reaches it: through `natMap` when one is set (as ioredis does). */
  private mapped(host: string, port: number): { host: string; port: number } {
    const natMap = this.options.natMap
    const key = `${host}:${port}`
    const target = typeof natMap === 'function' ? natMap(key) : natMap?.[key]
    return target ? { host: target.host, port: Number(target.port) } : { host, port }
  }
}

/** `SENTINEL MASTER` answers field, value, field, value… */
function parseMaster(reply: unknown): { host: string; port: number; epoch: number } | undefined {
  if (!Array.isArray(reply)) return undefined
  const fields = new Map<string, string>()
  for (let i = 0; i + 1 < reply.length; i += 2) fields.set(String(reply[i]), String(reply[i + 1]))
  const host = fields.get('ip')
  const port = Number(fields.get('port'))
  const epoch = Number(fields.get('config-epoch') ?? 0)
  return host && Number.isInteger(port) && Number.isFinite(epoch) ? { host, port, epoch } : undefined
}

/** The addresses a connection to `host` may show as its remote address (sentinels may name hosts). */
async function resolve(host: string): Promise<string[]> {
  if (isIP(host)) return [host]
  try {
    return (await lookup(host, { all: true })).map((entry) => entry.address.replace(/^::ffff:/, ''))
  } catch {
    return []
  }
}

function address(client: RedisClientLike): string | undefined {
  const stream = client.stream
  return stream?.remoteAddress === undefined ? undefined : `${stream.remoteAddress}:${stream.remotePort}`
}

function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('no answer')), ms)
  })
  return Promise.race([promise, late]).finally(() => clearTimeout(timer))
}
