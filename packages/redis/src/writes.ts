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
 * its caller and a server that does not answer times out each caller. A set's latency runs
 * from its tick's first send (one clock read per tick, see {@link Connection.tickTime}).
 *
 * One node or Sentinel only (a cluster writes to one socket per master), and not with
 * `nearCache` or `replicas` (those send each set their own way): see {@link Writes.applies}.
 */
export class Writes {
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
    connection.corkTick()
    const sentAt = connection.tickTime()
    connection.started()
    return connection.timed(this.client.call('set', ...args), 'set').then(
      (reply) => {
        connection.finished()
        this.observer.latency(performance.now() - sentAt)
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
}
