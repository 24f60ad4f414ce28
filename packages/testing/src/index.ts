export { type ConformanceOptions, runConformance } from './conformance.js'
// Kept beside the suite for test files that re-import modules; it lives in @cache/core, whose
// registry it clears.
export { forgetMemoizedNames } from '@cache/core'
