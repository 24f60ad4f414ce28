export { type ConformanceOptions, type ManualClock, manualClock, runConformance } from './conformance.js'
// Kept beside the suite for test files that re-import modules; it lives in @cache/core, whose
// registry it clears.
export { forgetMemoizedNames } from '@cache/core'
export {
  describeHttpCacheSafety,
  type HttpCacheHarness,
  type HttpCacheSafetyOptions,
  type SafetyApp,
  type SafetyCacheOptions,
  type SafetyRequest,
  type SafetyResponse,
  type SafetyRoute,
  type SafetySetup,
} from './http-safety.js'
export {
  ABSENT,
  type KeyOperation,
  type KeyState,
  keyOperations,
  matchesSomeSerialOrder,
  ORDER_KEY,
  type SerialOrderOptions,
  type SerialOutcome,
  serialOrders,
  unexplainedPairs,
} from './write-order.js'
export { FORWARDED_HOST_SPELLINGS, HOST_SPELLINGS } from './host-spellings.js'
export { type MapBackendOptions, type MapRow, mapBackend } from './map-backend.js'
export { configErrorOf, configErrorOfAsync } from './config-errors.js'
