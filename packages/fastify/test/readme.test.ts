import { readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect, it, vi } from 'vitest'

const here = import.meta.dirname

it("the README's example runs: a miss, a hit, and the response after invalidateTags", async () => {
  const readme = await readFile(join(here, '..', 'README.md'), 'utf8')
  const example = /## Example\n\n```ts\n([\s\S]*?)```/.exec(readme)?.[1]
  expect(example).toBeDefined()
  const file = join(here, `.readme-example-${process.pid}.ts`)
  await writeFile(file, example!.replace("from '@cache/fastify'", "from '../src/index.js'"))
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
  expect(logged[2]).toEqual([{ name: 'Desk lamp', id: '1' }])
})
