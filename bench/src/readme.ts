/**
 * Regenerates the Performance section of the root README.md (between `<!-- bench:start -->` and
 * `<!-- bench:end -->`) from results/latest.json, without running anything. The verdicts are
 * worked out again from the stored rounds against the targets as they are now (a target changed
 * since the run), and the results files are rewritten with them.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { BENCH_DIR } from './load.js'
import { evaluateTargets, type Report, readmeSection, toMarkdown, updateReadme } from './report.js'

const source = process.argv[2] ?? join(BENCH_DIR, 'results', 'latest.json')
const report = JSON.parse(readFileSync(source, 'utf8')) as Report
report.targets = evaluateTargets(report.scenarios)
writeFileSync(source, `${JSON.stringify(report, null, 2)}\n`)
writeFileSync(source.replace(/\.json$/, '.md'), toMarkdown(report))
updateReadme(join(BENCH_DIR, '..', 'README.md'), readmeSection(report))
console.log(`updated the Performance section of README.md and the results from ${source}`)
