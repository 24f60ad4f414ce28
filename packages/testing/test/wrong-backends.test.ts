import { expect, it } from 'vitest'
import { childSuiteResults } from './child-suite.js'

/** Runs the suite against the backends of fixtures/wrong.conformance.ts: every test, with its status. */
const results = () => childSuiteResults('test/fixtures/vitest.wrong.config.ts')

const all = results()
const failedOf = async (backend: string) => {
  const own = (await all).filter((test) => test.fullName.startsWith(`${backend} conformance`))
  expect(own.length, backend).toBeGreaterThan(50)
  return own.filter((test) => test.status === 'failed').map((test) => test.fullName)
}

it('fails a backend that expires entries with setTimeout (a 30-day TTL fires after ~1 ms), in the long-TTL case only', async () => {
  const failed = await failedOf('a backend that expires entries with setTimeout')
  expect(failed).toEqual([
    "a backend that expires entries with setTimeout conformance keeps entries whose TTL is past a timer's range (30 days, 2^31 + 1 ms) through real time",
  ])
}, 180_000)

it('fails a backend that stores namespace:key (namespace a, key b:x is namespace a:b, key x), in the namespace cases only', async () => {
  const failed = await failedOf('a backend that stores namespace:key')
  // Only the pair its `:` joins the same way; every other case passes such a backend.
  expect(failed).toEqual([
    'a backend that stores namespace:key conformance: namespaces namespace N + "" with key "b:x" and namespace N + ":b" with key "x" are apart, and clear() of either leaves the other',
  ])
}, 180_000)
