export { runConformance, type ConformanceOptions } from './conformance.js'
