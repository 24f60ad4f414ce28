/** What the bus tests share: one process's view of a shared cache, and polling for what it should see. */
import type { MemoryBackend } from '@cache/memory'
import type { MultiLevelBackend, RedisBus } from '../src/index.js'

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Polls `check` until it holds, for at most `ms`; the time it took, or -1. */
export async function within(ms: number, check: () => boolean | Promise<boolean>): Promise<number> {
  const start = performance.now()
  while (performance.now() - start < ms) {
    if (await check()) return performance.now() - start
    await sleep(10)
  }
  return (await check()) ? performance.now() - start : -1
}

/** A chain memory → shared level with its own bus: one process's view of the shared cache. */
export interface Peer {
  cache: MultiLevelBackend
  l1: MemoryBackend
  bus: RedisBus
}

/** True while `peer`'s L1 holds `key`. */
export function inL1(peer: Peer, key: string): boolean {
  return peer.l1.sync!.getEntry(key) !== undefined
}
