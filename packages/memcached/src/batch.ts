import type { SetManyItem } from '@cache/core'
import type { CacheObserver } from '@cache/core/backend'
import { isExpired } from './expiry.js'
import type { ItemFormat } from './items.js'
import type { Links, Refused } from './links.js'
import { Opcode, type Response, request, Status, storeRequest } from './protocol.js'
import type { Outcome, Routes } from './routing.js'

/** What a batch read found for one key (a failure is counted as an error where it happened). */
type Read = 'hit' | 'miss' | 'failed'

/** What the batches use of their backend. */
export interface BatchDeps {
  routes: Routes
  links: Links
  observer: CacheObserver
  items: ItemFormat
}

/**
 * `getMany` and `setMany` with memcached's quiet requests, answered only when there is something
 * to say (a hit, a refused write): one round trip per server, however many keys. Core's fallbacks
 * (one `get` or `set` per key) would cost one answer per key.
 */
export class Batches {
  constructor(private readonly deps: BatchDeps) {}

  /**
   * Reads many keys in one round trip per server: the keys of each server go out in one write as
   * quiet GETs (GETKQ, answered only on a hit) ended by a NOOP, with that server's generation read.
   * Rejects (after every server answered) with the first failure, e.g. a server that is down; the
   * hits and misses of the keys that were answered are counted all the same.
   */
  async getMany<T = unknown>(keys: readonly string[]): Promise<(T | undefined)[]> {
    const found = await this.many('get', keys, (mkey) => request(Opcode.getkq, mkey), false)
    const values: (T | undefined)[] = new Array(keys.length).fill(undefined)
    // Hits and misses are counted once every key is answered, also when the call rejects for
    // other keys: what the servers that answered said stays in the stats.
    const read: Read[] = new Array(keys.length).fill('miss')
    let failure: unknown
    for (let i = 0; i < keys.length; i++) {
      const outcome = found[i]!
      if ('error' in outcome) {
        failure ??= outcome.error
        read[i] = 'failed'
        continue
      }
      const response = outcome.value
      if (response === undefined || isExpired(response.flags, this.deps.items.now())) continue
      read[i] = 'failed'
      if (response.status !== Status.ok) {
        failure ??= this.deps.items.failure('get', response.status, keys[i]!)
        continue
      }
      try {
        values[i] = this.deps.items.decode(response.value) as T
        read[i] = 'hit'
      } catch (error) {
        failure ??= error
      }
    }
    for (let i = 0; i < keys.length; i++) {
      if (read[i] === 'hit') this.deps.observer.hit(keys[i]!)
      else if (read[i] === 'miss') this.deps.observer.miss(keys[i]!)
    }
    if (failure !== undefined) throw failure
    return values
  }

  /**
   * Writes many keys in one round trip per server (quiet SETs, SETQ, answered only on a failure,
   * ended by a NOOP). Every TTL and value is checked first, so a bad item stores nothing. A key the
   * server refuses, or a server that is down, fails those keys only: the others are stored, and
   * the call rejects with the first failure.
   */
  async setMany(items: readonly SetManyItem[]): Promise<void> {
    const writes = items.map((item) => ({
      expiry: this.deps.items.expiry(item.ttl),
      bytes: this.deps.items.encode(item.key, item.value),
    }))
    const outcomes = await this.many(
      'set',
      items.map((item) => item.key),
      (mkey, i) => storeRequest(Opcode.setq, mkey, writes[i]!.expiry, writes[i]!.bytes),
      true,
    )
    let failure: unknown
    for (let i = 0; i < items.length; i++) {
      const outcome = outcomes[i]!
      const key = items[i]!.key
      if ('error' in outcome) failure ??= outcome.error
      else if (outcome.value === undefined) this.deps.observer.set(key)
      else
        failure ??=
          (outcome.value as Partial<Refused>).error ??
          this.deps.items.failure('set', outcome.value.status, key, writes[i]!.bytes.length)
    }
    if (failure !== undefined) throw failure
  }

  /**
   * Sends one quiet request per key (`build`), the keys of each server in one write with that
   * server's generation read (see {@link Generations.run}): one round trip per server. Per key: the
   * server's answer (undefined: it answered nothing), or the failure of its server.
   */
  private many(
    operation: string,
    keys: readonly string[],
    build: (mkey: string, position: number) => Buffer,
    write: boolean,
  ): Promise<Outcome<Response | undefined>[]> {
    return this.deps.routes.perServer(keys, operation, (index, mkeys, positions, serverKeys) =>
      this.deps.links.callQuiet(
        index,
        mkeys.map((mkey, j) => build(mkey, positions[j]!)),
        operation,
        write,
        serverKeys,
      ),
    )
  }
}
