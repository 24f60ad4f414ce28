import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { type DecoratorMode, diagnoseFixture } from './compile.js'

const dir = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'decorator-types')

/** The diagnostic code each marked line of misuse.ts must get in `mode`, by line number. */
function expectedFailures(mode: DecoratorMode): Map<number, number> {
  const expected = new Map<number, number>()
  readFileSync(join(dir, 'misuse.ts'), 'utf8')
    .split('\n')
    .forEach((text, index) => {
      const both = /\/\/ fails: TS(\d+)/.exec(text)
      const own = new RegExp(`${mode}: TS(\\d+)`).exec(text)
      const code = both?.[1] ?? (/\/\/ (standard|legacy): TS/.test(text) ? own?.[1] : undefined)
      if (code !== undefined) expected.set(index + 1, Number(code))
    })
  return expected
}

describe.each(['standard', 'legacy'] as const)(
  'the types of @cache() and memoized() (%s decorators)',
  (mode) => {
    it('compile every correct use: sync, async, static, generic, overloaded, optional and rest parameters, typed key and ttl functions, constructor injection, typed handles', () => {
      const files = mode === 'standard' ? ['valid.ts', 'valid-standard.ts'] : ['valid.ts']
      const { diagnostics } = diagnoseFixture('decorator-types', mode, files)
      expect(diagnostics.map((d) => `${d.file}:${d.line} TS${d.code} ${d.message}`)).toEqual([])
    })

    it('refuse to compile each misuse: a class, a field, a getter, a setter, a bare @cache, key/ttl/condition/tags functions that do not fit the method', () => {
      const expected = expectedFailures(mode)
      expect(expected.size).toBeGreaterThanOrEqual(12)
      const { diagnostics } = diagnoseFixture('decorator-types', mode, ['misuse.ts'])
      const found = new Map<number, number[]>()
      for (const d of diagnostics) {
        expect(d.file, d.message).toBe('misuse.ts')
        found.set(d.line!, [...(found.get(d.line!) ?? []), d.code])
      }
      for (const [line, code] of expected) expect(found.get(line) ?? [], `misuse.ts:${line}`).toContain(code)
      // Nothing else fails: each diagnostic is on a line that must fail.
      const unexpected = diagnostics.filter((d) => !expected.has(d.line!))
      expect(unexpected.map((d) => `misuse.ts:${d.line} TS${d.code} ${d.message}`)).toEqual([])
    })
  },
)
