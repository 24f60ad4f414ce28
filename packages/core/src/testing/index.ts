export { runConformance, type ConformanceOptions } from './conformance.js'
export { forgetMemoizedNames } from '../identity.js'
