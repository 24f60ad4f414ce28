import { CacheConfigError, CacheUnavailableError } from '@cache/core'
import calculateSlot from 'cluster-key-slot'
import type { ChainableCommander, Cluster, Redis } from 'ioredis'
import type { RedisClient } from './client.js'
import { isMoved, renewSlots } from './slots.js'

type Arg = string | Buffer | number

/**
 * A write the master applied but fewer replicas than `replicas` acknowledged in time. It stays
 * on the master, and is lost if that master fails over before its replicas catch up: treat the
 * outcome as unknown (an `incr` retried blindly may count twice).
 */
export class CacheReplicationError extends CacheUnavailableError {
  /** The master applied the write. */
  readonly applied = true
  constructor(
    operation: string,
    /** Replicas asked for. */
    readonly wanted: number,
    /** Replicas that acknowledged the write in time. */
    readonly acknowledged: number,
    waitMs: number,
    cause?: unknown,
  ) {
    super(
      'redis',
      `redis: ${operation} was applied on the master, but ${acknowledged} of ${wanted} replica(s) acknowledged it within ${waitMs} ms: a failover before they catch up loses it`,
      cause === undefined ? undefined : { cause },
    )
  }
}

/** What this process knows of one master's replicas. */
interface Master {
  /** Writes go through: its replicas were listed, and no WAIT has fallen short since. */
  ok: boolean
  /** A WAIT fell short: a probe must also see the replicas acknowledge. */
  fellShort: boolean
  /** No probe before this (performance.now()); writes fail at once meanwhile. */
  until: number
  /** Replicas found at the last probe or WAIT. */
  acknowledged: number
  probe?: Promise<boolean>
}

/**
 * `replicas`: every write is followed by `WAIT replicas waitMs` on the same connection, in the
 * same round trip, and resolves only once that many replicas have it. A master acknowledges a
 * write before its replicas receive it, so without this a failover (a crash, `CLUSTER FAILOVER
 * FORCE|TAKEOVER`) can lose writes that were acknowledged.
 *
 * WAIT holds its connection until it returns: on a master whose replicas do not answer, every
 * write would wait `waitMs` in turn, behind the others, and be applied without being replicated.
 * So a write goes to a master only once `ROLE` has listed enough replicas for it (asked on the
 * first write to each master, e.g. one just promoted, which has none), and once a WAIT falls
 * short, writes to that master fail at once without being sent (not applied); every
 * {@link RETRY_MS} one of them asks again, `ROLE` and then a WAIT alone, and is sent only if the
 * replicas are back and have caught up.
 */
export class Replication {
  private readonly masters = new Map<string, Master>()

  constructor(
    readonly replicas: number,
    /** The server's longest wait for the acknowledgements, within the operation timeout. */
    readonly waitMs: number,
  ) {}

  /**
   * Before a write to the master serving `key` (a full Redis key): throws, with nothing sent,
   * unless that master is known to have its replicas. Returns the master's name, for
   * {@link check}.
   */
  async admit(client: RedisClient, operation: string, key: string): Promise<string> {
    const name = masterName(client, key)
    let master = this.masters.get(name)
    if (master?.ok) return name
    if (master === undefined) {
      master = { ok: false, fellShort: false, until: 0, acknowledged: 0 }
      this.masters.set(name, master)
    }
    if (master.probe === undefined) {
      if (performance.now() < master.until) throw this.notSent(operation, name, master)
      const state = master
      state.probe = this.probe(client, key, state).finally(() => {
        state.probe = undefined
      })
    }
    // Writes that arrive while one asks wait for its answer (a first burst is not refused).
    if (await master.probe) return name
    throw this.notSent(operation, name, master)
  }

  /** The name of the master serving `key` when it is known to have its replicas (no need to ask). */
  admitted(client: RedisClient, key: string): string | undefined {
    const name = masterName(client, key)
    return this.masters.get(name)?.ok ? name : undefined
  }

  /** Appends the WAIT to a pipeline of writes (on a cluster: for one node). */
  addWait(pipeline: ChainableCommander): void {
    pipeline.call('WAIT', this.replicas, this.waitMs)
  }

  /**
   * Judges the WAIT of writes admitted on `master`: throws {@link CacheReplicationError} (and
   * holds writes to that master back) unless enough replicas acknowledged.
   */
  check(name: string, operation: string, result: [Error | null, unknown] | undefined): void {
    const [error, count] = result ?? [new Error('no reply to WAIT'), 0]
    const acknowledged = error ? 0 : Number(count)
    if (acknowledged >= this.replicas) return
    const master = this.masters.get(name)
    if (master !== undefined)
      Object.assign(master, { ok: false, fellShort: true, until: performance.now() + RETRY_MS, acknowledged })
    throw new CacheReplicationError(operation, this.replicas, acknowledged, this.waitMs, error ?? undefined)
  }

  /**
   * Whether the writes this connection sent to the master serving `key` (and, on a connection
   * that sent none, the master itself) have `replicas` replicas: a read of `key` routes a WAIT
   * there. Never held back.
   */
  async confirm(client: RedisClient, key: string): Promise<boolean> {
    const pipeline = client.pipeline().exists(key)
    this.addWait(pipeline)
    const results = (await pipeline.exec()) ?? []
    return !results[1]?.[0] && Number(results[1]?.[1] ?? 0) >= this.replicas
  }

  /** One write command on `key` and the WAIT in one pipeline: the command's reply once replicated. */
  async send(
    client: RedisClient,
    operation: string,
    key: string,
    command: string,
    args: Arg[],
    buffers = false,
  ): Promise<unknown> {
    // A master known to have its replicas: sent before this returns, so commands go out in call order.
    let master = this.admitted(client, key) ?? (await this.admit(client, operation, key))
    for (let attempt = 1; ; attempt++) {
      const pipeline = client.pipeline()
      if (buffers) pipeline.callBuffer(command, ...args)
      else pipeline.call(command, ...args)
      this.addWait(pipeline)
      const results = (await pipeline.exec()) ?? []
      const [error, reply] = results[0] ?? [new Error(`no reply to ${command}`), undefined]
      if (error) {
        // The slot moved (nothing was written): once more, to its new master.
        if (attempt === 1 && isMoved(client, error)) {
          await renewSlots(client as Cluster)
          master = await this.admit(client, operation, key)
          continue
        }
        // The command failed (nothing was written): its own error, not a replication failure.
        throw error
      }
      this.check(master, operation, results[1])
      return reply
    }
  }

  /**
   * Asks the master serving `key` for its replicas (`ROLE`, which does not wait; after a WAIT
   * fell short also a WAIT alone, as a listed replica may not answer). Unreachable: not there.
   */
  private async probe(client: RedisClient, key: string, master: Master): Promise<boolean> {
    let listed = 0
    try {
      const results = (await client.pipeline().exists(key).role().exec()) ?? []
      const role = results[1]?.[1] as [string, unknown, unknown[]] | undefined
      listed = role?.[0] === 'master' && Array.isArray(role[2]) ? role[2].length : 0
      master.ok = listed >= this.replicas && (!master.fellShort || (await this.confirm(client, key)))
    } catch {
      master.ok = false
    }
    master.acknowledged = listed
    if (master.ok) master.fellShort = false
    else master.until = performance.now() + RETRY_MS
    return master.ok
  }

  private notSent(operation: string, name: string, master: Master): CacheUnavailableError {
    const found = master.fellShort
      ? `${master.acknowledged} of ${this.replicas} replica(s) acknowledged the last write on ${name}`
      : `${name} has ${master.acknowledged} of ${this.replicas} replica(s)`
    return new CacheUnavailableError(
      'redis',
      `redis: ${operation} failed (not sent): ${found}; writes there wait until they are back (checked every ${RETRY_MS} ms)`,
    )
  }
}

/** Pause after a master was found short of replicas before a write asks again. */
const RETRY_MS = 1000

/** The master a write of `key` goes to: on a cluster its slot's owner, else where the client is connected. */
function masterName(client: RedisClient, key: string): string {
  if (client.isCluster) {
    const slot = calculateSlot(key)
    return (client as Cluster).slots[slot]?.[0] ?? `slot ${slot}`
  }
  const stream = (client as Redis).stream
  return stream?.remoteAddress === undefined ? 'the master' : `${stream.remoteAddress}:${stream.remotePort}`
}

/** The `replicas` option: `undefined` for 0 (the default: writes are not waited for). */
export function replicationSettings(replicas: unknown, timeoutMs: number): Replication | undefined {
  if (replicas === undefined || replicas === 0) return undefined
  if (typeof replicas !== 'number' || !Number.isSafeInteger(replicas) || replicas < 0)
    throw new CacheConfigError('replicas', `expected a whole number of replicas, got ${String(replicas)}`)
  // A third of the timeout: writes queued behind a WAIT on the same connection still fit in theirs.
  return new Replication(replicas, Math.max(1, Math.floor(timeoutMs / 3)))
}
