/** A process's chain over a Redis that tests cut off (through a fault proxy), and waits for its breaker. */
import { memcachedBackend } from '@cache/memcached'
import { memoryBackend } from '@cache/memory'
import { redisBackend } from '@cache/redis'
import { expect } from 'vitest'
import {
  type InvalidationBus,
  type MultiLevelBackend,
  type MultiLevelEvent,
  multiLevel,
  redisBus,
} from '../src/index.js'

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * One process's chain: its own memory level, Redis at `url` (150 ms timeout, breaker opening on the
 * first failure for `openFor`), and `bus` if given; `repairs` collects the repair errors it reports.
 */
export function peer(url: string, namespace: string, openFor: string, bus?: InvalidationBus) {
  const shared = redisBackend(url, { namespace, timeout: '150ms', maxReconnectDelay: '20ms', logger: false })
  const chain = multiLevel({
    levels: [memoryBackend(), shared],
    breaker: { failureThreshold: 1, openFor },
    bus,
    logger: false,
  })
  const repairs: string[] = []
  chain.on('error', (event: MultiLevelEvent) => {
    if (event.operation === 'repair') repairs.push(String(event.error))
  })
  return { chain, shared, repairs }
}

export type Peer = ReturnType<typeof peer>

/** Calls until the chain has skipped Redis (its breaker opened). */
export async function untilDown({ chain }: Peer): Promise<void> {
  for (let i = 0; i < 100 && chain.levelStats()[1]!.state === 'closed'; i++) {
    await chain.get('__down?').catch(() => undefined)
    await sleep(20)
  }
  expect(chain.levelStats()[1]!.state).not.toBe('closed')
}

/** Calls until the chain uses Redis again with nothing left to repair. */
export async function untilRepaired({ chain }: Peer): Promise<void> {
  const done = () => {
    const level = chain.levelStats()[1]!
    return level.state === 'closed' && level.pendingKeys === 0 && !level.pendingClear
  }
  for (let i = 0; i < 250 && !done(); i++) {
    await chain.get('__up?').catch(() => undefined)
    await sleep(30)
  }
  expect(chain.levelStats()[1]).toMatchObject({ state: 'closed', pendingKeys: 0, pendingClear: false })
}

/**
 * One process over a shared memcached (300 ms timeout): its own memory level and its own bus on
 * Redis at `redisUrl`; `ready` settles once the bus is up.
 */
export function memcachedPeer(
  redisUrl: string,
  server: string,
  namespace: string,
): { chain: MultiLevelBackend; ready: Promise<void> } {
  const bus = redisBus(redisUrl, { logger: false })
  const chain = multiLevel({
    levels: [memoryBackend(), memcachedBackend(server, { namespace, timeout: '300ms', logger: false })],
    bus,
    logger: false,
  })
  return { chain, ready: bus.ready() }
}
