import type { CacheBackend } from '@cache/core'
import { CacheObserver, checkLogger, durationOption, IncidentLog } from '@cache/core/backend'
import { LevelHealth } from './health.js'
import { ChainInvalidation } from './invalidation.js'
import type { Level } from './level.js'
import type { MultiLevelOptions } from './options.js'
import { ReadGuards } from './read-guard.js'
import { LevelReader } from './reads.js'
import { StateKeys } from './state.js'
import { WriteOrder } from './write-order.js'
import { LevelWriter } from './writes.js'

/** The parts of a chain that its operations work with. */
export interface ChainParts {
  readonly levels: readonly Level[]
  readonly first: Level
  /** The shared (slowest) level's backend. */
  readonly shared: CacheBackend
  readonly reads: ReadGuards
  readonly order: WriteOrder
  readonly health: LevelHealth
  readonly reader: LevelReader
  readonly writer: LevelWriter
  readonly invalidation: ChainInvalidation
  readonly state: StateKeys
  readonly observer: CacheObserver
  /** The chain's clock (epoch ms): `options.now`, else `Date.now`. */
  readonly now: () => number
}

/** Wires a chain's parts over its levels. */
export function assembleChain(
  levels: readonly Level[],
  namespace: string,
  options: MultiLevelOptions,
): ChainParts {
  const now = options.now ?? Date.now
  const logger = checkLogger(options.logger)
  // Where a throwing `error`, `level-down` or `level-up` listener is reported.
  const observer = new CacheObserver('multi-level', logger)
  const reads = new ReadGuards()
  const order = new WriteOrder()
  const health = new LevelHealth(observer, now, new IncidentLog(logger))
  const reader = new LevelReader(levels, reads, health, observer, now)
  const writer = new LevelWriter(levels, health, order, reads)
  const invalidation = new ChainInvalidation(
    options.bus,
    namespace,
    levels,
    reads,
    order,
    writer,
    health,
    observer,
  )
  const stateTtlMs = durationOption(options.stateTtl, 'stateTtl', options.bus === undefined ? 0 : '1s', {
    zero: true,
  })
  const state = new StateKeys(levels, reads, health, writer, invalidation, stateTtlMs, now)
  return {
    levels,
    first: levels[0]!,
    shared: levels[levels.length - 1]!.backend,
    reads,
    order,
    health,
    reader,
    writer,
    invalidation,
    state,
    observer,
    now,
  }
}
