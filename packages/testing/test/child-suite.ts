import { execFile } from 'node:child_process'
import { readFile, rm } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { basename, dirname, join } from 'node:path'

const vitest = join(dirname(createRequire(import.meta.url).resolve('vitest/package.json')), 'vitest.mjs')

export interface ChildTestResult {
  fullName: string
  title: string
  status: string
}

/**
 * Runs a suite against deliberately wrong fixtures in a child vitest (`config`, relative to the
 * package), and gives every test it ran with its status: a suite's own tests check that it fails
 * the stores it must fail, and only those.
 */
export async function childSuiteResults(config: string, timeoutMs = 150_000): Promise<ChildTestResult[]> {
  const output = join(tmpdir(), `${basename(config, '.ts')}-${process.pid}.json`)
  await new Promise<void>((resolve) => {
    execFile(
      process.execPath,
      [vitest, 'run', '--config', config, '--reporter=json', `--outputFile=${output}`],
      { cwd: join(import.meta.dirname, '..'), timeout: timeoutMs },
      () => resolve(),
    )
  })
  const report = JSON.parse(await readFile(output, 'utf8'))
  await rm(output, { force: true })
  return report.testResults.flatMap((file: { assertionResults: ChildTestResult[] }) => file.assertionResults)
}
