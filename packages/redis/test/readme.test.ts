import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { type RedisServer, startRedis } from '@cache/test-servers'
import ts from 'typescript'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

// Runs every ```ts block of the README against a real server (REDIS_URL), compiled here so that
// `@cache/core` and `@cache/redis` (the built package) resolve as a user's would.
const here = dirname(fileURLToPath(import.meta.url))
const out = join(here, 'fixtures', '.compiled', 'readme')
const readme = readFileSync(join(here, '..', 'README.md'), 'utf8')
const examples = [...readme.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1]!)

let server: RedisServer
const previousUrl = process.env.REDIS_URL
beforeAll(async () => {
  server = await startRedis({ spawn: true })
  process.env.REDIS_URL = server.url
})
afterAll(async () => {
  if (previousUrl === undefined) delete process.env.REDIS_URL
  else process.env.REDIS_URL = previousUrl
  await server?.stop()
})

describe('README examples', () => {
  it('has runnable examples', () => {
    expect(examples.length).toBeGreaterThan(0)
  })

  it.each(examples.map((code, i) => [i + 1, code] as const))(
    'example %i runs without error',
    async (i, code) => {
      const js = ts.transpileModule(code, {
        compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext },
      }).outputText
      mkdirSync(out, { recursive: true })
      const file = join(out, `redis-${i}.mjs`)
      // console.assert only logs; make a failed assertion fail the test.
      writeFileSync(
        file,
        `console.assert = (ok, ...m) => { if (!ok) throw new Error('README assertion failed ' + m.join(' ')) };\n${js}`,
      )
      const { resetCache } = await import('@cache/core')
      await resetCache()
      await import(pathToFileURL(file).href)
      await resetCache()
    },
  )
})
