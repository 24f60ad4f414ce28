import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { type FaultProxy, type RedisServer, startFaultProxy, startRedis } from '@cache/test-servers'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const redis = pathToFileURL(join(__dirname, '../dist/index.js')).href

/**
 * A real child process: it counts once, says `armed`, waits for `go` on stdin, then makes one
 * incr and says how it ended — and then its script is over. Every `error` event it gets is printed
 * as a JSON line. `onLine` answers each line the child prints (to break the link in between).
 */
function child(url: string, onLine: (line: string) => Promise<string | undefined>): Promise<string[]> {
  const source = `
    const { redisBackend } = await import(${JSON.stringify(redis)})
    const cache = redisBackend(${JSON.stringify(url)}, { namespace: 'exiting', timeout: '1s', maxReconnectDelay: '100ms', logger: false })
    cache.on('error', (event) => console.log(JSON.stringify({ event: event.operation, key: event.key, message: String(event.error?.message) })))
    await cache.incr('c')
    console.log('armed')
    await new Promise((resolve) => process.stdin.once('data', resolve))
    process.stdin.destroy()
    await cache.incr('c').then((n) => console.log('counted ' + n), (error) => console.log('failed ' + error.name))
  `
  const proc = spawn(process.execPath, ['--input-type=module', '-e', source], { stdio: 'pipe' })
  const lines: string[] = []
  let buffered = ''
  proc.stdout.on('data', (chunk) => {
    buffered += chunk
    let end = buffered.indexOf('\n')
    while (end >= 0) {
      const line = buffered.slice(0, end)
      buffered = buffered.slice(end + 1)
      lines.push(line)
      void onLine(line).then((answer) => {
        if (answer !== undefined) proc.stdin.write(answer)
      })
      end = buffered.indexOf('\n')
    }
  })
  proc.stderr.on('data', (chunk) => lines.push(`stderr ${chunk}`))
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL')
      lines.push('hung')
    }, 15_000)
    proc.once('exit', () => {
      clearTimeout(timer)
      resolve(lines)
    })
  })
}

describe('a process whose event loop empties while an incr is being settled', () => {
  let server: RedisServer
  let proxy: FaultProxy
  let direct: Redis
  beforeAll(async () => {
    server = await startRedis({ spawn: true })
    proxy = await startFaultProxy(server)
    direct = new Redis(server.port, server.host)
  })
  afterAll(async () => {
    direct?.disconnect()
    await proxy?.close()
    await server?.stop()
  })

  it('gives the settle a last check before it exits and reports that the failed incr was applied', async () => {
    const lines = await child(`redis://${proxy.host}:${proxy.port}`, async (line) => {
      if (line === 'armed') {
        // The server runs the next incr; its reply is lost with the link, which cannot come back
        // until the call has failed.
        void proxy.dropNextReply()
        await proxy.refuse()
        return 'go\n'
      }
      if (line.startsWith('failed')) await proxy.listen()
      return undefined
    })
    expect(lines).toContain('failed CacheUnavailableError')
    expect(await direct.get('exiting:c')).toBe('2')
    // Before, the process exited with the settle dropped: no event said the failed incr was applied.
    const events = lines.filter((line) => line.startsWith('{')).map((line) => JSON.parse(line))
    const said = events.filter((event) => /applied although it was reported failed/.test(event.message))
    expect(said).toEqual([
      expect.objectContaining({
        event: 'incr',
        key: 'c',
        message: expect.stringMatching(/^redis: incr of "c" was applied although it was reported failed/),
      }),
    ])
    expect(lines).not.toContain('hung')
  }, 30_000)
})
