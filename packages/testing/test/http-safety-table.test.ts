import { expect, it } from 'vitest'
import { childSuiteResults } from './child-suite.js'

/** Runs the table against the naive cache of fixtures/naive.safety.ts: name → passed or failed. */
async function naiveResults(): Promise<Map<string, string>> {
  const results = new Map<string, string>()
  for (const test of await childSuiteResults('test/fixtures/vitest.naive.config.ts', 120_000))
    results.set(test.title, test.status)
  return results
}

it('the table fails a naive URL-keyed cache on every row but the four it gets right', async () => {
  const results = await naiveResults()
  const passed = [...results].filter(([, status]) => status === 'passed').map(([title]) => title)
  expect(passed.sort()).toEqual(
    [
      'caches a plain GET (control row: the others can fail)',
      'a binary body (/binary) is replayed byte for byte',
      'a binary body (/binary-stream) is replayed byte for byte',
      'invalidating by its URL makes the next request run the handler',
    ].sort(),
  )
  const failed = [...results].filter(([, status]) => status === 'failed')
  // Every other row ran and failed: none was skipped.
  expect(failed.length).toBe(results.size - passed.length)
  expect(failed.length).toBeGreaterThanOrEqual(36)
}, 180_000)
