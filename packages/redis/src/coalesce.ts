import type { CacheObserver } from '@cache/core'
import type { Redis } from 'ioredis'
import type { Connection } from './connection.js'

/*
 * Batches are scripts so that one command carries many keys, each with its own outcome: `pcall`
 * puts a key's error (WRONGTYPE, READONLY, OOM) in its place of the reply, where `MGET` would
 * answer a WRONGTYPE key with nil (a miss) and `MSET` has no TTL. They go as EVAL, never EVALSHA:
 * after a NOSCRIPT (a restarted server) the script would be sent again behind commands issued
 * later, and a get could read a set made after it.
 */

/** Each key's `GET`. */
const GET_EACH = `local values = {}
for i, key in ipairs(KEYS) do values[i] = redis.pcall('GET', key) end
return values`

/** Each key's `SET`; ARGV holds, per key, its value and its TTL in ms ('' for none). */
const SET_EACH = `local replies = {}
for i, key in ipairs(KEYS) do
  local ms = ARGV[2 * i]
  if ms == '' then replies[i] = redis.pcall('SET', key, ARGV[2 * i - 1])
  else replies[i] = redis.pcall('SET', key, ARGV[2 * i - 1], 'PX', ms) end
end
return replies`

/**
 * Most operations one batch holds: a tick with more sends several batches. Bounds the size of
 * one script call (Lua unpacks its keys onto a stack of at most 8000 slots).
 */
const MAX_BATCH = 512

/** A get or set waiting for the end of its tick. */
interface Waiting {
  k: string
  key: string
  bytes: string | Buffer | undefined
  ms: number | undefined
  resolve(value: unknown): void
  reject(error: unknown): void
}

/** What the backend does with one operation: the path every call took before batching. */
export interface SendOne {
  /** Resolves with what `get` returns: the value decoded, or undefined on a miss. */
  get(k: string, key: string): Promise<unknown>
  set(k: string, key: string, bytes: string | Buffer, ms: number | undefined): Promise<void>
  /** A stored value (null: a miss) turned into what `get` returns, the hit or miss counted. */
  read(stored: string | Buffer | null, k: string, key: string): unknown
}

/**
 * Sends the gets and the sets a process issues in one tick as one round trip: the first call of a
 * tick goes out alone at once, as it always did (a lone call pays nothing more than scheduling
 * the end of its tick); calls that follow it in the same tick wait for the end of the tick and go
 * out together: the gets as one script, the sets as one script (one command, one timeout each).
 *
 * Order is kept: a run of gets and a run of sets are sent as soon as a call of the other kind
 * (or any other operation, through {@link flush}) comes after them, so a set then a get of one
 * key in one tick reads what the set wrote. Every call keeps its own outcome: its value, its hit
 * or miss, its own error (one key's WRONGTYPE fails only its caller); a failure of the whole
 * batch (timeout, dropped link) fails each of its callers with the error a lone call would get.
 */
export class Coalescer {
  /** A tick is under way whose first call went out: later calls of the tick wait. */
  private open = false
  private kind: 'get' | 'set' = 'get'
  private waiting: Waiting[] = []

  constructor(
    private readonly client: Redis,
    private readonly connection: Connection,
    private readonly observer: CacheObserver,
    /** Values travel as strings (the default JSON serializer): replies are read as strings too. */
    private readonly text: boolean,
    private readonly one: SendOne,
  ) {}

  /** The value of `k`, or undefined when the caller should send the get itself (first of its tick). */
  get(k: string, key: string): Promise<unknown> | undefined {
    return this.enqueue('get', k, key, undefined, undefined)
  }

  /** Resolves once `k` is set, or undefined when the caller should send the set itself. */
  set(k: string, key: string, bytes: string | Buffer, ms: number | undefined): Promise<void> | undefined {
    return this.enqueue('set', k, key, bytes, ms) as Promise<void> | undefined
  }

  /** Sends the calls waiting now; before any other command, so that commands go out in call order. */
  flush(): void {
    const batch = this.waiting
    if (batch.length === 0) return
    this.waiting = []
    if (batch.length === 1) {
      const w = batch[0]!
      const sent = this.kind === 'get' ? this.one.get(w.k, w.key) : this.one.set(w.k, w.key, w.bytes!, w.ms)
      sent.then(w.resolve, w.reject)
    } else if (this.kind === 'get') this.sendGets(batch)
    else this.sendSets(batch)
  }

  private enqueue(
    kind: 'get' | 'set',
    k: string,
    key: string,
    bytes: string | Buffer | undefined,
    ms: number | undefined,
  ): Promise<unknown> | undefined {
    if (!this.open) {
      this.open = true
      process.nextTick(this.endTick)
      return undefined
    }
    if (this.kind !== kind) {
      this.flush()
      this.kind = kind
    }
    return new Promise((resolve, reject) => {
      if (this.waiting.push({ k, key, bytes, ms, resolve, reject }) >= MAX_BATCH) this.flush()
    })
  }

  private readonly endTick = (): void => {
    this.flush()
    this.open = false
  }

  private sendGets(batch: Waiting[]): void {
    const keys = batch.map((w) => w.k)
    const start = performance.now()
    const reply = (
      this.text
        ? this.client.call('eval', GET_EACH, keys.length, ...keys)
        : this.client.callBuffer('eval', GET_EACH, keys.length, ...keys)
    ) as Promise<(string | Buffer | null | Error)[]>
    this.connection.timed(reply, 'get').then(
      (values) => {
        this.answered(batch.length, start)
        for (let i = 0; i < batch.length; i++) {
          const w = batch[i]!
          const value = values[i]
          if (value instanceof Error) {
            w.reject(this.connection.failed('get', value, w.key))
            continue
          }
          try {
            w.resolve(this.one.read(value ?? null, w.k, w.key))
          } catch (error) {
            w.reject(error)
          }
        }
      },
      (error) => this.failAll(batch, 'get', error),
    )
  }

  private sendSets(batch: Waiting[]): void {
    const n = batch.length
    const args = new Array<string | Buffer | number>(2 + 3 * n)
    args[0] = SET_EACH
    args[1] = n
    for (let i = 0; i < n; i++) {
      const w = batch[i]!
      args[2 + i] = w.k
      args[2 + n + 2 * i] = w.bytes!
      args[3 + n + 2 * i] = w.ms ?? ''
    }
    const start = performance.now()
    const reply = this.client.call('eval', ...args) as Promise<unknown[]>
    this.connection.timed(reply, 'set').then(
      (results) => {
        this.answered(n, start)
        for (let i = 0; i < n; i++) {
          const w = batch[i]!
          const error = results[i]
          if (error instanceof Error) {
            this.reconnectOnError(error)
            w.reject(this.connection.failed('set', error, w.key))
          } else {
            this.observer.set(w.key)
            w.resolve(undefined)
          }
        }
      },
      (error) => this.failAll(batch, 'set', error),
    )
  }

  /** One clock read for the batch; each call counts as one operation of that latency. */
  private answered(count: number, start: number): void {
    const ms = performance.now() - start
    for (let i = 0; i < count; i++) this.observer.latency(ms)
    this.connection.answered()
  }

  /**
   * What ioredis does when a command's own reply is an error it is told to reconnect on (READONLY:
   * the master became a replica; reconnecting reaches the master Sentinel names now). An error
   * inside a script's reply does not reach that hook by itself.
   */
  private reconnectOnError(error: Error): void {
    const decide = this.client.options.reconnectOnError
    if (typeof decide !== 'function') return
    const verdict = decide(error)
    if ((verdict === true || verdict === 1 || verdict === 2) && this.client.status !== 'reconnecting')
      this.client.disconnect(true)
  }

  private failAll(batch: Waiting[], operation: string, error: unknown): void {
    for (const w of batch) w.reject(this.connection.failed(operation, error, w.key))
  }
}
