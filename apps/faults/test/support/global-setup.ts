import { rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { FIGURES_FILE, figuresTable, RESULTS_DIR, readFigures } from './figures.js'

export function setup(): void {
  rmSync(FIGURES_FILE, { force: true })
}

/** Prints every figure the run measured and keeps them in results/latest.md. */
export function teardown(): void {
  const figures = readFigures()
  if (figures.length === 0) return
  const table = figuresTable(figures)
  const report = `# @cache fault suite: last run\n\n${new Date().toISOString()}, Node ${process.version}\n\n${table}\n`
  writeFileSync(join(RESULTS_DIR, 'latest.md'), report)
  process.stdout.write(`\n${report}\n`)
  rmSync(FIGURES_FILE, { force: true })
}
