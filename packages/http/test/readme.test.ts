import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, expect, it, vi } from 'vitest'
import { until } from './node-adapter.js'

const README = readFileSync(join(import.meta.dirname, '..', 'README.md'), 'utf8')

/** The first ```ts program after a heading. */
function programAfter(heading: string): string {
  const section = README.slice(README.indexOf(heading))
  const match = /```ts\n([\s\S]*?)\n```/.exec(section)
  if (!match) throw new Error(`no program after ${heading}`)
  return match[1]!
}

const file = join(import.meta.dirname, 'readme-example.generated.ts')
afterEach(() => {
  rmSync(file, { force: true })
  vi.unstubAllEnvs()
  vi.restoreAllMocks()
})

it("runs the README's minimal node:http adapter: a miss stored, then a hit", async () => {
  const logs: unknown[] = []
  vi.spyOn(console, 'log').mockImplementation((...args) => void logs.push(args.join(' ')))
  vi.stubEnv('PORT', '0')
  writeFileSync(file, programAfter('## A minimal adapter over node:http'))
  await import(/* @vite-ignore */ file)
  await until(() => logs.length === 2, 'the two requests of the example', 10_000)
  expect(logs[0]).toBe('@cache; fwd=uri-miss; stored')
  // The remaining whole seconds: 60, or 59 once a millisecond went by.
  expect(logs[1]).toMatch(/^@cache; hit; ttl=(60|59)$/)
})
