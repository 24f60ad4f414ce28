import calculateSlot from 'cluster-key-slot'
import type { Cluster, Redis } from 'ioredis'
import { type Limits, SLOTS, type Surveyed, survey, unavailable } from './cluster-clear.js'

/**
 * `keys()` on a Redis Cluster: the keys matching `pattern` on every master, as the nodes
 * themselves say (the survey `clear()` makes; see cluster-clear.ts), each key once.
 *
 * Each master is scanned in turn (`SCAN MATCH pattern COUNT count`), the masters importing a slot
 * last, so a key moved while its source was scanned is found at its destination. A key is
 * listed from the master that serves its slot; in a *contested* slot — one being migrated, or
 * claimed by two masters while a failover is in progress — from whichever master shows it first,
 * and then remembered so that no other master lists it again (memory: the keys of contested
 * slots only). A survey after the scan that differs from the one before (a failover or a slot
 * move started meanwhile) throws `CacheUnavailableError` at the end: keys may then be missing.
 */
export async function* listCluster(
  cluster: Cluster,
  pattern: string,
  count: number,
  limits: Limits,
): AsyncGenerator<Buffer> {
  const opened = new Map<string, Redis>()
  try {
    const before = await survey(cluster, opened, limits, 'keys')
    const claims = new Uint8Array(SLOTS)
    const contested = new Set<number>()
    for (const master of before.masters) {
      for (const [from, to] of master.slots)
        for (let slot = from; slot <= to; slot++) if (++claims[slot]! > 1) contested.add(slot)
      for (const moving of [...master.migrating, ...master.importing])
        contested.add(Number(moving.slice(0, moving.indexOf(':'))))
    }
    const seen = new Set<string>()
    const order = [
      ...before.masters.filter((node) => node.importing.length === 0),
      ...before.masters.filter((node) => node.importing.length > 0),
    ]
    for (const node of order) {
      const serves = servedSlots(node)
      let cursor = '0'
      do {
        limits.open?.()
        const [next, keys] = await limits.timed(
          node.connection.scanBuffer(cursor, 'MATCH', pattern, 'COUNT', count),
        )
        cursor = next.toString()
        for (const key of keys) {
          const slot = calculateSlot(key)
          if (contested.has(slot)) {
            const id = key.toString('latin1')
            if (seen.has(id)) continue
            seen.add(id)
            yield key
          } else if (serves[slot] === 1) yield key
        }
      } while (cursor !== '0')
    }
    limits.open?.()
    const after = await survey(cluster, opened, limits, 'keys')
    if (after.signature !== before.signature)
      throw unavailable(
        'keys',
        'the cluster changed masters or slots during the listing; keys may be missing: list again',
      )
  } finally {
    for (const connection of opened.values()) connection.disconnect()
  }
}

function servedSlots(node: Surveyed): Uint8Array {
  const serves = new Uint8Array(SLOTS)
  for (const [from, to] of node.slots) serves.fill(1, from, to + 1)
  return serves
}
