import { spawn } from 'node:child_process'

/** How a script run by {@link runNodeScript} ended, and what it printed. */
export interface NodeScriptOutcome {
  /** Its exit code, or `'hung'` when it had not exited in time (it was killed). */
  code: number | 'hung'
  /** What it wrote to stdout and stderr, in the order it came. */
  output: string
}

/**
 * Runs `source` as an ES module in a fresh Node process (to see whether a script that never calls
 * `close()` exits, and what it printed meanwhile). Resolves once it exits, or after `ms` with
 * `'hung'`, when it is killed (SIGKILL).
 */
export function runNodeScript(source: string, ms = 8_000): Promise<NodeScriptOutcome> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', source], { stdio: 'pipe' })
  let output = ''
  child.stdout.on('data', (chunk) => (output += chunk))
  child.stderr.on('data', (chunk) => (output += chunk))
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      resolve({ code: 'hung', output })
    }, ms)
    child.once('exit', (code) => {
      clearTimeout(timer)
      resolve({ code: code ?? -1, output })
    })
  })
}
