import type { CacheObserver } from '@cache/core/backend'
import type { Redis } from 'ioredis'
import type { Connection } from './connection.js'
import { assertStored } from './errors.js'

/**
 * Sends the sets a process issues in one tick in at most two socket writes, each still its own
 * `SET` command: the first goes out at once, the ones after it wait in the client's corked socket
 * until the end of the tick (see {@link Connection.corkTick}) and leave together, in call order.
 * Nothing else changes: each set has its own reply, its own error and
 * its own timeout (the client's `commandTimeout`), so one key's failure (a NOPERM) fails only
 * its caller and a server that does not answer times out each caller. Replies are read with one
 * clock read per tick that answers them: a set's latency is its tick's.
 *
 * One node or Sentinel only (a cluster writes to one socket per master), and not with
 * `nearCache` or `replicas` (those send each set their own way): see {@link Writes.applies}.
 */
export class Writes {
  /** When the current tick's first set was sent (performance.now()); NaN: no set this tick yet. */
  private sentAt = Number.NaN
  /** The clock read shared by the replies handled in one tick; NaN: not read yet this tick. */
  private repliedAt = Number.NaN

  constructor(
    private readonly client: Redis,
    private readonly connection: Connection,
    private readonly observer: CacheObserver,
  ) {}

  /**
   * One `SET` of `args`, sent in the caller's turn (corked until the end of the tick). Only while
   * the connection is not {@link Connection.blocked}: the caller checks.
   */
  set(key: string, args: (string | Buffer | number)[]): Promise<void> {
    const connection = this.connection
    if (Number.isNaN(this.sentAt)) this.openTick()
    const sentAt = this.sentAt
    connection.corkTick()
    connection.started()
    return connection.timed(this.client.call('set', ...args), 'set').then(
      (reply) => {
        connection.finished()
        this.observer.latency(this.replyTime() - sentAt)
        connection.answered()
        assertStored(reply, 'set', key)
        this.observer.set(key)
      },
      (error: unknown) => {
        connection.finished()
        throw connection.failed('set', error, key)
      },
    )
  }

  private openTick(): void {
    this.sentAt = performance.now()
    process.nextTick(this.endTick)
  }

  private readonly endTick = (): void => {
    this.sentAt = Number.NaN
  }

  /**
   * performance.now(), read once for all the replies handled in one run of callbacks: ioredis
   * resolves every reply of one socket read before their callbacks run, and a tick queued from
   * one of them runs only once they have all run.
   */
  private replyTime(): number {
    if (Number.isNaN(this.repliedAt)) {
      this.repliedAt = performance.now()
      process.nextTick(this.forgetReplyTime)
    }
    return this.repliedAt
  }

  private readonly forgetReplyTime = (): void => {
    this.repliedAt = Number.NaN
  }
}
