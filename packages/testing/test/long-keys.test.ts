import { expect, it } from 'vitest'
import { childSuiteResults } from './child-suite.js'

/** Runs the suite against the key-merging backends of fixtures/truncating.conformance.ts. */
const results = () => childSuiteResults('test/fixtures/vitest.truncating.config.ts')

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
