import { CacheClosedError } from '@cache/core'
import { isInternalKey } from '@cache/core/backend'
import type { Generations } from './generations.js'
import type { KeyMapper } from './keys.js'
import type { ServerPool } from './pool.js'
import { type Done, doneWhenSettled } from './protocol.js'

/** What a key's server answered for it, or the failure of that server. */
export type Outcome<A> = { value: A } | { error: unknown }

/** What the routes use of their backend. */
export interface RoutesDeps {
  keyMapper: KeyMapper
  pool: ServerPool
  generations: Generations
  /** True once the backend is closed: every operation then rejects with `CacheClosedError`. */
  closed(): boolean
  /** Counts a failure of `operation` on `key` (a failed generation read). */
  countError(operation: string, error: unknown, key: string): void
}

/**
 * Where a user key lives: the server the ketama ring places it on, and its memcached key in that
 * server's current namespace generation.
 */
export class Routes {
  /** One server: every key lives on it (no placement key is built or hashed). */
  private readonly single: boolean

  constructor(private readonly deps: RoutesDeps) {
    this.single = deps.pool.names.length === 1
  }

  /** The index of the server that holds `key`. */
  serverOf(key: string): number {
    return this.deps.pool.serverOf(this.placementKey(this.deps.keyMapper.suffix(key)))
  }

  /**
   * Runs `run` with the server index and memcached key of a user key, in the namespace's current
   * generation. The generation is read by a request written together with the operation's (and
   * with those of every other operation of the same tick, which share it), on the same
   * connection: memcached answers them in order, so the operation costs no extra round trip and
   * sees any `clear()` that finished before it started. If the generation changed since this
   * process last saw it, what `run` did under the old one (a read, or a write nobody will read
   * again) is dropped and it runs again. Within `generationTtl` of the last read, the copy is
   * trusted instead, except for @cache's own keys (invalidation state, locks), which are always
   * checked.
   */
  withKey<R>(key: string, operation: string, run: (index: number, mkey: string) => Promise<R>): Promise<R> {
    return new Promise((resolve, reject) =>
      this.withKeyNow<R>(
        key,
        operation,
        (index, mkey, done) => doneWhenSettled(() => run(index, mkey), done),
        (error, result) => (error === undefined ? resolve(result as R) : reject(error)),
      ),
    )
  }

  /**
   * {@link withKey} with callbacks: `run` calls its `done` once, and `done` is called once with
   * the outcome (possibly before this returns: a closed backend, a key that is not a string).
   * One round trip's work (get, set, delete) then costs one promise, the caller's.
   */
  withKeyNow<R>(
    key: string,
    operation: string,
    run: (index: number, mkey: string, done: Done<R>) => void,
    done: Done<R>,
  ): void {
    if (this.deps.closed()) {
      done(new CacheClosedError('memcached'))
      return
    }
    let suffix: string
    try {
      suffix = this.deps.keyMapper.suffix(key)
    } catch (error) {
      done(error)
      return
    }
    const index = this.single ? 0 : this.deps.pool.serverOf(this.placementKey(suffix))
    this.deps.generations.runNow(
      index,
      operation,
      isInternalKey(key),
      (error) => this.deps.countError(operation, error, key),
      (generation, ran) => run(index, this.deps.keyMapper.key(generation, suffix), ran),
      done,
    )
  }

  /**
   * Runs `run` once per server, all at once, with the positions in `keys` of the keys it holds
   * and their memcached keys in its current generation (read as {@link withKey} reads it, once
   * for the server). Per key: what `run` answered at its position, or the failure of its server.
   */
  async perServer<A>(
    keys: readonly string[],
    operation: string,
    run: (index: number, mkeys: string[], positions: number[], serverKeys: string[]) => Promise<A[]>,
  ): Promise<Outcome<A>[]> {
    if (this.deps.closed()) throw new CacheClosedError('memcached')
    const outcomes: Outcome<A>[] = new Array(keys.length)
    const suffixes = keys.map((key) => this.deps.keyMapper.suffix(key))
    const groups = new Map<number, number[]>()
    for (let i = 0; i < keys.length; i++) {
      const index = this.deps.pool.serverOf(this.placementKey(suffixes[i]!))
      const group = groups.get(index)
      if (group === undefined) groups.set(index, [i])
      else group.push(i)
    }
    const perServer = [...groups].map(async ([index, positions]) => {
      const serverKeys = positions.map((i) => keys[i]!)
      try {
        const answers = await this.deps.generations.run(
          index,
          operation,
          serverKeys.some(isInternalKey),
          (error) => {
            for (const key of serverKeys) this.deps.countError(operation, error, key)
          },
          (generation) =>
            run(
              index,
              positions.map((i) => this.deps.keyMapper.key(generation, suffixes[i]!)),
              positions,
              serverKeys,
            ),
        )
        for (let j = 0; j < positions.length; j++) outcomes[positions[j]!] = { value: answers[j] as A }
      } catch (error) {
        for (const i of positions) outcomes[i] = { error }
      }
    })
    await Promise.all(perServer)
    return outcomes
  }

  /**
   * What a key is placed by: `<namespace>:<key part>` (the generation, which differs per server,
   * is left out), hashed by the ketama ring.
   */
  private placementKey(suffix: string): string {
    return `${this.deps.keyMapper.namespace}:${suffix}`
  }
}
