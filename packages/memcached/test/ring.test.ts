import HashRing from 'hashring'
import { describe, expect, it } from 'vitest'
import { KetamaRing, type RingServer } from '../src/ring.js'

const keys = Array.from({ length: 20_000 }, (_, i) => `user:${i}:profile`)

function servers(...names: string[]): RingServer[] {
  return names.map((name) => {
    const [host, port, weight] = name.split(':')
    return { host: host!, port: Number(port), weight: weight === undefined ? 1 : Number(weight) }
  })
}

function placement(ring: KetamaRing, list: readonly RingServer[]): string[] {
  return keys.map((key) => {
    const server = list[ring.serverOf(key)]!
    return `${server.host}:${server.port}`
  })
}

function moved(before: readonly string[], after: readonly string[]): number {
  return before.filter((server, i) => server !== after[i]).length / before.length
}

describe('the ketama ring', () => {
  it('places every key where the libketama-compatible hashring package does (libmemcached port rule)', () => {
    for (const names of [
      ['10.0.0.1:11211', '10.0.0.2:11211', '10.0.0.3:11211'],
      ['127.0.0.1:40001', '127.0.0.1:40002', '127.0.0.1:40003', '127.0.0.1:40004'],
      ['cache-a:11211', 'cache-b:11212'],
    ]) {
      const list = servers(...names)
      const ours = placement(new KetamaRing(list), list)
      const reference = new HashRing(names, 'md5', { 'default port': 11211 })
      expect(ours).toEqual(keys.map((key) => reference.get(key)))
    }
  })

  it('places weighted servers where the reference does', () => {
    const weights = {
      '10.0.0.1:11211': { weight: 1 },
      '10.0.0.2:11211': { weight: 2 },
      '10.0.0.3:11211': { weight: 1 },
    }
    const list = servers('10.0.0.1:11211:1', '10.0.0.2:11211:2', '10.0.0.3:11211:1')
    const ring = new KetamaRing(list)
    expect(ring.pointsPerServer()).toEqual([120, 240, 120])
    const reference = new HashRing(weights, 'md5', { 'default port': 11211 })
    expect(placement(ring, list)).toEqual(keys.map((key) => reference.get(key)))
    const share = placement(ring, list).filter((s) => s === '10.0.0.2:11211').length / keys.length
    expect(share).toBeGreaterThan(0.4)
    expect(share).toBeLessThan(0.6)
  })

  it('gives each of n equal servers 160 points, as libmemcached does (also for 7 servers)', () => {
    for (let n = 1; n <= 12; n++) {
      const list = Array.from({ length: n }, (_, i) => ({ host: '10.0.0.1', port: 20000 + i, weight: 1 }))
      expect(new KetamaRing(list).pointsPerServer()).toEqual(new Array(n).fill(160))
    }
  })

  it('moves about a quarter of the keys from 3 to 4 servers, and none when the list is reordered', () => {
    const three = servers('127.0.0.1:40001', '127.0.0.1:40002', '127.0.0.1:40003')
    const four = [...three, ...servers('127.0.0.1:40004')]
    const reordered = [three[2]!, three[0]!, three[1]!]
    const before = placement(new KetamaRing(three), three)
    const grown = moved(before, placement(new KetamaRing(four), four))
    expect(grown).toBeGreaterThan(0.15)
    expect(grown).toBeLessThan(0.33)
    expect(moved(before, placement(new KetamaRing(reordered), reordered))).toBe(0)
    // A key that moved went to the new server, never between the old ones.
    const after = placement(new KetamaRing(four), four)
    expect(after.every((server, i) => server === before[i] || server === '127.0.0.1:40004')).toBe(true)
  })
})
