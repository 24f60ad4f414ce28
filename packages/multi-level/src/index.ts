export { type BreakerOptions, type BreakerState, CircuitBreaker } from './breaker.js'
export {
  type InvalidationBus,
  type InvalidationMessage,
  type RedisBusOptions,
  type RedisClientLike,
  redisBus,
} from './bus.js'
export type { MultiLevelEvent, MultiLevelEventName } from './health.js'
export { Level, type LevelReport, type LevelStats } from './level.js'
export { MultiLevelBackend, type MultiLevelOptions, multiLevel } from './multi-level.js'
