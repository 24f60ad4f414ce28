import { parseRedisUrl as coreParse, redactUrl as coreRedact } from '@cache/core/backend'
import { describe, expect, it } from 'vitest'
import { parseRedisUrl, redactUrl } from '../src/index.js'

// The URL rules themselves are tested where they live (packages/core/test/redis-url.test.ts).
describe('URL helpers', () => {
  it('are the ones @cache/core defines, so every package reads a URL alike', () => {
    expect(parseRedisUrl).toBe(coreParse)
    expect(redactUrl).toBe(coreRedact)
  })
})
