/** Starts the built demo as a child process on a free port, for the end-to-end tests. */
import { type ChildProcess, spawn } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort } from '@cache/test-servers'

export const demoDir = join(dirname(fileURLToPath(import.meta.url)), '..')

export interface Demo {
  base: string
  stop(): Promise<void>
}

export async function startDemo(env: Record<string, string>, serverFile = 'dist/server.js'): Promise<Demo> {
  const port = await freePort()
  const child: ChildProcess = spawn(process.execPath, [serverFile], {
    cwd: demoDir,
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', CATALOG_DELAY_MS: '50', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`demo did not start:\n${output}`)), 15_000)
    const onData = (chunk: Buffer) => {
      output += chunk
      if (output.includes('listening on')) {
        clearTimeout(timer)
        resolve()
      }
    }
    child.stdout!.on('data', onData)
    child.stderr!.on('data', onData)
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`demo exited with ${code}:\n${output}`))
    })
  })
  return {
    base: `http://127.0.0.1:${port}`,
    async stop() {
      if (child.exitCode !== null) return
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.kill('SIGTERM')
      await exited
    },
  }
}
