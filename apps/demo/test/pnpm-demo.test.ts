/**
 * `pnpm demo` as a newcomer runs it: the real command at the repository root, as a child process
 * on a free port. What it prints before the URL must fit on a screen; the URL must answer.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort } from '@cache/test-servers'
import { afterAll, describe, expect, it } from 'vitest'
import { demoDir } from './start-demo.js'

const repoRoot = join(demoDir, '..', '..')
const URL_LINE = /listening on (http:\/\/\S+)/

describe('pnpm demo', () => {
  let child: ChildProcess | undefined
  const diskPath = mkdtempSync(join(tmpdir(), 'cache-pnpm-demo-'))

  afterAll(async () => {
    if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child!.once('exit', resolve))
      // pnpm runs the demo in a child of its own: end the whole group this test started.
      process.kill(-child.pid, 'SIGTERM')
      await exited
    }
    rmSync(diskPath, { recursive: true, force: true })
  })

  it('prints a few lines, then the URL, which serves the home page', async () => {
    const port = await freePort()
    child = spawn('pnpm', ['demo'], {
      cwd: repoRoot,
      env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', CACHE_DISK_PATH: diskPath },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    })
    let output = ''
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no URL after 90 s:\n${output}`)), 90_000)
      const onData = (chunk: Buffer) => {
        output += chunk
        const found = URL_LINE.exec(output)
        if (found) {
          clearTimeout(timer)
          resolve(found[1]!)
        }
      }
      child!.stdout!.on('data', onData)
      child!.stderr!.on('data', onData)
      child!.once('exit', (code) => {
        clearTimeout(timer)
        reject(new Error(`pnpm demo exited with ${code}:\n${output}`))
      })
    })
    expect(url).toBe(`http://127.0.0.1:${port}`)
    const before = output.slice(0, output.search(URL_LINE)).split('\n')
    const printed = before.filter((line) => line.trim() !== '')
    expect(printed.length, `printed before the URL:\n${printed.join('\n')}`).toBeLessThanOrEqual(5)
    const home = await fetch(url)
    expect(home.status).toBe(200)
    expect(await home.text()).toContain('@cache demo')
  }, 120_000)
})
