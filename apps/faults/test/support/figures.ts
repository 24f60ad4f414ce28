/**
 * Figures measured by the suite (requests, failures, latencies, recovery times), collected across
 * test files in one JSON file and printed as a table when the run ends (see global-setup.ts).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const RESULTS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'results')
export const FIGURES_FILE = join(RESULTS_DIR, '.figures.json')

/** One row of the report: a scenario, what was measured, the value, and the bar it must meet. */
export interface Figure {
  scenario: string
  metric: string
  value: string | number
  bar?: string
  ok?: boolean
}

export function readFigures(): Figure[] {
  if (!existsSync(FIGURES_FILE)) return []
  return JSON.parse(readFileSync(FIGURES_FILE, 'utf8')) as Figure[]
}

/** Adds figures to this run's report (test files run one at a time, so no lock is needed). */
export function recordFigures(...figures: Figure[]): void {
  mkdirSync(RESULTS_DIR, { recursive: true })
  writeFileSync(FIGURES_FILE, JSON.stringify([...readFigures(), ...figures], null, 2))
}

export function figuresTable(figures: readonly Figure[]): string {
  const rows = [
    ['scenario', 'metric', 'value', 'bar', 'verdict'],
    ...figures.map((f) => [
      f.scenario,
      f.metric,
      String(f.value),
      f.bar ?? '',
      f.ok === undefined ? '' : f.ok ? 'ok' : 'FAIL',
    ]),
  ]
  // Columns padded to their widest cell, as a markdown formatter would print them.
  const widths = rows[0]!.map((_, i) => Math.max(3, ...rows.map((row) => row[i]!.length)))
  const line = (cells: string[]) => `| ${cells.map((cell, i) => cell.padEnd(widths[i]!)).join(' | ')} |`
  const [head, ...body] = rows
  return [line(head!), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n')
}
