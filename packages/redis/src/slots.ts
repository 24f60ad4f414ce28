import calculateSlot from 'cluster-key-slot'
import type { Cluster, Redis } from 'ioredis'
import type { RedisClient } from './client.js'

/**
 * Positions of `keys` grouped first by the node that serves them, then by hash slot: one
 * pipeline per node (ioredis requires it) holding one multi-key command per slot (Redis
 * Cluster refuses CROSSSLOT commands). A slot whose owner is not known yet gets a group of
 * its own; ioredis follows the MOVED redirection.
 */
export function groupByNodeAndSlot(
  cluster: Cluster,
  keys: readonly string[],
): Map<string, Map<number, number[]>> {
  const nodes = new Map<string, Map<number, number[]>>()
  for (let i = 0; i < keys.length; i++) {
    const slot = calculateSlot(keys[i]!)
    const owners = cluster.slots[slot]
    const node = owners === undefined ? `slot ${slot}` : owners.join(',')
    let slots = nodes.get(node)
    if (slots === undefined) nodes.set(node, (slots = new Map()))
    const positions = slots.get(slot)
    if (positions === undefined) slots.set(slot, [i])
    else positions.push(i)
  }
  return nodes
}

/**
 * True if `error` is a cluster's `MOVED` reply: the slot has another master now and the command
 * was not applied. ioredis follows it by itself except in a pipeline whose other replies differ
 * (a write followed by `WAIT`): there the slot map is renewed here, or a client that only writes
 * would send every write to the old master for good.
 */
export function isMoved(client: RedisClient, error: unknown): boolean {
  return client.isCluster && error instanceof Error && error.message.startsWith('MOVED ')
}

/** Reads the cluster's slot map again (one refresh shared by the callers that ask meanwhile). */
export function renewSlots(cluster: Cluster): Promise<void> {
  return new Promise((resolve) => cluster.refreshSlotsCache(() => resolve()))
}

const guarded = new WeakSet<Redis>()

/**
 * ioredis follows an `ASK` by sending `ASKING` to the importing node and keeps no handler on that
 * command: when it fails (times out, or the connection closes first, as while the node is still
 * connecting) its rejection is unhandled, which ends a Node process by default. The command it
 * precedes reports the failure; this gives every node's `ASKING`, present and future, a handler.
 */
export function handleAskingFailures(cluster: Cluster): void {
  const guard = (node: Redis) => {
    if (guarded.has(node)) return
    guarded.add(node)
    const asking = node.asking.bind(node)
    node.asking = ((...args: Parameters<Redis['asking']>) => {
      const reply = asking(...args)
      reply.catch(() => undefined)
      return reply
    }) as Redis['asking']
  }
  for (const node of cluster.nodes('all')) guard(node)
  cluster.on('+node', guard)
}
