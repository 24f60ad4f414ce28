import { readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { resetCache } from '@cache/core'
import { afterEach, expect, it, vi } from 'vitest'

const here = import.meta.dirname

afterEach(async () => {
  await resetCache()
})

it("the README's example runs: a miss, a hit, and a miss after invalidateTags", async () => {
  const readme = await readFile(join(here, '..', 'README.md'), 'utf8')
  const example = /## Example\n\n```ts(?: fragment)?\n([\s\S]*?)```/.exec(readme)?.[1]
  expect(example).toBeDefined()
  // Inside test/, so that it is compiled as Nest apps are (legacy decorators with metadata).
  const file = join(here, `.readme-example-${process.pid}.ts`)
  await writeFile(file, example!.replace("from '@cache/nestjs'", "from '../src/index.js'"))
  const logged: unknown[] = []
  const log = vi.spyOn(console, 'log').mockImplementation((value: unknown) => {
    logged.push(value)
  })
  process.env.PORT = '0'
  try {
    await import(file)
  } finally {
    log.mockRestore()
    delete process.env.PORT
    await rm(file, { force: true })
  }
  expect(logged[0]).toBe('@cache; fwd=uri-miss; stored')
  expect(logged[1]).toMatch(/^@cache; hit; ttl=(59|60)$/)
  expect(logged[2]).toBe('@cache; fwd=uri-miss; stored')
})
