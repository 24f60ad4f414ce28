/**
 * Regenerates the Performance section of the root README.md (between `<!-- bench:start -->` and
 * `<!-- bench:end -->`) from results/latest.json, without running anything.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { BENCH_DIR } from './load.js'
import { type Report, readmeSection, updateReadme } from './report.js'

const source = process.argv[2] ?? join(BENCH_DIR, 'results', 'latest.json')
const report = JSON.parse(readFileSync(source, 'utf8')) as Report
updateReadme(join(BENCH_DIR, '..', 'README.md'), readmeSection(report))
console.log(`updated the Performance section of README.md from ${source}`)
