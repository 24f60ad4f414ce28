import { memoryBackend } from '@cache/memory'
import { describeHttpCacheSafety } from '@cache/testing'
import { nestHarness, PLATFORMS } from './harness.js'

for (const platform of PLATFORMS) {
  describeHttpCacheSafety(`@cache/nestjs on Nest 11 (platform-${platform})`, nestHarness(platform), {
    backend: () => memoryBackend({ maxKeys: 1000 }),
  })
}
