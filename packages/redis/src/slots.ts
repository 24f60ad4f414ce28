import calculateSlot from 'cluster-key-slot'
import type { Cluster } from 'ioredis'

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
