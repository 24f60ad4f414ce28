import { CacheUnavailableError } from '@cache/core'
import calculateSlot from 'cluster-key-slot'
import type { Cluster, Redis } from 'ioredis'

/** How often the slot map is asked for while a master is unreachable, to follow a failover. */
const REFRESH_WHILE_DEGRADED_MS = 250

/**
 * What one backend knows about a Redis Cluster beyond ioredis' slot cache: which masters are
 * connected, which are connecting for the first time (commands wait for those, at most the
 * operation timeout) and which are down (commands for their slots fail at once). While a master
 * is down the slot map is refreshed every 250 ms, so a promoted replica is used as soon as the
 * cluster has one; new masters are connected as soon as they appear, not on their first command.
 */
export class ClusterTopology {
  /** Masters whose first connection is under way. */
  private readonly connecting = new Set<Redis>()
  private readonly watched = new WeakSet<Redis>()
  private degraded = false
  private refreshTimer: NodeJS.Timeout | undefined
  private closed = false

  constructor(
    private readonly cluster: Cluster,
    private readonly timeoutMs: number,
  ) {
    cluster.on('refresh', this.onRefresh)
    cluster.on('ready', this.onRefresh)
    cluster.on('-node', this.check)
  }

  /** True when every master is connected: commands need no check before they are sent. */
  get settled(): boolean {
    return this.connecting.size === 0 && !this.degraded
  }

  /** Waits (at most `ms`) for masters that are connecting for the first time. */
  async connected(ms = this.timeoutMs): Promise<boolean> {
    if (this.connecting.size === 0) return true
    return waitFor(ms, (done) => {
      const check = () => {
        if (this.connecting.size === 0) done()
      }
      const nodes = [...this.connecting]
      for (const node of nodes) node.on('ready', check).on('close', check).on('end', check)
      return () => {
        for (const node of nodes) node.off('ready', check).off('close', check).off('end', check)
      }
    })
  }

  /** Waits (at most `ms`) until every master is connected: no first connection under way, none down. */
  async healthy(ms: number): Promise<boolean> {
    const deadline = Date.now() + ms
    while (!this.settled && !this.closed) {
      const left = deadline - Date.now()
      if (left <= 0) return false
      if (this.connecting.size > 0) await this.connected(left)
      else await delay(Math.min(left, 20))
    }
    return this.settled && !this.closed
  }

  /** The connection to the master that serves `key` (a full Redis key), if it is known. */
  masterOf(key: string): Redis | undefined {
    const owner = this.cluster.slots[calculateSlot(key)]?.[0]
    if (owner === undefined) return undefined
    return this.cluster.nodes('master').find((node) => nodeKey(node) === owner)
  }

  /**
   * Fails at once, without sending anything, when the master serving `key` is known to be down:
   * the caller then knows the command did not run. Waits first for a master's first connection.
   */
  async assertReachable(operation: string, key: string, userKey: string): Promise<void> {
    if (this.settled) return
    await this.connected()
    const master = this.masterOf(key)
    if (master?.status === 'ready') return
    const where = master ? nodeKey(master) : `slot ${calculateSlot(key)}`
    throw new CacheUnavailableError(
      'redis',
      `redis: ${operation} failed: the master of "${userKey}" (${where}) is down`,
    )
  }

  /** Waits (at most `ms`) until the master serving `key` is connected, across a failover. */
  masterReady(key: string, ms: number): Promise<Redis | undefined> {
    const deadline = Date.now() + ms
    const poll = async (): Promise<Redis | undefined> => {
      for (;;) {
        const master = this.masterOf(key)
        if (master?.status === 'ready' || this.closed) return master?.status === 'ready' ? master : undefined
        if (master?.status === 'wait') master.connect().catch(noop)
        const left = deadline - Date.now()
        if (left <= 0) return undefined
        await delay(Math.min(left, 20))
      }
    }
    return poll()
  }

  /** Stops the refresh timer; the cluster client itself is closed by its owner. */
  close(): void {
    this.closed = true
    clearTimeout(this.refreshTimer)
    this.cluster.off('refresh', this.onRefresh).off('ready', this.onRefresh).off('-node', this.check)
  }

  private readonly onRefresh = (): void => {
    // While ioredis connects, its ready check must find its node in `wait` (it refuses a node
    // that is connecting): masters are connected once the cluster is ready.
    if (this.cluster.status !== 'ready') return
    for (const node of this.cluster.nodes('master')) {
      this.watch(node)
      if (node.status === 'wait') {
        this.connecting.add(node)
        node.connect().catch(noop)
      }
    }
    this.check()
  }

  private watch(node: Redis): void {
    if (this.watched.has(node)) return
    this.watched.add(node)
    const settle = () => {
      this.connecting.delete(node)
      this.check()
    }
    node.on('ready', settle).on('close', settle).on('end', settle)
  }

  /** Recomputes `degraded`; while it holds, refreshes the slot map on a timer. */
  private readonly check = (): void => {
    if (this.closed) return
    const masters = this.cluster.nodes('master')
    this.degraded =
      this.cluster.status === 'ready' &&
      masters.some((node) => node.status !== 'ready' && !this.connecting.has(node))
    if (this.degraded && this.refreshTimer === undefined) {
      this.refreshTimer = setTimeout(() => {
        this.refreshTimer = undefined
        if (this.closed) return
        this.cluster.refreshSlotsCache(() => this.check())
      }, REFRESH_WHILE_DEGRADED_MS)
      this.refreshTimer.unref()
    }
  }
}

export function nodeKey(node: Redis): string {
  return `${node.options.host}:${node.options.port}`
}

/** Resolves true when `start`'s `done` is called, false after `ms`; `start` returns its cleanup. */
function waitFor(ms: number, start: (done: () => void) => () => void): Promise<boolean> {
  return new Promise((resolve) => {
    let cleanup: () => void = noop
    const timer = setTimeout(() => {
      cleanup()
      resolve(false)
    }, ms)
    cleanup = start(() => {
      clearTimeout(timer)
      cleanup()
      resolve(true)
    })
  })
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref())
}

function noop(): void {}
