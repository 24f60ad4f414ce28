import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { updateReadme } from '../src/report.js'

const dir = mkdtempSync(join(tmpdir(), 'cache-bench-readme-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('updateReadme', () => {
  it('adds the markers under a Performance heading at the end when they are missing', () => {
    const path = join(dir, 'a.md')
    writeFileSync(path, '# Project\n\nIntro.\n')
    updateReadme(path, 'first')
    expect(readFileSync(path, 'utf8')).toBe(
      '# Project\n\nIntro.\n\n## Performance\n\n<!-- bench:start -->\nfirst\n<!-- bench:end -->\n',
    )
  })

  it('replaces only what lies between the markers', () => {
    const path = join(dir, 'b.md')
    writeFileSync(path, 'before\n<!-- bench:start -->\nold\n<!-- bench:end -->\nafter\n')
    updateReadme(path, 'new')
    expect(readFileSync(path, 'utf8')).toBe('before\n<!-- bench:start -->\nnew\n<!-- bench:end -->\nafter\n')
  })
})
