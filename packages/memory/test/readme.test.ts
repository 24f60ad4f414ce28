import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import ts from 'typescript'
import { describe, expect, it } from 'vitest'

// Runs every ```ts block of the core and memory READMEs (blocks marked ```ts fragment are not
// programs). Compiled here so that `@cache/core` and `@cache/memory` resolve as a user's would.
const here = dirname(fileURLToPath(import.meta.url))
const out = join(here, 'fixtures', '.compiled', 'readme')

function blocks(readme: string): string[] {
  const text = readFileSync(readme, 'utf8')
  return [...text.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1]!)
}

const readmes = { core: join(here, '..', '..', 'core', 'README.md'), memory: join(here, '..', 'README.md') }

describe.each(Object.entries(readmes))('%s README examples', (name, readme) => {
  const examples = blocks(readme)

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
      const file = join(out, `${name}-${i}.mjs`)
      // console.assert only logs; make a failed assertion fail the test.
      writeFileSync(
        file,
        `console.assert = (ok, ...m) => { if (!ok) throw new Error('README assertion failed ' + m.join(' ')) };\n${js}`,
      )
      const { resetCache } = await import('@cache/core')
      await resetCache()
      await import(pathToFileURL(file).href)
    },
  )
})
