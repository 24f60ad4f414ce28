import { CacheNotANumberError, CacheTimeoutError } from '@cache/core'
import { addToCounter, CONFLICT, KeyedQueue, retryConflicts, withTimeout } from '@cache/core/backend'
import { integerReply } from './errors.js'
import {
  COMPARE_AND_SET_ONCE,
  type ExactlyOnce,
  INCR_ONCE,
  INCR_REPLACE_ONCE,
  REFUSED,
} from './exactly-once.js'
import type { BackendParts } from './parts.js'
import { COMPARE_AND_SET, INCR, INCR_REPLACE, sha1 } from './scripts.js'

/**
 * `incr` and read-modify-write (`atomicUpdate`) on one Redis key, each write one Lua script
 * (exactly once, see exactly-once.ts, unless `exactlyOnceWindow: false`).
 */
export class Counters {
  private readonly queue = new KeyedQueue()
  /** Per key with `atomicUpdate` calls under way: how many, and when the server last answered one. */
  private readonly lines = new Map<string, Line>()

  constructor(
    private readonly parts: BackendParts,
    /** `atomicUpdate` attempts before `CacheConflictError`. */
    private readonly maxAttempts: number,
    /** Settles calls whose reply was lost; undefined with `exactlyOnceWindow: false`. */
    private readonly once: ExactlyOnce | undefined,
    /** Sends the gets waiting for the end of their tick, so that commands go out in call order. */
    private readonly flush: () => void,
  ) {}

  /**
   * Adds `by` to the counter `k` (`key` to the caller); refused when past the safe integers. A
   * counter in its own form (a plain decimal integer) is one script; anything else the script
   * hands back, and it is decoded as `get` would read it, added to by core's rule
   * (`addToCounter`), and written by the script only if the key still holds those bytes —
   * retried on what it holds instead, up to `maxAttempts` times.
   */
  async incr(key: string, k: string, by: number, ms: number | undefined): Promise<number> {
    const { near } = this.parts
    near?.forget(k)
    let reply = await this.runIncr(key, k, [by, ms ?? ''])
    if (Array.isArray(reply)) {
      let current = reply[0] as Buffer
      reply = await retryConflicts(key, { maxAttempts: this.maxAttempts, pause: () => 0 }, async () => {
        const next = addToCounter(key, this.decodeCounter(key, current), by)
        this.flush()
        const written = await this.runIncr(key, k, [by, ms ?? '', sha1(current), String(next)], true)
        if (!Array.isArray(written)) return written
        current = written[0] as Buffer
        return CONFLICT
      })
    }
    near?.forget(k)
    if (reply !== null) reply = integerReply(reply, 'incr', key)
    // null: the script refused, writing nothing, as the result would be past the safe integers.
    if (!Number.isSafeInteger(reply))
      throw new RangeError(
        `incr: ${by} added to the counter "${key}" is not a safe integer (past ±Number.MAX_SAFE_INTEGER); the counter is unchanged`,
      )
    this.parts.observer.set(key)
    return reply as number
  }

  /**
   * One run of an incr script (INCR_STEP, or INCR_REPLACE_STEP with `replace`): the new value,
   * null when refused, or `[current]` when the key holds no counter in its own form.
   */
  private runIncr(key: string, k: string, args: (string | number)[], replace = false): Promise<unknown> {
    const once = this.once
    if (once !== undefined)
      return once.run('incr', key, k, replace ? INCR_REPLACE_ONCE : INCR_ONCE, args, (recorded) =>
        recorded === REFUSED ? null : Number(recorded),
      )
    const { client, connection, replication } = this.parts
    const script = replace ? INCR_REPLACE : INCR
    return connection.send('incr', key, () => script.run(client, k, args, replication, 'incr'))
  }

  /** What `get` reads from `bytes`; bytes it cannot read hold no integer either. */
  private decodeCounter(key: string, bytes: Buffer): unknown {
    try {
      return this.parts.format.codec.decode(bytes)
    } catch {
      throw new CacheNotANumberError(key)
    }
  }

  /**
   * Read, run `fn`, then write only if the key still holds what was read (a Lua compare-and-set);
   * on conflict `fn` runs again with the newer value, up to `maxAttempts` times. Calls for one key
   * in this process wait for each other first, so only other processes can cause a conflict.
   */
  atomicUpdate<T>(
    key: string,
    k: string,
    fn: (current: T | undefined) => T | Promise<T>,
    ms: number | undefined,
  ): Promise<T> {
    const { client, connection, near, format } = this.parts
    near?.forget(k)
    // The call's deadline runs from now, not from its turn: `timeout` without an answer from
    // the server for this key since the call (or since the latest answer) fails it. Calls
    // queued on a server that does not answer fail together, not the Nth after N × `timeout`;
    // a long queue the server keeps answering is not cut short.
    const line = this.line(k)
    line.calls++
    const calledAt = performance.now()
    const deadline = () => Math.max(calledAt, line.answeredAt) + connection.timeoutMs
    let turn = false
    let expired = false
    const queued = this.queue.run(k, async () => {
      turn = true
      // Its time ran out while it waited: it failed (reported) without sending anything.
      if (expired) return undefined as T
      const left = deadline() - performance.now()
      if (left <= 0) throw this.waitedTooLong(key, 'waiting behind earlier calls for the key')
      this.flush()
      // The read gets what is left; its failure is reported once, by whichever comes first.
      let late = false
      const read = connection.run('atomicUpdate', key, async () => {
        const start = performance.now()
        try {
          const bytes = await connection.timed(client.getBuffer(k), 'atomicUpdate')
          this.parts.observer.latency(performance.now() - start)
          connection.answered()
          return bytes
        } catch (error) {
          throw late ? error : connection.failed('atomicUpdate', error, key)
        }
      })
      let current = await withTimeout(read, left, () => {
        late = true
        return this.waitedTooLong(key, 'its read, after waiting behind earlier calls for the key')
      })
      line.answeredAt = performance.now()
      // A conflict's reply holds the newer value: the next attempt starts from it at once, without
      // a read and without a pause (a pause would hand the key to writers that start fresh, and
      // starve this one).
      return retryConflicts(key, { maxAttempts: this.maxAttempts, pause: () => 0 }, async () => {
        const next = await fn(current === null ? undefined : (format.codec.decode(current) as T))
        const expected = current === null ? '' : sha1(current)
        const reply = await this.compareAndSet(key, k, [expected, format.encode(next), ms ?? ''])
        line.answeredAt = performance.now()
        if (reply[0] !== 1) {
          current = reply[1] ?? null
          return CONFLICT
        }
        near?.forget(k)
        this.parts.observer.set(key)
        return next
      })
    })
    return new Promise<T>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined
      const check = () => {
        if (turn) return
        const left = deadline() - performance.now()
        if (left > 0) {
          timer = setTimeout(check, left)
          return
        }
        expired = true
        reject(this.waitedTooLong(key, 'waiting behind earlier calls for the key'))
      }
      timer = setTimeout(check, connection.timeoutMs)
      const done = () => {
        clearTimeout(timer)
        if (--line.calls === 0) this.lines.delete(k)
      }
      queued.then(
        (value) => {
          done()
          if (!expired) resolve(value)
        },
        (error: unknown) => {
          done()
          if (!expired) reject(error)
        },
      )
    })
  }

  /** The calls of `atomicUpdate` on `k` under way, and when the server last answered one of them. */
  private line(k: string): Line {
    let line = this.lines.get(k)
    if (line === undefined) {
      line = { calls: 0, answeredAt: Number.NEGATIVE_INFINITY }
      this.lines.set(k, line)
    }
    return line
  }

  /**
   * The failure of an `atomicUpdate` whose `timeout` (from the call) ran out before it sent its
   * write: behind earlier calls for the key, or waiting for its read. Counted as a timeout.
   */
  private waitedTooLong(key: string, what: string): Error {
    const { connection } = this.parts
    const error = new CacheTimeoutError(
      'redis',
      `atomicUpdate on ${connection.address} (${what})`,
      connection.timeoutMs,
      { server: connection.address },
    )
    return connection.failed('atomicUpdate', error, key)
  }

  /** One compare-and-set attempt of `atomicUpdate`: `[1]` when written, else `[0, current?]`. */
  private async compareAndSet(
    key: string,
    k: string,
    args: (string | Buffer | number)[],
  ): Promise<[number, Buffer?]> {
    this.flush()
    if (this.once !== undefined)
      return this.once.run('atomicUpdate', key, k, COMPARE_AND_SET_ONCE, args, () => [1] as [number])
    const { client, connection, replication } = this.parts
    const script = () => COMPARE_AND_SET.run(client, k, args, replication, 'atomicUpdate')
    return (await connection.send('atomicUpdate', key, script)) as [number, Buffer?]
  }
}

/** The `atomicUpdate` calls of one key under way (see {@link Counters.atomicUpdate}). */
interface Line {
  calls: number
  /** performance.now() of the latest reply to one of them. */
  answeredAt: number
}
