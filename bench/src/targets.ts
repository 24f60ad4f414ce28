import type { Workload } from './contestant.js'

/**
 * The speed @cache promises, as ratios measured in one run: `ours` divided by `against` (a row
 * id, or the fastest peer of the same workload and concurrency) must be at least `min`.
 */
export interface Target {
  scenario: string
  workload: Workload
  ours: string
  against: string | 'best-peer'
  min: number
}

const rw = ['get-hit', 'set', 'mixed'] as const

export const TARGETS: Target[] = [
  { scenario: 'memory', workload: 'get-hit', ours: 'cache-memory', against: 'lru-cache-awaited', min: 0.5 },
  { scenario: 'memory', workload: 'get-hit', ours: 'cache-memory', against: 'best-peer', min: 2 },
  { scenario: 'memory', workload: 'set', ours: 'cache-memory', against: 'lru-cache-awaited', min: 0.4 },
  { scenario: 'memory', workload: 'set', ours: 'cache-memory', against: 'best-peer', min: 2 },
  { scenario: 'memoize', workload: 'get-hit', ours: 'cache-decorator', against: 'best-peer', min: 2 },
  { scenario: 'memoize', workload: 'get-hit', ours: 'cache-cached', against: 'best-peer', min: 2 },
  ...(['redis', 'memcached'] as const).flatMap((scenario) => {
    const [seq, par] = scenario === 'redis' ? ['ioredis', 'ioredis-64'] : ['memjs', 'memjs-64']
    return rw.flatMap((workload): Target[] => [
      { scenario, workload, ours: `cache-${scenario}`, against: seq, min: 0.95 },
      { scenario, workload, ours: `cache-${scenario}-64`, against: par, min: 0.9 },
    ])
  }),
  { scenario: 'disk', workload: 'get-hit', ours: 'cache-disk', against: 'better-sqlite3', min: 0.5 },
  { scenario: 'disk', workload: 'get-hit', ours: 'cache-disk', against: 'best-peer', min: 3 },
  {
    scenario: 'multi-level',
    workload: 'get-hit',
    ours: 'cache-multi-level',
    against: 'cache-memory-only',
    min: 0.8,
  },
  {
    scenario: 'multi-level',
    workload: 'get-hit',
    ours: 'cache-multi-level',
    against: 'bentocache-tiered',
    min: 5,
  },
  { scenario: 'http', workload: 'http', ours: 'cache-express', against: 'apicache', min: 1.3 },
  { scenario: 'http', workload: 'http', ours: 'cache-express-front', against: 'apicache', min: 1.3 },
]
