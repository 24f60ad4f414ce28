import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { memoryBackend } from '@cache/memory'
import { redisBackend } from '@cache/redis'
import { type RedisServer, recorder, startRedis, until } from '@cache/test-servers'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { multiLevel, redisBus } from '../src/index.js'

describe('a chain whose shared level is killed and restarted', () => {
  let server: RedisServer
  beforeAll(async () => {
    server = await startRedis({ spawn: true })
  })
  afterAll(async () => {
    await server?.stop()
  })

  it('says once that the level is skipped and once that it is back, as do the backend and the bus', async () => {
    const logger = recorder()
    const address = `127.0.0.1:${server.port}`
    const bus = redisBus(server.url, { heartbeat: '200ms', logger })
    const chain = multiLevel({
      levels: [
        memoryBackend(),
        redisBackend(server.url, { timeout: '200ms', maxReconnectDelay: '100ms', logger }),
      ],
      breaker: { failureThreshold: 2, openFor: '200ms' },
      bus,
      logger,
    })
    try {
      await bus.ready()
      await chain.set('k', 1)
      expect(logger.lines).toEqual([])

      await server.process!.kill()
      for (let i = 0; i < 20; i++) await chain.get(`miss${i}`).catch(() => {})
      await until(() => logger.lines.length >= 3)
      await new Promise((resolve) => setTimeout(resolve, 600)) // probes fail, heartbeats stay away
      const down = [...logger.lines].sort()
      expect(down).toHaveLength(3)
      expect(down[0]).toMatch(
        new RegExp(`^error \\[@cache\\] invalidation bus: the link to Redis \\(${address}\\) is down: `),
      )
      expect(down[1]).toMatch(
        /^error \[@cache\] multi-level: level 2 \(redis\) is skipped after 2 failures in a row \(redis: /,
      )
      expect(down[2]).toMatch(new RegExp(`^error \\[@cache\\] redis: cannot reach ${address}: `))

      await server.process!.start()
      // The chain probes the level when it is used.
      const back = () => logger.lines.filter((line) => line.startsWith('info')).length
      for (let i = 0; i < 200 && back() < 3; i++) {
        await chain.get('probe')
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
      await chain.set('k', 2)
      expect(await chain.get('k')).toBe(2)
      expect(logger.lines.slice(3).sort()).toEqual([
        `info [@cache] invalidation bus: the link to Redis (${address}) is back.`,
        'info [@cache] multi-level: level 2 (redis) answers again and is back in use.',
        `info [@cache] redis: ${address} answers again.`,
      ])
    } finally {
      await chain.close()
      await bus.close()
    }
  })
})

describe('a script that never calls close()', () => {
  let server: RedisServer
  beforeAll(async () => {
    server = await startRedis()
  })
  afterAll(async () => {
    await server?.stop()
  })

  it('exits once its work is done, with a bus', async () => {
    const load = (name: string) =>
      JSON.stringify(pathToFileURL(join(__dirname, `../../${name}/dist/index.js`)).href)
    const source = `
      const { multiLevel, redisBus } = await import(${load('multi-level')})
      const { memoryBackend } = await import(${load('memory')})
      const { redisBackend } = await import(${load('redis')})
      const bus = redisBus(${JSON.stringify(server.url)})
      const chain = multiLevel({ levels: [memoryBackend(), redisBackend(${JSON.stringify(server.url)}, { namespace: 'exit-test' })], bus })
      await bus.ready()
      await chain.set('k', 'v')
      console.log(await chain.get('k'))
    `
    const child = spawn(process.execPath, ['--input-type=module', '-e', source], { stdio: 'pipe' })
    let output = ''
    child.stdout.on('data', (chunk) => (output += chunk))
    child.stderr.on('data', (chunk) => (output += chunk))
    const code = await new Promise<number | 'hung'>((resolve) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL')
        resolve('hung')
      }, 8_000)
      child.once('exit', (exit) => {
        clearTimeout(timer)
        resolve(exit ?? -1)
      })
    })
    expect(output).toBe('v\n')
    expect(code).toBe(0)
  })
})
