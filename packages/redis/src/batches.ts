import type { SetManyItem } from '@cache/core'
import { type ChainableCommander, type Cluster, ReplyError } from 'ioredis'
import { assertStored, integerReply, unexpectedReply } from './errors.js'
import type { BackendParts } from './parts.js'
import type { Reads } from './reads.js'
import { groupByNodeAndSlot, isMoved, renewSlots } from './slots.js'

/**
 * `getMany`, `setMany` and `deleteMany`: one round trip per node, the commands of each hash slot
 * together.
 */
export class Batches {
  constructor(
    private readonly parts: BackendParts,
    /** Reads the values of a single node as `get` does. */
    private readonly reads: Reads,
  ) {}

  /**
   * One `MGET` (a cluster: one per hash slot, one pipeline per node): every value is read in one
   * step, so a key another client writes meanwhile is read as it was or as written, and what a
   * call made after this one writes is never read. `MGET` answers a key of another type (a list)
   * with nil, as it answers a missing key; when some keys were nil, one more step
   * ({@link assertNoOtherType}) asks their types, and a key of another type fails the call with
   * the WRONGTYPE `get` of it would fail with. A key found written since (a string now) is still
   * read as the miss `MGET` saw. A call whose every key is found costs one command; a `WATCH` your
   * code left on the client is left alone (no transaction of ours ends it).
   */
  async getMany<T>(keys: readonly string[]): Promise<(T | undefined)[]> {
    const { client, connection, format } = this.parts
    const out = new Array<T | undefined>(keys.length).fill(undefined)
    if (keys.length === 0) return out
    const full = keys.map((key) => format.key(key))
    let stored: (Buffer | null)[]
    if (!client.isCluster) {
      // One node: no pipeline object around the one command.
      const reply = await connection.send('getMany', undefined, () => client.mgetBuffer(full))
      stored = valuesIn(reply)
    } else {
      stored = new Array<Buffer | null>(keys.length)
      const batches = await this.batch('getMany', full, false, (pipeline, positions) => {
        pipeline.mgetBuffer(positions.map((i) => full[i]!))
      })
      for (const { groups, replies } of batches)
        groups.forEach((positions, g) => {
          const values = valuesIn(replies[g])
          for (let j = 0; j < positions.length; j++) stored[positions[j]!] = values[j] ?? null
        })
    }
    const missing: string[] = []
    for (let i = 0; i < keys.length; i++) if (stored[i] === null) missing.push(full[i]!)
    if (missing.length > 0) await this.assertNoOtherType(missing)
    // Every value decoded before any counts: a getMany that rejects counted no hit.
    const decoded = new Array<unknown>(keys.length)
    for (let i = 0; i < keys.length; i++) decoded[i] = this.reads.decode(stored[i] ?? null)
    for (let i = 0; i < keys.length; i++) out[i] = this.reads.counted(decoded[i], keys[i]!) as T
    return out
  }

  /**
   * Fails like `get` would when one of `missing` (keys `MGET` answered nil) holds another type:
   * one `TYPE` per key, in one pipeline per node (the commands `get` and `MGET` need, no script).
   */
  private async assertNoOtherType(missing: string[]): Promise<void> {
    let batches: Awaited<ReturnType<Batches['batch']>>
    try {
      batches = await this.batch(
        'getMany',
        missing,
        false,
        (pipeline, positions) => {
          for (const i of positions) pipeline.type(missing[i]!)
        },
        true,
      )
    } catch (error) {
      throw withTypeAdvice(error)
    }
    for (const { replies } of batches)
      for (const kind of replies) {
        // QUEUED: your code left the client inside MULTI (a shared client).
        if (typeof kind !== 'string' || kind === 'QUEUED')
          throw unexpectedReply(kind, 'getMany', undefined, 'a type')
        if (kind !== 'none' && kind !== 'string')
          throw this.parts.connection.failed('getMany', wrongType(), undefined)
      }
  }

  async setMany(items: readonly SetManyItem[]): Promise<void> {
    const { format, near, observer } = this.parts
    if (items.length === 0) return
    // Check and encode everything first, so a bad item stores nothing.
    const full = items.map((item) => format.key(item.key))
    const ttls = items.map((item) => format.ttlMs(item.ttl))
    const values = items.map((item) => format.encode(item.value))
    for (const k of full) near?.forget(k)
    const batches = await this.batch('setMany', full, true, (pipeline, positions) => {
      for (const i of positions) {
        const ms = ttls[i]
        if (ms === undefined) pipeline.set(full[i]!, values[i]!)
        else pipeline.set(full[i]!, values[i]!, 'PX', ms)
      }
    })
    for (const k of full) near?.forget(k)
    for (const { groups, replies } of batches) {
      let r = 0
      for (const positions of groups)
        for (const i of positions) assertStored(replies[r++], 'setMany', items[i]!.key)
    }
    for (const item of items) observer.set(item.key)
  }

  async deleteMany(keys: readonly string[]): Promise<number> {
    const { format, near, observer } = this.parts
    if (keys.length === 0) return 0
    const full = keys.map((key) => format.key(key))
    for (const k of full) near?.forget(k)
    // One UNLINK per key (still one round trip per node) tells which keys were removed.
    const batches = await this.batch('deleteMany', full, true, (pipeline, positions) => {
      for (const i of positions) pipeline.unlink(full[i]!)
    })
    for (const k of full) near?.forget(k)
    let removed = 0
    for (const { groups, replies } of batches) {
      let r = 0
      for (const positions of groups) {
        for (const i of positions) {
          if (integerReply(replies[r++], 'deleteMany', keys[i]!) === 1) {
            removed++
            observer.delete(keys[i]!)
          }
        }
      }
    }
    return removed
  }

  /**
   * Sends commands for many keys: one pipeline per node (a single node: one pipeline), `add`
   * called once per hash slot group. Replies come back flat, in the order the commands were added.
   * Writes (`writes`) end each pipeline with the WAIT of `replicas`.
   */
  private async batch(
    operation: string,
    keys: string[],
    writes: boolean,
    add: (pipeline: ChainableCommander, positions: number[]) => void,
    /** A later step of a call under way: sent after `close()` was called too. */
    next = false,
  ): Promise<{ groups: number[][]; replies: unknown[] }[]> {
    const { client, connection } = this.parts
    const replication = writes ? this.parts.replication : undefined
    const run = async (groups: number[][]) => {
      // Without replicas (or with a master known to have them) the pipeline is sent before this
      // returns: commands go out in call order.
      const first = keys[groups[0]![0]!]!
      const master =
        replication === undefined
          ? undefined
          : (replication.admitted(client, first) ?? (await replication.admit(client, operation, first)))
      const pipeline = client.pipeline()
      for (const positions of groups) add(pipeline, positions)
      if (replication !== undefined) replication.addWait(pipeline)
      const results = (await pipeline.exec()) ?? []
      const waited = replication === undefined ? undefined : results.pop()
      const replies = new Array<unknown>(results.length)
      for (let i = 0; i < results.length; i++) {
        const [error, reply] = results[i]!
        if (error) {
          // Followed by WAIT, ioredis does not follow a MOVED: the next call goes to the new master.
          if (isMoved(client, error)) await renewSlots(client as Cluster)
          throw error
        }
        replies[i] = reply
      }
      if (master !== undefined) replication!.check(master, operation, waited)
      return { groups, replies }
    }
    const send = next ? connection.sendNext.bind(connection) : connection.send.bind(connection)
    return send(operation, undefined, () => {
      const perNode: number[][][] = client.isCluster
        ? [...groupByNodeAndSlot(client as Cluster, keys).values()].map((slots) => [...slots.values()])
        : [[keys.map((_, i) => i)]]
      return Promise.all(perNode.map(run))
    })
  }
}

/** The values an `MGET` answered. */
function valuesIn(reply: unknown): (Buffer | null)[] {
  if (!Array.isArray(reply)) throw unexpectedReply(reply, 'getMany', undefined, 'a list of values')
  return reply as (Buffer | null)[]
}

/** The error Redis gives `GET` of a key of another type (see {@link Batches.getMany}). */
function wrongType(): Error {
  return new ReplyError('WRONGTYPE Operation against a key holding the wrong kind of value') as Error
}

/**
 * A refusal of getMany's `TYPE` step by an ACL, told as such: the user needs `TYPE` to read a
 * batch with a missing key (it tells a miss from a key of another type, which `MGET` answers nil).
 */
function withTypeAdvice(error: unknown): unknown {
  if (!(error instanceof Error) || !/\bNOPERM\b/.test(error.message) || !/'type'/i.test(error.message))
    return error
  error.message +=
    ' (getMany asks the TYPE of each key MGET answered nil, to fail on a key of another type as get does: allow TYPE for this ACL user)'
  return error
}
