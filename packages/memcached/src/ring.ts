import { createHash } from 'node:crypto'

/** memcached's default port: libmemcached leaves it out of the point names. */
const DEFAULT_PORT = 11211

/** Point groups per server with equal weights: 40 MD5 digests × 4 points = 160 points. */
const GROUPS_PER_SERVER = 40
const POINTS_PER_DIGEST = 4

/** One server of the ring: `host:port` as listed, and its relative weight (default 1). */
export interface RingServer {
  host: string
  port: number
  weight: number
}

/**
 * A ketama continuum laid out exactly as libmemcached's weighted ketama
 * (`MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED`, MD5 key hash), so clients in other languages that use it
 * place every key on the same server:
 *
 * - each server gets `floor(weight / total × 40 × servers) × 4` points (160 with equal weights);
 * - point group `i` of a server is the MD5 of `"host:port-i"` (`"host-i"` on port 11211), and each
 *   digest gives 4 points: its bytes 0-3, 4-7, 8-11 and 12-15 read as little-endian uint32;
 * - a key hashes to the first 4 bytes of its MD5 (little-endian) and lives on the server of the
 *   first point at or after that value, wrapping around to the first point.
 *
 * Points depend on the server names and weights only, never on the order of the list; equal
 * points (rare) are ordered by server name so every process agrees.
 */
export class KetamaRing {
  private readonly points: Uint32Array
  private readonly owners: Uint16Array

  constructor(servers: readonly RingServer[]) {
    const total = servers.reduce((sum, server) => sum + server.weight, 0)
    const entries: { point: number; owner: number; name: string }[] = []
    servers.forEach((server, owner) => {
      const name = `${server.host}:${server.port}`
      for (let group = 0; group < groupsFor(server.weight, total, servers.length); group++) {
        const digest = md5(server.port === DEFAULT_PORT ? `${server.host}-${group}` : `${name}-${group}`)
        for (let i = 0; i < POINTS_PER_DIGEST; i++)
          entries.push({ point: digest.readUInt32LE(i * 4), owner, name })
      }
    })
    entries.sort((a, b) => a.point - b.point || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    this.points = Uint32Array.from(entries, (entry) => entry.point)
    this.owners = Uint16Array.from(entries, (entry) => entry.owner)
  }

  /** The index (in the list given to the constructor) of the server that holds `key`. */
  serverOf(key: string): number {
    const points = this.points
    const hash = md5(key).readUInt32LE(0)
    let low = 0
    let high = points.length
    while (low < high) {
      const middle = (low + high) >>> 1
      if (points[middle]! < hash) low = middle + 1
      else high = middle
    }
    return this.owners[low === points.length ? 0 : low]!
  }

  /** How many points each server has, by list index (weights at work). */
  pointsPerServer(): number[] {
    const counts: number[] = []
    for (const owner of this.owners) counts[owner] = (counts[owner] ?? 0) + 1
    return counts
  }
}

/**
 * libmemcached's count of point groups, computed as it does in single precision:
 * `floorf(pct * 160 / 4 * servers + 1e-10)`, so weights round exactly as theirs.
 */
function groupsFor(weight: number, total: number, servers: number): number {
  const pct = Math.fround(weight / total)
  const scaled = Math.fround(
    Math.fround(Math.fround(pct * GROUPS_PER_SERVER * POINTS_PER_DIGEST) / 4) * servers,
  )
  return Math.floor(scaled + 0.0000000001)
}

function md5(text: string): Buffer {
  return createHash('md5').update(text).digest()
}
