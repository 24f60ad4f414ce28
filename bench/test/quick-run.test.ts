import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, describe, expect, it } from 'vitest'
import type { Report } from '../src/report.js'

const run = promisify(execFile)
const bench = join(import.meta.dirname, '..')
const out = mkdtempSync(join(tmpdir(), 'cache-bench-test-'))

afterAll(() => rmSync(out, { recursive: true, force: true }))

// Speed is never asserted here: only that a tiny run completes, checks its hits and reports.
describe('a quick memory run, end to end', () => {
  it('writes a report with every row measured, hits counted and ratios filled', async () => {
    expect(
      existsSync(join(bench, 'dist', 'run.js')),
      'build the bench first: pnpm --filter @cache/bench build',
    ).toBe(true)
    await run(
      process.execPath,
      [
        'dist/run.js',
        '--quick',
        '--only',
        'memory',
        '--contestants',
        'lru-cache-awaited,cache-manager-memory,cache-manager-memory-fast,cache-memory',
        '--out',
        out,
      ],
      { cwd: bench, timeout: 60_000 },
    )
    const report = JSON.parse(readFileSync(join(out, 'partial.json'), 'utf8')) as Report
    expect(report.mode).toBe('quick')
    expect(report.complete).toBe(false)
    expect(report.versions['lru-cache']).toMatch(/^\d+\.\d+\.\d+/)
    expect(report.scenarios.map((s) => s.id)).toEqual(['memory'])
    const rows = report.scenarios[0]!.rows
    // 4 contestants × 4 workloads: get (hit), set, 90/10 and getMany (100 keys a call).
    expect(rows).toHaveLength(16)
    expect(new Set(rows.map((r) => r.workload)).size).toBe(4)
    for (const row of rows) {
      expect(row.status, `${row.contestant} ${row.workload}: ${row.reason}`).toBe('ok')
      expect(row.rounds).toHaveLength(report.plan.rounds)
      expect(row.median).toBeGreaterThan(0)
      expect(row.spread).toBeGreaterThanOrEqual(0)
      // Latency is sampled, and a 99th percentile is never below the median.
      expect(row.latency!.samples).toBeGreaterThan(0)
      expect(row.latency!.p50).toBeGreaterThan(0)
      expect(row.latency!.p99).toBeGreaterThanOrEqual(row.latency!.p50)
    }
    for (const row of rows.filter((r) => r.workload === 'get-hit')) {
      expect(row.gets).toBeGreaterThan(0)
      expect(row.hits).toBe(row.gets)
    }
    const ours = rows.find((r) => r.contestant === 'cache-memory' && r.workload === 'get-hit')!
    expect(ours.limit).toBe('lru-cache-awaited')
    // The fastest peer is whichever configuration of a peer measured fastest, default or not.
    const peers = rows.filter((r) => r.role === 'peer' && r.workload === 'get-hit')
    const fastest = peers.reduce((a, b) => (b.median! > a.median! ? b : a))
    expect(ours.bestPeer).toBe(fastest.contestant)
    expect(ours.ratioToLimit).toBeCloseTo(
      ours.median! /
        rows.find((r) => r.contestant === 'lru-cache-awaited' && r.workload === 'get-hit')!.median!,
    )
    const target = report.targets.find((t) => t.workload === 'get-hit' && t.against === 'best-peer')!
    expect(target.reference).toBe(fastest.contestant)
    // Three quick rounds cannot bound a ratio with 95 % confidence: nothing is claimed.
    expect(target.confidence).toBe(0.75)
    expect(target.verdict).toBe('inconclusive')
    expect(target.low).toBeLessThanOrEqual(target.ratio!)
    expect(target.high).toBeGreaterThanOrEqual(target.ratio!)
    expect(readFileSync(join(out, 'partial.md'), 'utf8')).toContain('| get (hit) | **@cache/memory** |')
  }, 90_000)
})
