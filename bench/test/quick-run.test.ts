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
        'lru-cache-awaited,cache-manager-memory,cache-memory',
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
    expect(rows).toHaveLength(9)
    for (const row of rows) {
      expect(row.status, `${row.contestant} ${row.workload}: ${row.reason}`).toBe('ok')
      expect(row.rounds).toHaveLength(report.plan.rounds)
      expect(row.median).toBeGreaterThan(0)
      expect(row.spread).toBeGreaterThanOrEqual(0)
    }
    for (const row of rows.filter((r) => r.workload === 'get-hit')) {
      expect(row.gets).toBeGreaterThan(0)
      expect(row.hits).toBe(row.gets)
    }
    const ours = rows.find((r) => r.contestant === 'cache-memory' && r.workload === 'get-hit')!
    expect(ours.limit).toBe('lru-cache-awaited')
    expect(ours.bestPeer).toBe('cache-manager-memory')
    expect(ours.ratioToLimit).toBeCloseTo(
      ours.median! /
        rows.find((r) => r.contestant === 'lru-cache-awaited' && r.workload === 'get-hit')!.median!,
    )
    const target = report.targets.find((t) => t.workload === 'get-hit' && t.against === 'best-peer')!
    expect(target.reference).toBe('cache-manager-memory')
    expect(typeof target.holds).toBe('boolean')
    expect(readFileSync(join(out, 'partial.md'), 'utf8')).toContain('| get (hit) | **@cache/memory** |')
  }, 90_000)
})
