import { describe, expect, it } from 'vitest'
import { formatLatency } from '../src/report.js'

describe('formatLatency', () => {
  it('picks the unit that reads best', () => {
    expect(formatLatency(0.29)).toBe('0.29 µs')
    expect(formatLatency(9.2)).toBe('9.2 µs')
    expect(formatLatency(276)).toBe('276 µs')
    expect(formatLatency(2170)).toBe('2.17 ms')
    expect(formatLatency(undefined)).toBe('—')
  })

  it('never prints a latency finer than the tool measured it (autocannon: whole milliseconds)', () => {
    // A p50 under autocannon's 1 ms resolution comes back as 0: that is "under 1 ms", not 0 µs.
    expect(formatLatency(0, 1000)).toBe('< 1.00 ms')
    expect(formatLatency(3000, 1000)).toBe('3.00 ms')
  })
})
