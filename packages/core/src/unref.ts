/*
 * A cache must not keep a process alive once its work is done: a script that never calls
 * `close()` should still exit. Node keeps running while a socket or a timer is "ref'd"; the
 * clients @cache opens are made not to count. A command waiting for its reply still holds the
 * process, by its timeout timer, so work in flight always completes.
 */

/** What {@link unrefRedisClient} uses of an ioredis `Redis` or `Cluster` client (some of it private there). */
interface IoredisLike {
  on(event: string, listener: (...args: any[]) => void): unknown
  readonly stream?: { unref?(): unknown }
  readonly reconnectTimeout?: { unref?(): unknown } | null
  /** A cluster's node connections. */
  nodes?(role: 'all'): IoredisLike[]
}

const DONE = Symbol.for('@cache/core:unref')

/**
 * Makes an ioredis client (`Redis` or `Cluster`, and every node connection a cluster opens) not
 * keep the process alive: its sockets and reconnection timers are unref'd as they are created.
 * For clients @cache creates; a client you pass in is yours, and left as it is.
 */
export function unrefRedisClient(redis: {
  on(event: string, listener: (...args: any[]) => void): unknown
}): void {
  const client = redis as IoredisLike
  const marked = client as IoredisLike & { [DONE]?: true }
  if (marked[DONE]) return
  marked[DONE] = true
  const unrefStream = () => void client.stream?.unref?.()
  // The socket of an attempt is created just after `connecting` is announced.
  client.on('connecting', () => void setImmediate(unrefStream).unref())
  client.on('connect', unrefStream)
  // The timer of the next attempt is set by the time `reconnecting` is announced.
  client.on('reconnecting', () => void client.reconnectTimeout?.unref?.())
  // A cluster's connection to each node: those it has (the seed nodes), and those it adds.
  client.on('+node', (node: IoredisLike) => unrefRedisClient(node))
  if (typeof client.nodes === 'function') for (const node of client.nodes('all')) unrefRedisClient(node)
  unrefStream()
}
