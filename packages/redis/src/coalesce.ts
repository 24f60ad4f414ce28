import type { CacheObserver } from '@cache/core/backend'
import { type Redis, ReplyError } from 'ioredis'
import type { Connection } from './connection.js'
import { unexpectedReply } from './errors.js'
import { GET_EACH } from './scripts.js'

/*
 * A batch is a script so that one command carries many keys, each with its own outcome: `pcall`
 * puts a key's error (WRONGTYPE) in its place of the reply, where `MGET` would answer a
 * WRONGTYPE key with nil (a miss). They go as EVAL, never EVALSHA:
 * after a NOSCRIPT (a restarted server) the script would be sent again behind commands issued
 * later, and a get could read a set called after it.
 */

/**
 * Most operations one batch holds: a tick with more sends several batches. Bounds the size of
 * one script call (Lua unpacks its keys onto a stack of at most 8000 slots).
 */
const MAX_BATCH = 512

/** A get waiting for the end of its tick. */
interface Waiting {
  k: string
  key: string
  resolve(value: unknown): void
  reject(error: unknown): void
}

/** What the backend does with one operation: the path every call took before batching. */
export interface SendOne {
  /** Resolves with what `get` returns: the value decoded, or undefined on a miss. */
  get(k: string, key: string): Promise<unknown>
  /** A stored value (null: a miss) turned into what `get` returns, the hit or miss counted. */
  read(stored: Buffer | null, key: string): unknown
}

/**
 * Sends the gets a process issues in one tick as one round trip: the first get of a tick goes out
 * at once, alone, as it always did (a lone call pays nothing more than scheduling the end of its
 * tick); gets that follow it in the same tick wait for the end of the tick and go out together as
 * one script (one command, one timeout).
 *
 * Order is kept: the gets waiting are sent as soon as any other operation comes after them
 * (through {@link flush}), so a get then a set of one key in one tick reads the value from before
 * the set. Every call keeps its own outcome: its value, its hit or miss, its own error (one key's
 * WRONGTYPE fails only its caller); a failure of the whole batch (timeout, dropped link) fails
 * each of its callers with the error a lone call would get.
 */
export class Coalescer {
  /** A tick is under way whose first call went out: later calls of the tick wait. */
  private open = false
  private waiting: Waiting[] = []
  /**
   * The server refused the script itself (an ACL without EVAL): every get goes alone from then on,
   * as with `coalesce: false`.
   */
  private refused = false

  constructor(
    private readonly client: Redis,
    private readonly connection: Connection,
    private readonly observer: CacheObserver,
    private readonly one: SendOne,
  ) {
    // The end of the tick is the connection's (one callback per tick for the gets and the sets).
    connection.atTickEnd = this.endTick
  }

  /** The value of `k`, or undefined when the caller should send the get itself (first of its tick). */
  get(k: string, key: string): Promise<unknown> | undefined {
    if (this.refused) return undefined
    if (!this.open) {
      this.open = true
      // Opens the connection's tick if no command did yet: its end runs endTick.
      this.connection.corkTick()
      return undefined
    }
    return new Promise((resolve, reject) => {
      if (this.waiting.push({ k, key, resolve, reject }) >= MAX_BATCH) this.flush()
    })
  }

  /** Sends the gets waiting now; before any other command, so that commands go out in call order. */
  flush(): void {
    const batch = this.waiting
    if (batch.length === 0) return
    this.waiting = []
    if (batch.length === 1) {
      const w = batch[0]!
      this.one.get(w.k, w.key).then(w.resolve, w.reject)
    } else this.sendGets(batch)
  }

  private readonly endTick = (): void => {
    if (!this.open) return
    this.flush()
    this.open = false
  }

  private sendGets(batch: Waiting[]): void {
    const keys = batch.map((w) => w.k)
    const start = performance.now()
    // Keys go as arguments, not declared: the server checks a user's key patterns (an ACL) when
    // the script reads each key, so one key it refuses fails that get alone. Declared, it would
    // refuse the whole batch, and sending the gets again would put them behind later calls.
    const reply = this.client.callBuffer('eval', GET_EACH, 0, ...keys) as Promise<(Buffer | null | Error)[]>
    const answered = this.connection.timed(reply, 'get').then(
      (values) => {
        this.answered(batch.length, start)
        // Not a list (QUEUED: the client is inside MULTI): no key's value is known.
        if (!Array.isArray(values)) {
          for (const w of batch) w.reject(unexpectedReply(values, 'get', w.key, 'a list of values'))
          return
        }
        for (let i = 0; i < batch.length; i++) {
          const w = batch[i]!
          const value = values[i]
          if (value instanceof Error) {
            this.fail(w, 'get', refusedKey(value))
            continue
          }
          try {
            w.resolve(this.one.read(value ?? null, w.key))
          } catch (error) {
            w.reject(error)
          }
        }
      },
      (error) => {
        // The script itself refused (NOPERM: this user may not run EVAL; a server that wants a
        // script's keys declared, as Dragonfly does by default). Sending these gets again now
        // would put them behind calls made after them (a get would read a set called later in
        // its tick): they fail, and the gets of later ticks go alone.
        const message = (error as Error | undefined)?.message ?? ''
        if (!/^NOPERM\b|undeclared key/i.test(message)) return this.failAll(batch, 'get', error)
        this.refused = true
        const refused = new ReplyError(
          `${message} (the gets of one tick go as one EVAL: set coalesce: false)`,
        )
        this.failAll(batch, 'get', refused)
      },
    )
    void this.connection.track(answered)
  }

  /** One clock read for the batch; each call counts as one operation of that latency. */
  private answered(count: number, start: number): void {
    const ms = performance.now() - start
    for (let i = 0; i < count; i++) this.observer.latency(ms)
    this.connection.answered()
  }

  private failAll(batch: Waiting[], operation: string, error: unknown): void {
    for (const w of batch) this.fail(w, operation, error)
  }

  /**
   * Rejects one waiting get with the error a lone call would get. Whatever reporting it does
   * (events, the logger) throws, it rejects with that instead: the other gets of the batch are
   * still settled after it.
   */
  private fail(w: Waiting, operation: string, error: unknown): void {
    let failure: unknown
    try {
      failure = this.connection.failed(operation, error, w.key)
    } catch (thrown) {
      failure = thrown
    }
    w.reject(failure)
  }
}

/**
 * A key a script may not read answers with the script's wording ("ERR The user executing the
 * script can't access …"): given the NOPERM code a lone GET of it gets.
 */
function refusedKey(error: Error): Error {
  const message = error.message
  if (!/^(ERR )?The user executing the script can't/.test(message)) return error
  return new ReplyError(`NOPERM ${message.replace(/^ERR /, '')}`) as Error
}
