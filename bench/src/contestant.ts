import { BATCH_SIZE } from './data.js'

/** What a scenario declares: its contestants, the workloads they run, and what they need. */

export type Workload = 'get-hit' | 'set' | 'mixed' | 'get-many' | 'http'

export const WORKLOAD_LABEL: Record<Workload, string> = {
  'get-hit': 'get (hit)',
  set: 'set',
  mixed: '90% get / 10% set',
  'get-many': `getMany (${BATCH_SIZE} keys)`,
  http: 'GET req/s',
}

/** `limit`: the floor of what any wrapper can do; `peer`: another library; `ours`: an @cache row. */
export type Role = 'limit' | 'peer' | 'ours'

/** Where the harness-started servers and scratch space are, handed to every worker. */
export interface Environment {
  redisUrl?: string
  redisHost?: string
  redisPort?: number
  /** The Redis database of this row (`redisUrl` already ends with it). */
  redisDb?: number
  memcached?: string
  /** A fresh directory for this row alone. */
  dir: string
}

/** A write's time to live, in both units the libraries take. */
export interface Ttl {
  seconds: number
  ms: number
}

/**
 * The operations a worker times. `get` resolves to the value, `undefined`/`null` on a miss.
 * A sync driver (`sync: true`) returns plain values; the loop then skips `await` unless the
 * contestant asks for it (`awaited`).
 */
export interface Driver {
  /** `index` is the key's position in the key list (memoize rows call their function with it). */
  get(key: string, index: number): unknown
  set(key: string, value: Record<string, unknown>, index: number, ttl: Ttl): unknown
  /**
   * For `get-many` rows: the values of `keys` in order (`undefined`/`null` for a miss), or a
   * promise of them. `indexes` are the keys' positions in the key list.
   */
  getMany?(keys: string[], indexes: number[]): unknown
  /** For memoize rows: how many times the memoized function really ran (a hit runs it 0 times). */
  loads?(): number
  close?(): Promise<void> | void
}

export interface Contestant {
  /** Stable id, used by `--contestants` and in the JSON. */
  id: string
  label: string
  role: Role
  /** npm packages whose exact versions the report lists. */
  packages: string[]
  /** @cache package the row needs built (`@cache/redis`): the row is skipped until its dist exists. */
  needs?: string
  workloads: Workload[]
  /** Operations in flight at once. Default 1: awaited one by one. */
  concurrency?: number
  /** The driver is synchronous and the loop does not await it. */
  sync?: boolean
  /** Loop with `await` even though the driver is synchronous (the "awaited lru-cache" limit). */
  awaited?: boolean
  /**
   * The limit row this row's "× limit" ratio divides by. Default: the scenario's first limit row
   * with the same concurrency.
   */
  baseline?: string
  /**
   * Notes shown under the table: configuration choices that matter for fairness, and for a peer's
   * fast configuration the documentation that recommends it.
   */
  note?: string
  /** Builds the driver, in the worker process. */
  create?(env: Environment): Promise<Driver>
  /** HTTP rows: starts the server under test, in its own process; autocannon runs in the runner. */
  serve?(): Promise<HttpService>
  /** Rows measured by an outside program (redis-benchmark), run from the runner process. */
  external?(
    env: Environment,
    workload: Workload,
    plan: { rounds: number; quick: boolean },
  ): Promise<ExternalResult>
}

/** A server under test and how often its slow route really ran. */
export interface HttpService {
  handler: import('node:http').RequestListener
  routeCalls(): number
  /** True for rows that put a cache in front of the slow route. */
  cached: boolean
}

export interface ExternalResult {
  rates: number[]
  gets: number
  hits: number
  /** Per-operation latency in microseconds, as the outside program reports it. */
  latency?: { p50: number; p99: number }
  failure?: string
}

/** A scenario: a group of contestants compared with each other. */
export interface Scenario {
  id: string
  title: string
  /**
   * Rounds for this scenario's full runs, when the default does not suit it (sequential network
   * round trips are noisy on a small shared machine: more, longer rounds steady the median).
   */
  plan?: { rounds: number; roundMs: number }
  /** Servers the runner starts before the rows run. */
  servers?: ('redis' | 'memcached')[]
  contestants: Contestant[]
}

/**
 * The same contestant as another row: another id and label, and whatever else changes (more
 * operations in flight, another `create`). A batching path of an @cache package is one line:
 * `variant(cacheRedis, { id: 'cache-redis-64-batched', label: '…', concurrency: 64, create: … })`.
 */
export function variant(
  base: Contestant,
  changes: Partial<Contestant> & Pick<Contestant, 'id' | 'label'>,
): Contestant {
  return { ...base, ...changes }
}
