import { describe, expect, it } from 'vitest'
import { runNodeScript } from '../src/index.js'

describe('runNodeScript', () => {
  it('gives the exit code and what the script wrote to stdout and stderr', async () => {
    const outcome = await runNodeScript(`console.log('out'); console.error('err'); process.exitCode = 3`)
    expect(outcome.code).toBe(3)
    expect(outcome.output.split('\n').sort()).toEqual(['', 'err', 'out'])
  })

  it("says 'hung' for a script that is still running after the wait", async () => {
    const outcome = await runNodeScript(`console.log('started'); setInterval(() => {}, 1000)`, 1000)
    expect(outcome).toEqual({ code: 'hung', output: 'started\n' })
  })
})
