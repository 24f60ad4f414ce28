import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { describe, expect, it } from 'vitest'

const core = pathToFileURL(join(__dirname, '../dist/backend.js')).href

describe('the default logger', () => {
  it('writes to standard error only, so a program whose standard output is its data keeps it clean', () => {
    const script = `
      const { IncidentLog, warnOnce } = await import(${JSON.stringify(core)})
      const log = new IncidentLog(undefined)
      log.report('down', 'server down')
      log.resolve('down', 'server back')
      warnOnce('x', 'a warning')
      console.log(JSON.stringify({ data: 1 }))
    `
    const result = spawnSync(process.execPath, ['--input-type=module', '-e', script], { timeout: 10_000 })
    expect(result.stdout.toString()).toBe('{"data":1}\n')
    expect(result.stderr.toString()).toBe('[@cache] server down\n[@cache] server back\n[@cache] a warning\n')
  })
})
