import { CacheUnavailableError } from '@cache/core'
import { type Cluster, Redis } from 'ioredis'

export const SLOTS = 16384
/** Rounds of survey → scan → survey before `clear()` gives up on a cluster that keeps changing. */
const ROUNDS = 3

/** What one node says about itself in `CLUSTER NODES` (its `myself` line). */
export interface NodeView {
  /** `host:port` as the client reaches it (natMap applied). */
  address: string
  master: boolean
  /** Slots it serves, as `[from, to]` ranges. */
  slots: [number, number][]
  /** `slot:node id` of each slot it is moving out (`MIGRATING`) or in (`IMPORTING`). */
  migrating: string[]
  importing: string[]
}

export interface Surveyed extends NodeView {
  connection: Redis
}

/** The masters that answered, and a text that changes whenever a master, slot or migration does. */
export interface Survey {
  masters: Surveyed[]
  signature: string
}

/** How the sweep waits: each command bounded by the operation timeout of `ms`. */
export interface Limits {
  timed<T>(command: Promise<T>): Promise<T>
  ms: number
  /**
   * Called before each page of a listing: throws when it may not go on (`keys()` after
   * `close()`). A `clear()` under way is let finish and has none.
   */
  open?(): void
}

/**
 * `clear()` on a Redis Cluster: removes the keys matching `pattern` from every node that holds
 * any, as the nodes themselves say — not as the client's slot map (which may predate a failover)
 * or one node's view of the others (which may be stale) says.
 *
 * Each round asks every node it can find (the client's, and every node any of them lists) for its
 * own role, slots and slot migrations, and throws unless the masters that answer serve all 16384
 * slots. It scans every master — also one that serves no slot yet but imports one (a scale-out) —
 * the importing masters last, so that a key moved while its source was scanned is found at its
 * destination. Then it asks again: the clear is done when nothing changed in between; otherwise
 * it runs another round (three at most, then throws `CacheUnavailableError`).
 */
export async function clearCluster(
  cluster: Cluster,
  pattern: string,
  scanCount: number,
  limits: Limits,
  operation = 'clear',
): Promise<void> {
  const opened = new Map<string, Redis>()
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const before = await survey(cluster, opened, limits, operation)
      let redirected = false
      const scan = async (node: Surveyed) => {
        if (await scanNode(node, pattern, scanCount, limits)) redirected = true
      }
      await Promise.all(before.masters.filter((node) => node.importing.length === 0).map(scan))
      await Promise.all(before.masters.filter((node) => node.importing.length > 0).map(scan))
      const after = await survey(cluster, opened, limits, operation)
      if (!redirected && after.signature === before.signature) return
    }
    throw unavailable(operation, 'the cluster kept changing masters or slots; call it again')
  } finally {
    for (const connection of opened.values()) connection.disconnect()
  }
}

/**
 * Removes the keys matching `pattern` from one master. True when a key could not be removed there
 * because its slot moved meanwhile (`MOVED`, `TRYAGAIN`); an `ASK` means the key went on to the
 * importing master, which is scanned after.
 */
async function scanNode(node: Surveyed, pattern: string, count: number, { timed }: Limits): Promise<boolean> {
  const { connection } = node
  // A master answers MOVED for a slot it imports, unless the command follows an ASKING.
  const asking = node.importing.length > 0
  let redirected = false
  let cursor = '0'
  do {
    const [next, keys] = await timed(connection.scanBuffer(cursor, 'MATCH', pattern, 'COUNT', count))
    cursor = next.toString()
    if (keys.length === 0) continue
    // Keys of one node may still hash to different slots: one UNLINK each, pipelined.
    const pipeline = connection.pipeline()
    for (const key of keys) {
      if (asking) pipeline.call('ASKING')
      pipeline.unlink(key)
    }
    for (const [error] of (await timed(pipeline.exec())) ?? []) {
      if (!error) continue
      const message = String(error.message)
      if (message.startsWith('ASK')) continue
      if (message.startsWith('MOVED') || message.startsWith('TRYAGAIN')) redirected = true
      else throw error
    }
  } while (cursor !== '0')
  return redirected
}

/**
 * Asks every node it can reach for its own view; throws unless the masters serve every slot.
 * Connections it opens go into `opened`, which the caller disconnects.
 */
export async function survey(
  cluster: Cluster,
  opened: Map<string, Redis>,
  limits: Limits,
  operation: string,
): Promise<Survey> {
  const known = new Map<string, Redis>()
  for (const node of cluster.nodes('all')) known.set(`${node.options.host}:${node.options.port}`, node)
  const views = new Map<string, Surveyed | undefined>()
  let wave = [...known.keys()]
  while (wave.length > 0) {
    for (const address of wave) views.set(address, undefined)
    const answers = await Promise.all(
      wave.map(async (address) => {
        // A connection of its own to every node: the client's may predate a failover (a demoted
        // master drops its clients, and the client's connection would retry for seconds).
        const connection = await usable(connect(cluster, address, opened), limits.ms)
        if (connection === undefined) return undefined
        const text = await limits.timed(connection.cluster('NODES') as Promise<string>).catch(nothing)
        return text === undefined ? undefined : { address, connection, text }
      }),
    )
    const next = new Set<string>()
    for (const answer of answers) {
      if (answer === undefined) continue
      const { view, listed } = parseClusterNodes(answer.text, answer.address, (host, port) =>
        mapped(cluster, host, port),
      )
      if (view !== undefined) views.set(answer.address, { ...view, connection: answer.connection })
      for (const address of listed) if (!views.has(address)) next.add(address)
    }
    wave = [...next]
  }
  const masters = [...views.values()].filter((view): view is Surveyed => view?.master === true)
  const covered = new Uint8Array(SLOTS)
  for (const master of masters) for (const [from, to] of master.slots) covered.fill(1, from, to + 1)
  const served = covered.reduce((sum, bit) => sum + bit, 0)
  if (served !== SLOTS) {
    throw unavailable(
      operation,
      `the masters that answer serve ${served} of ${SLOTS} slots (CLUSTERDOWN, or a master is unreachable)`,
    )
  }
  const signature = masters
    .map((m) => `${m.address}|${m.slots.join(',')}|${m.migrating.join(',')}|${m.importing.join(',')}`)
    .sort()
    .join('\n')
  return { masters, signature }
}

/**
 * What a `CLUSTER NODES` reply says: the node's own line (role, slots, migrations), and the
 * address of every node it lists that has one (not `noaddr`, not in `handshake`), through `map`.
 */
export function parseClusterNodes(
  text: string,
  address: string,
  map: (host: string, port: number) => string,
): { view: NodeView | undefined; listed: string[] } {
  let view: NodeView | undefined
  const listed: string[] = []
  for (const line of text.split('\n')) {
    const fields = line.trim().split(' ')
    if (fields.length < 8) continue
    const flags = fields[2]!.split(',')
    const hostPort = fields[1]!.split('@')[0]!
    const colon = hostPort.lastIndexOf(':')
    const host = hostPort.slice(0, colon)
    const port = Number(hostPort.slice(colon + 1))
    if (host !== '' && port > 0 && !flags.includes('noaddr') && !flags.includes('handshake'))
      listed.push(map(host, port))
    if (!flags.includes('myself')) continue
    view = { address, master: flags.includes('master'), slots: [], migrating: [], importing: [] }
    for (const slot of fields.slice(8)) {
      // `[slot->-id]`: moving out to id; `[slot-<-id]`: moving in from id.
      const moving = /^\[(\d+)-([<>])-([0-9a-f]+)\]$/.exec(slot)
      if (moving) (moving[2] === '>' ? view.migrating : view.importing).push(`${moving[1]}:${moving[3]}`)
      else {
        const [from, to = from] = slot.split('-').map(Number)
        if (Number.isInteger(from) && Number.isInteger(to)) view.slots.push([from!, to!])
      }
    }
  }
  return { view, listed }
}

/** A connection of our own to a node the client has none to (e.g. a master that serves no slot). */
function connect(cluster: Cluster, address: string, opened: Map<string, Redis>): Redis {
  let connection = opened.get(address)
  if (connection === undefined) {
    const colon = address.lastIndexOf(':')
    connection = new Redis({
      ...cluster.options.redisOptions,
      host: address.slice(0, colon),
      port: Number(address.slice(colon + 1)),
      lazyConnect: true,
      retryStrategy: () => null,
      connectionName: 'cache-clear',
    })
    connection.on('error', nothing)
    opened.set(address, connection)
  }
  return connection
}

/** The connection once it is ready (connecting it if needed, at most `ms`), else undefined. */
async function usable(connection: Redis, ms: number): Promise<Redis | undefined> {
  if (connection.status === 'wait') connection.connect().catch(nothing)
  if (connection.status === 'connecting' || connection.status === 'connect') {
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer)
        connection.off('ready', done).off('close', done).off('end', done)
        resolve()
      }
      const timer = setTimeout(done, ms)
      connection.once('ready', done).once('close', done).once('end', done)
    })
  }
  return connection.status === 'ready' ? connection : undefined
}

/** `host:port` as the client reaches it: through `natMap` when one is set (as ioredis does). */
function mapped(cluster: Cluster, host: string, port: number): string {
  const key = `${host}:${port}`
  const natMap = cluster.options.natMap
  const target = typeof natMap === 'function' ? natMap(key) : natMap?.[key]
  return target ? `${target.host}:${target.port}` : key
}

function nothing(): undefined {
  return undefined
}

export function unavailable(operation: string, reason: string): CacheUnavailableError {
  return new CacheUnavailableError('redis', `redis: ${operation} failed: ${reason}`)
}
