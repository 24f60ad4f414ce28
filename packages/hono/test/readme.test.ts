/**
 * The README's examples, run as a user runs them: each TypeScript block (not marked `fragment`)
 * compiled to an ES module inside this package (so `@cache/hono` is the built package), run with
 * node to its end. The first example's output is the miss then the hit it promises.
 */
import { execFile } from 'node:child_process'
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import ts from 'typescript'
import { afterAll, expect, it } from 'vitest'

const run = promisify(execFile)
const PACKAGE = join(import.meta.dirname, '..')
const SCRATCH = join(PACKAGE, '.compiled', 'readme')

const text = readFileSync(join(PACKAGE, 'README.md'), 'utf8')
const blocks = [...text.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => ({
  line: text.slice(0, m.index).split('\n').length,
  code: m[1]!,
}))

afterAll(() => rmSync(SCRATCH, { recursive: true, force: true }))

it('the README has the idiomatic example first', () => {
  expect(blocks.length).toBeGreaterThan(0)
  expect(blocks[0]!.code).toContain("app.get('/api/products', cacheResponse({ ttl: 60, tags: ['products'] })")
})

it.each(blocks.map((block) => [block.line, block] as const))(
  'the example at line %i runs to its end',
  async (line, block) => {
    mkdirSync(SCRATCH, { recursive: true })
    const file = join(SCRATCH, `readme-L${line}.mjs`)
    const js = ts.transpileModule(block.code, {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    }).outputText
    writeFileSync(file, js)
    const { stdout } = await run(process.execPath, [file], {
      cwd: PACKAGE,
      env: { ...process.env, PORT: '0' },
      timeout: 15_000,
    })
    if (line === blocks[0]!.line) {
      const [miss, hit, ...rest] = stdout.trim().split('\n')
      expect(miss).toBe('@cache; fwd=uri-miss; stored')
      // Whole seconds left, rounded down: 60 or 59 on a slow machine.
      expect(hit).toMatch(/^@cache; hit; ttl=(60|59)$/)
      expect(rest).toEqual([])
    }
  },
)
