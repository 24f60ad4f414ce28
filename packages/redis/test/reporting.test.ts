import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { CacheUnavailableError } from '@cache/core'
import {
  freePort,
  type RedisCluster,
  type RedisServer,
  recorder,
  runNodeScript,
  startRedis,
  startRedisCluster,
  until,
} from '@cache/test-servers'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { type RedisBackend, redisBackend } from '../src/index.js'

const opened: RedisBackend[] = []
afterEach(async () => {
  await Promise.all(opened.splice(0).map((backend) => backend.close()))
})

describe('a Redis nobody listens on', () => {
  it('is reported once, at start-up, with its address and the client error, before any operation', async () => {
    const port = await freePort()
    const logger = recorder()
    const cache = redisBackend(`redis://127.0.0.1:${port}`, { logger, timeout: '200ms' })
    opened.push(cache)
    await until(() => logger.lines.length > 0)
    for (let i = 0; i < 5; i++) await cache.get('k').catch(() => {})
    await new Promise((resolve) => setTimeout(resolve, 300)) // a few reconnection attempts
    expect(logger.lines).toEqual([
      `error [@cache] redis: cannot reach 127.0.0.1:${port}: connect ECONNREFUSED 127.0.0.1:${port}. Operations fail fast with CacheUnavailableError (memoized functions run uncached) while the client keeps reconnecting.`,
    ])
  })

  it('fails an operation with an error that names the address and carries the client error as cause', async () => {
    const port = await freePort()
    const cache = redisBackend(`redis://127.0.0.1:${port}`, { logger: false, timeout: '200ms' })
    opened.push(cache)
    await cache.ready('300ms').catch(() => {})
    const error = await cache.get('k').catch((e: unknown) => e)
    expect(error).toBeInstanceOf(CacheUnavailableError)
    expect((error as Error).message).toMatch(
      new RegExp(
        `^redis: get on 127\\.0\\.0\\.1:${port} failed: not connected \\((reconnecting|connecting)\\): connect ECONNREFUSED 127\\.0\\.0\\.1:${port}$`,
      ),
    )
    expect((error as CacheUnavailableError).server).toBe(`127.0.0.1:${port}`)
    expect((error as Error).cause).toBeInstanceOf(Error)
    expect((error as { cause: { code?: string } }).cause.code).toBe('ECONNREFUSED')
  })
})

describe('a Redis that is killed and restarted', () => {
  let server: RedisServer
  beforeAll(async () => {
    server = await startRedis({ spawn: true })
  })
  afterAll(async () => {
    await server?.stop()
  })

  it('is reported once when it goes down and once when it is back, however many operations failed', async () => {
    const logger = recorder()
    const cache = redisBackend(server.url, { logger, timeout: '200ms', maxReconnectDelay: '100ms' })
    opened.push(cache)
    await cache.set('k', 1)
    expect(logger.lines).toEqual([])

    await server.process!.kill()
    for (let i = 0; i < 20; i++) await cache.get('k').catch(() => {})
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(logger.lines).toHaveLength(1)
    expect(logger.lines[0]).toMatch(
      new RegExp(`^error \\[@cache\\] redis: cannot reach 127\\.0\\.0\\.1:${server.port}: `),
    )

    await server.process!.start()
    await cache.ready('5s')
    await cache.set('k', 2)
    expect(await cache.get('k')).toBe(2)
    expect(logger.lines).toEqual([
      logger.lines[0],
      `info [@cache] redis: 127.0.0.1:${server.port} answers again.`,
    ])

    // A second outage is a new cause: reported again, once.
    await server.process!.kill()
    for (let i = 0; i < 10; i++) await cache.get('k').catch(() => {})
    await until(() => logger.lines.length === 3)
    await server.process!.start()
    await cache.ready('5s')
    await until(() => logger.lines.length === 4)
    expect(logger.lines.slice(2).map((line) => line.split(' ')[0])).toEqual(['error', 'info'])
  })
})

describe('a Redis that is healthy but slow to answer (a loaded machine)', () => {
  let server: RedisServer
  beforeAll(async () => {
    server = await startRedis({ spawn: true })
  })
  afterAll(async () => {
    server?.process?.thaw()
    await server?.stop()
  })

  it('is not reported as unreachable when its first connection and first operations take longer than the timeout', async () => {
    const logger = recorder()
    // Stopped, the server still accepts connections (the kernel does) but answers nothing.
    await server.process!.freeze()
    const cache = redisBackend(server.url, { logger, timeout: '200ms' })
    opened.push(cache)
    try {
      // Operations fail fast meanwhile (the caller hears it), for about a second.
      for (let i = 0; i < 4; i++)
        expect(await cache.get('k').catch((e: unknown) => e)).toBeInstanceOf(CacheUnavailableError)
      await new Promise((resolve) => setTimeout(resolve, 300))
    } finally {
      server.process!.thaw()
    }
    await cache.ready('5s')
    await cache.set('k', 1)
    expect(await cache.get('k')).toBe(1)
    expect(logger.lines).toEqual([])
  })

  it('is reported once it has answered nothing for 5 s while operations time out, and again once it answers', async () => {
    const logger = recorder()
    const cache = redisBackend(server.url, { logger, timeout: '200ms' })
    opened.push(cache)
    await cache.set('k', 1)
    await server.process!.freeze()
    const frozenAt = Date.now()
    try {
      for (let i = 0; i < 100 && logger.lines.length === 0; i++) {
        await cache.get('k').catch(() => {})
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
      expect(Date.now() - frozenAt).toBeGreaterThanOrEqual(5_000)
    } finally {
      server.process!.thaw()
    }
    expect(logger.lines).toEqual([
      expect.stringMatching(
        new RegExp(
          `^error \\[@cache\\] redis: cannot reach 127\\.0\\.0\\.1:${server.port}: no answer for [5-9] s \\(each operation gave up after 200 ms\\)\\. Operations fail fast`,
        ),
      ),
    ])
    await cache.ready('5s')
    // An answer a second after the last failure ends the outage.
    for (let i = 0; i < 50 && logger.lines.length < 2; i++) {
      expect(await cache.get('k')).toBe(1)
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    expect(logger.lines[1]).toBe(`info [@cache] redis: 127.0.0.1:${server.port} answers again.`)
  })
})

describe('a script that never calls close()', () => {
  let server: RedisServer
  let cluster: RedisCluster
  beforeAll(async () => {
    ;[server, cluster] = await Promise.all([startRedis(), startRedisCluster(3)])
  }, 60_000)
  afterAll(async () => {
    await Promise.all([server?.stop(), cluster?.stop()])
  })

  const redis = pathToFileURL(join(__dirname, '../dist/index.js')).href

  it('exits once its work is done, with Redis up', async () => {
    const { code, output } = await runNodeScript(`
      const { redisBackend } = await import(${JSON.stringify(redis)})
      const cache = redisBackend(${JSON.stringify(server.url)}, { namespace: 'exit-test' })
      await cache.set('k', 'v')
      console.log(await cache.get('k'))
      const other = redisBackend(${JSON.stringify(server.url)}, { namespace: 'exit-test' })
      await other.incr('n')
      await other.close() // a close that is awaited completes before the process ends
      console.log('closed')
    `)
    expect(output).toBe('v\nclosed\n')
    expect(code).toBe(0)
  })

  it('exits once its work is done, on a cluster and with a near cache', async () => {
    const clusterUrl = `redis+cluster://${cluster.nodes.map((n) => `${n.host}:${n.port}`).join(',')}`
    const { code, output } = await runNodeScript(`
      const { redisBackend } = await import(${JSON.stringify(redis)})
      // (A 2 s timeout: a fresh process connecting to every node of a cluster on a loaded machine
      // can take longer than the 300 ms default, and how long does not matter here.)
      const onCluster = redisBackend(${JSON.stringify(clusterUrl)}, { namespace: 'exit-test', timeout: '2s' })
      const near = redisBackend(${JSON.stringify(server.url)}, { namespace: 'exit-test', nearCache: true, timeout: '2s' })
      await onCluster.setMany([{ key: 'a', value: 1 }, { key: 'b', value: 2 }])
      await near.set('k', 'v')
      console.log(JSON.stringify(await onCluster.getMany(['a', 'b'])), await near.get('k'), await near.get('k'))
    `)
    expect(output).toBe('[1,2] v v\n')
    expect(code).toBe(0)
  })

  it('waits in an awaited ready() with a near cache, then runs the rest of the script', async () => {
    const { code, output } = await runNodeScript(`
      const { redisBackend } = await import(${JSON.stringify(redis)})
      const near = redisBackend(${JSON.stringify(server.url)}, { namespace: 'ready-near', nearCache: true, timeout: '2s' })
      await near.ready('5s')
      console.log('ready')
      await near.set('k', 'v')
      console.log(await near.get('k'))
    `)
    expect(output).toBe('ready\nv\n')
    expect(code).toBe(0)
  })

  it('exits with Redis unreachable, after saying so', async () => {
    const port = await freePort()
    const { code, output } = await runNodeScript(`
      const { redisBackend } = await import(${JSON.stringify(redis)})
      const cache = redisBackend('redis://127.0.0.1:${port}')
      await cache.get('k').catch((error) => console.log(error.message))
    `)
    expect(output).toContain(`[@cache] redis: cannot reach 127.0.0.1:${port}`)
    expect(output).toContain(`redis: get on 127.0.0.1:${port} failed`)
    expect(code).toBe(0)
  })

  it('keeps the process alive while an operation waits for its reply', async () => {
    // The connection does not hold the process open, but an operation in flight does.
    const { code, output } = await runNodeScript(`
      const { redisBackend } = await import(${JSON.stringify(redis)})
      const cache = redisBackend(${JSON.stringify(server.url)}, { namespace: 'exit-test', timeout: '2s' })
      await cache.ready()
      const slow = await cache.client.eval("local t = redis.call('TIME') local s = t[1] + 0.3 repeat t = redis.call('TIME') until t[1] + t[2] / 1e6 >= s return 'late'", 0)
      console.log(slow)
    `)
    expect(output).toBe('late\n')
    expect(code).toBe(0)
  })
})
