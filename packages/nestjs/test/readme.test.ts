import { readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { resetCache } from '@cache/core'
import { afterEach, expect, it, vi } from 'vitest'

const here = import.meta.dirname

afterEach(async () => {
  await resetCache()
})

/** Runs the first code block under `heading` as a module (compiled as Nest apps are), returns what it logged. */
async function runExample(heading: string, name: string): Promise<string[]> {
  const readme = await readFile(join(here, '..', 'README.md'), 'utf8')
  const at = readme.indexOf(`\n${heading}\n`)
  expect(at).toBeGreaterThan(-1)
  const example = /```ts(?: fragment)?\n([\s\S]*?)```/.exec(readme.slice(at))?.[1]
  expect(example).toBeDefined()
  // Inside test/, so that it is compiled as Nest apps are (legacy decorators with metadata).
  const file = join(here, `.readme-${name}-${process.pid}.ts`)
  await writeFile(file, example!.replace("from '@cache/nestjs'", "from '../src/index.js'"))
  const logged: string[] = []
  const log = vi.spyOn(console, 'log').mockImplementation((...values: unknown[]) => {
    logged.push(values.map(String).join(' '))
  })
  process.env.PORT = '0'
  try {
    await import(file)
  } finally {
    log.mockRestore()
    delete process.env.PORT
    await rm(file, { force: true })
  }
  return logged
}

it("the README's example runs: a miss, a hit, and a miss after invalidateTags", async () => {
  const logged = await runExample('## Example', 'example')
  expect(logged[0]).toBe('@cache; fwd=uri-miss; stored')
  expect(logged[1]).toMatch(/^@cache; hit; ttl=(59|60)$/)
  expect(logged[2]).toBe('@cache; fwd=uri-miss; stored')
})

it("the README's front example runs: a miss through Nest's middleware, then a hit in front of it", async () => {
  const logged = await runExample('## Serving hits in front of Nest: `front: true`', 'front')
  expect(logged[0]).toBe('@cache; fwd=uri-miss; stored true')
  expect(logged[1]).toMatch(/^@cache; hit; ttl=(59|60) false$/)
})
