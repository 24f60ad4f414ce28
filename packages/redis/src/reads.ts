import type { CacheEntry } from '@cache/core'
import type { Redis } from 'ioredis'
import { Coalescer } from './coalesce.js'
import type { BackendParts } from './parts.js'
import { unexpectedReply } from './errors.js'
import { GET_ENTRY } from './scripts.js'

const NO_ARGS: string[] = []

/** What {@link Reads.decode} returns for a key that holds nothing. */
const MISSING: unique symbol = Symbol('missing')

/**
 * `get` and `getEntry` of one key: through the near cache when it is on, else one command each,
 * or, for the gets that follow the first of a tick, one script at the end of the tick (see
 * coalesce.ts).
 */
export class Reads {
  /** Batches the gets of one tick; undefined when they go alone (see the `coalesce` option). */
  private readonly coalescer: Coalescer | undefined

  /** `coalesce`: the option; on a cluster, with `nearCache` or with `replicas`, each get goes alone. */
  constructor(
    private readonly parts: BackendParts,
    coalesce: boolean,
  ) {
    const { client, connection, observer } = parts
    const alone = client.isCluster || parts.near !== undefined || parts.replication !== undefined
    this.coalescer =
      coalesce && !alone
        ? new Coalescer(client as Redis, connection, observer, {
            get: (k, key) => this.getOne(k, key),
            read: (stored, key) => this.read(stored, key),
          })
        : undefined
  }

  get<T>(key: string): Promise<T | undefined> {
    if (this.parts.near !== undefined) return this.getNear<T>('get', key).then((entry) => entry?.value)
    let k: string
    try {
      k = this.parts.format.key(key)
    } catch (error) {
      return Promise.reject(error)
    }
    if (this.coalescer !== undefined && !this.parts.connection.blocked) {
      const batched = this.coalescer.get(k, key)
      if (batched !== undefined) return batched as Promise<T | undefined>
    }
    return this.getOne(k, key) as Promise<T | undefined>
  }

  async getEntry<T>(key: string): Promise<CacheEntry<T> | undefined> {
    this.flush()
    if (this.parts.near !== undefined) return this.getNear<T>('getEntry', key)
    const { client, connection, observer, format } = this.parts
    const k = format.key(key)
    // The TTL counts from when Redis ran the command, no earlier than now: an expiry computed from
    // the reply's arrival would outlive Redis's by however long the reply waited to be read.
    const asked = Date.now()
    const reply = (await connection.send('getEntry', key, () => GET_ENTRY.run(client, k, NO_ARGS))) as
      | [Buffer, number]
      | null
    if (reply === null) {
      observer.miss(key)
      return undefined
    }
    if (!Array.isArray(reply)) throw unexpectedReply(reply, 'getEntry', key, 'a value and its TTL')
    // Decoded before it counts: a value that does not parse is no hit.
    const value = format.codec.decode(reply[0]) as T
    observer.hit(key)
    return reply[1] >= 0 ? { value, expiresAt: asked + reply[1] } : { value }
  }

  /** Sends the gets waiting for the end of their tick: before any other command, to keep call order. */
  flush(): void {
    this.coalescer?.flush()
  }

  /**
   * What `get` returns for a stored value (null: a miss), the hit or miss counted once the value
   * is decoded: a value that does not parse rejects the call and counts neither.
   */
  read(stored: Buffer | null, key: string): unknown {
    return this.counted(this.decode(stored), key)
  }

  /**
   * A stored value decoded, not counted yet: {@link MISSING} for a miss. Throws
   * `CacheSerializationError` when it does not parse.
   *
   * Replies are read as bytes (ioredis receives bytes either way; a string reply is their
   * `toString()`): a value written by a differently configured client (compressed: NUL first; or
   * another serializer's bytes) is decoded from the reply itself. Reading it again as bytes would
   * send a second GET behind the calls made after this one, and read what they wrote.
   */
  decode(stored: Buffer | null): unknown {
    if (stored === null) return MISSING
    const first = stored[0]
    // JSON text (ASCII first, not NUL) is parsed from the string ioredis would have made of it,
    // a counter (a bare integer, leading zeros allowed) included, as getEntry and incr read it.
    if (this.parts.format.text && first !== undefined && first !== 0 && first < 0x80)
      return this.parts.format.codec.decode(stored.toString())
    return this.parts.format.codec.decode(stored)
  }

  /** Counts what {@link decode} returned as a hit or a miss; what `get` returns for it. */
  counted(value: unknown, key: string): unknown {
    if (value === MISSING) {
      this.parts.observer.miss(key)
      return undefined
    }
    this.parts.observer.hit(key)
    return value
  }

  /** One `GET`, sent now (or once the connection is ready); under way until its value is read. */
  private getOne(k: string, key: string): Promise<unknown> {
    const { client, connection, observer } = this.parts
    if (!connection.blocked) {
      // What connection.run and connection.call do, in one step: sent at once, timed by the
      // client, measured, counted under way until its value is read.
      connection.started()
      const start = performance.now()
      return connection.timed(client.getBuffer(k), 'get').then(
        (stored) => {
          observer.latency(performance.now() - start)
          connection.answered()
          try {
            return this.read(stored, key)
          } finally {
            connection.finished()
          }
        },
        (error: unknown) => {
          connection.finished()
          throw connection.failed('get', error, key)
        },
      )
    }
    return connection.run('get', key, async () => {
      const stored = await connection.call<Buffer | null>('get', key, client.getBuffer(k))
      return this.read(stored, key)
    })
  }

  /** `get`/`getEntry` through the near cache: a copy Redis has not invalidated, else a read kept. */
  private async getNear<T>(operation: string, key: string): Promise<CacheEntry<T> | undefined> {
    const { client, connection, observer, format, near } = this.parts
    const k = format.key(key)
    // A copy is served only when a call could be sent now: never while a Sentinel switch-over
    // holds calls back, nor while the connection is down.
    const entry = await connection.run(operation, key, () =>
      near!.read(k, () =>
        // PTTL keeps the copy from outliving the key.
        connection.call(operation, key, Promise.all([client.getBuffer(k), client.pttl(k)])),
      ),
    )
    if (entry === undefined) {
      observer.miss(key)
      return undefined
    }
    const value = format.codec.decode(entry.bytes) as T
    observer.hit(key)
    return entry.expiresAt === undefined ? { value } : { value, expiresAt: entry.expiresAt }
  }
}
