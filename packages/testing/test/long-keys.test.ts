import { execFile } from 'node:child_process'
import { readFile, rm } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { expect, it } from 'vitest'

const vitest = join(dirname(createRequire(import.meta.url).resolve('vitest/package.json')), 'vitest.mjs')

/** Runs the suite against the key-merging backends of fixtures/truncating.conformance.ts. */
async function results(): Promise<{ fullName: string; status: string }[]> {
  const output = join(tmpdir(), `truncating-conformance-${process.pid}.json`)
  await new Promise<void>((resolve) => {
    execFile(
      process.execPath,
      [
        vitest,
        'run',
        '--config',
        'test/fixtures/vitest.truncating.config.ts',
        '--reporter=json',
        `--outputFile=${output}`,
      ],
      { cwd: join(import.meta.dirname, '..'), timeout: 150_000 },
      () => resolve(),
    )
  })
  const report = JSON.parse(await readFile(output, 'utf8'))
  await rm(output, { force: true })
  return report.testResults.flatMap((file: { assertionResults: unknown[] }) => file.assertionResults)
}

it('fails every backend that truncates keys (to 100, 250 or 1000 characters, or 250 UTF-8 bytes), in the long-key cases only', async () => {
  const all = await results()
  const backends = [
    ...new Set(all.map((test) => /^a backend that (.*?) conformance/.exec(test.fullName)?.[1])),
  ]
  expect(backends).toHaveLength(6)
  for (const backend of backends) {
    const own = all.filter((test) => test.fullName.startsWith(`a backend that ${backend} conformance`))
    const failed = own.filter((test) => test.status === 'failed').map((test) => test.fullName)
    // Caught: at least one long-key case fails.
    expect(failed.length, backend).toBeGreaterThan(0)
    // And only there: the rest of the suite passes such a backend.
    expect(
      failed.filter((name) => !name.includes('conformance: long keys')),
      backend,
    ).toEqual([])
  }
}, 180_000)
