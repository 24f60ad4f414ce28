export { type BreakerOptions, type BreakerState, CircuitBreaker } from './breaker.js'
export {
  type InvalidationBus,
  type InvalidationMessage,
  type RedisBusOptions,
  type RedisClientLike,
  redisBus,
} from './bus.js'
export { Level, type LevelReport, type LevelStats } from './level.js'
export {
  MultiLevelBackend,
  type MultiLevelEvent,
  type MultiLevelEventName,
  type MultiLevelOptions,
  multiLevel,
} from './multi-level.js'
