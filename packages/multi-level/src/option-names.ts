import { CacheConfigError } from '@cache/core'
import {
  assertKnownOptions,
  isOptionsObject,
  notAnOptionsObject,
  type OptionNames,
  optionNames,
} from '@cache/core/backend'
import type { BreakerOptions } from './breaker.js'
import type { RedisBusOptions } from './bus.js'
import type { MultiLevelOptions } from './options.js'

/**
 * The names of every options object of this package: any other name is refused with a
 * `CacheConfigError` naming it (and the option meant), not dropped in silence.
 */

const CHAIN_NAMES = optionNames<MultiLevelOptions>({
  levels: true,
  breaker: true,
  maxPendingKeys: true,
  bus: true,
  stateTtl: true,
  namespace: true,
  closeLevels: true,
  logger: true,
  now: true,
})

const BREAKER_NAMES = optionNames<BreakerOptions>({ failureThreshold: true, openFor: true })

const BUS_FIELDS: OptionNames<RedisBusOptions> = {
  channel: true,
  publishTimeout: true,
  publishTimeoutMs: true,
  heartbeat: true,
  redisOptions: true,
  logger: true,
}
const BUS_NAMES = optionNames<RedisBusOptions>(BUS_FIELDS)

/**
 * Names ioredis ignores in an options object given as the bus's connection, though they are
 * certainly meant: the URL (node-redis and Keyv take `{ url }`; ioredis would connect to
 * 127.0.0.1:6379 instead) and the bus's own options (a cluster object's `redisOptions` excepted:
 * there it is ioredis's). ioredis's own names cannot be listed reliably; the rest is left to it.
 */
const CONNECTION_MISTAKES: Readonly<Record<string, string>> = {
  url: "give the URL itself as the first argument: redisBus('redis://…', { channel })",
  ...Object.fromEntries(
    Object.keys(BUS_FIELDS).map((name) => [
      name,
      `an option of redisBus(): give it in the second argument, redisBus(connection, { ${name} })`,
    ]),
  ),
}

/** Refuses an unknown name in {@link MultiLevelOptions} or its `breaker`. */
export function checkChainOptionNames(options: MultiLevelOptions): void {
  assertKnownOptions(options, CHAIN_NAMES, 'multiLevel()')
  if (options.breaker !== undefined)
    assertKnownOptions(options.breaker, BREAKER_NAMES, "multiLevel()'s breaker")
}

/**
 * Refuses an unknown name in {@link RedisBusOptions}, and, in a connection given as ioredis
 * options, a name ioredis would ignore though it is certainly meant.
 */
export function checkBusOptionNames(connection: unknown, options: RedisBusOptions): void {
  if (
    typeof connection === 'object' &&
    connection !== null &&
    typeof (connection as { publish?: unknown }).publish !== 'function'
  )
    checkIoredisNames(connection, "redisBus()'s first argument", 'cluster' in connection)
  assertKnownOptions(options, BUS_NAMES, 'redisBus()')
  if (options.redisOptions !== undefined)
    checkIoredisNames(options.redisOptions, "redisBus()'s redisOptions", false)
}

/**
 * Throws for the first name of `given` in {@link CONNECTION_MISTAKES}; `cluster`: `given` is
 * cluster options, whose `redisOptions` is ioredis's own (its names are checked in turn).
 */
function checkIoredisNames(given: unknown, where: string, cluster: boolean): void {
  if (!isOptionsObject(given)) throw notAnOptionsObject(given, where)
  for (const name of Object.keys(given)) {
    if (cluster && name === 'redisOptions') {
      const nodes = (given as { redisOptions?: unknown }).redisOptions
      if (nodes !== undefined) checkIoredisNames(nodes, `${where}'s redisOptions`, false)
      continue
    }
    if (!Object.hasOwn(CONNECTION_MISTAKES, name)) continue
    throw new CacheConfigError(
      name,
      `not an ioredis option (${where}, where ioredis ignores it): ${CONNECTION_MISTAKES[name]}`,
    )
  }
}
