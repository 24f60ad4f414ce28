export { type BreakerOptions, type BreakerState, CircuitBreaker } from './breaker.js'
export {
  type BusEvent,
  type BusEventName,
  type BusState,
  type BusStats,
  type InvalidationBus,
  type InvalidationMessage,
  RedisBus,
  type RedisBusConnection,
  type RedisBusOptions,
  type RedisClientLike,
  redisBus,
} from './bus.js'
export { isPartialFailure, type MultiLevelEvent, type MultiLevelEventName } from './health.js'
export { Level, type LevelReport, type LevelStats } from './level.js'
export { MultiLevelBackend, type MultiLevelOptions, multiLevel } from './multi-level.js'
