import { describe, expect, it } from 'vitest'
import type { Row, ScenarioReport } from '../src/report.js'
import { evaluateTargets, ratioBand } from '../src/report.js'

describe('ratioBand', () => {
  it('pairs round k with round k, so load shared by both rows cancels out', () => {
    // The machine got twice as slow in the middle rounds: both rows dropped together.
    const reference = [100, 100, 50, 50, 50, 100, 100]
    const ours = reference.map((rate) => rate * 1.2)
    const band = ratioBand(ours, reference)!
    expect(band.ratio).toBeCloseTo(1.2)
    expect(band.low).toBeCloseTo(1.2)
    expect(band.high).toBeCloseTo(1.2)
  })

  it('bounds the median ratio of 7 rounds by the lowest and highest ratio, at 98.4 %', () => {
    const band = ratioBand([7, 1, 4, 3, 6, 2, 5], [1, 1, 1, 1, 1, 1, 1])!
    expect(band).toEqual({ ratio: 4, low: 1, high: 7, confidence: 1 - 2 / 128 })
  })

  it('drops one extreme at each end with 9 rounds, still above 95 %', () => {
    const band = ratioBand([9, 1, 8, 2, 7, 3, 6, 4, 5], Array(9).fill(1))!
    expect(band.low).toBe(2)
    expect(band.high).toBe(8)
    expect(band.confidence).toBeCloseTo(1 - (2 * 10) / 512)
  })

  it('keeps the 4th lowest to the 4th highest of a full run’s 15 rounds, at 96.5 %', () => {
    // Three wild rounds at each end (a GC pause, a burst of load) do not reach the band.
    const ratios = [0.1, 0.2, 0.3, 0.8, 0.85, 0.9, 0.95, 1, 1.05, 1.1, 1.15, 1.2, 5, 6, 7]
    const band = ratioBand(ratios, Array(15).fill(1))!
    expect(band.ratio).toBe(1)
    expect(band.low).toBe(0.8)
    expect(band.high).toBe(1.2)
    expect(band.confidence).toBeCloseTo(1 - (2 * (1 + 15 + 105 + 455)) / 2 ** 15)
    expect(band.confidence).toBeGreaterThan(0.95)
  })

  it('cannot reach 95 % with 5 rounds or fewer', () => {
    expect(ratioBand([1, 2, 3, 4, 5], Array(5).fill(1))!.confidence).toBeLessThan(0.95)
    expect(ratioBand([1, 2, 3], [1, 1, 1])!.confidence).toBe(0.75)
  })

  it('refuses to pair rounds that do not match up', () => {
    expect(ratioBand([1, 2, 3], [1, 2])).toBeUndefined()
    expect(ratioBand([], [])).toBeUndefined()
  })
})

describe('evaluateTargets', () => {
  const row = (contestant: string, rounds: number[]): Row => ({
    scenario: 'memory',
    contestant,
    label: contestant,
    role: contestant === 'cache-memory' ? 'ours' : 'limit',
    workload: 'get-hit',
    concurrency: 1,
    unit: 'ops/s',
    status: 'ok',
    rounds,
    median: [...rounds].sort((a, b) => a - b)[rounds.length >> 1],
  })
  const verdictFor = (ours: number[], reference: number[]) => {
    const scenario: ScenarioReport = {
      id: 'memory',
      title: 'memory',
      notes: [],
      rows: [row('cache-memory', ours), row('lru-cache-awaited', reference)],
    }
    // The memory get-hit target against lru-cache awaited is 0.85×.
    return evaluateTargets([scenario]).find(
      (t) => t.workload === 'get-hit' && t.against === 'lru-cache-awaited',
    )!
  }
  const ref = [100, 100, 100, 100, 100, 100, 100]

  it('claims a target that holds in every round', () => {
    expect(verdictFor([86, 90, 88, 95, 87, 91, 89], ref).verdict).toBe('holds')
  })

  it('claims a miss only when every round misses', () => {
    expect(verdictFor([70, 80, 84, 75, 72, 71, 79], ref).verdict).toBe('misses')
  })

  it('says inconclusive, with the band, when the rounds straddle the target', () => {
    // The median ratio (0.88) clears 0.85, but one noisy round does not: nothing is claimed.
    const target = verdictFor([88, 90, 60, 95, 87, 91, 89], ref)
    expect(target.ratio).toBeCloseTo(0.89)
    expect(target.verdict).toBe('inconclusive')
    expect(target.low).toBeCloseTo(0.6)
    expect(target.high).toBeCloseTo(0.95)
  })

  it('says not measured when a row is missing', () => {
    const scenario: ScenarioReport = {
      id: 'memory',
      title: 'memory',
      notes: [],
      rows: [row('cache-memory', ref)],
    }
    expect(evaluateTargets([scenario])[0]!.verdict).toBe('not measured')
  })
})
