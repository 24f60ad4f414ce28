import { join } from 'node:path'
import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'
import { CacheUnavailableError } from '@cache/core'
import {
  freePort,
  type MemcachedServer,
  recorder,
  runNodeScript,
  startMemcached,
  until,
} from '@cache/test-servers'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { type MemcachedBackend, memcachedBackend } from '../src/index.js'

const require = createRequire(import.meta.url)
const opened: MemcachedBackend[] = []
afterEach(async () => {
  await Promise.all(opened.splice(0).map((backend) => backend.close()))
})

describe('a memcached server nobody listens on', () => {
  it('is reported once, at start-up, before any operation, with its address and the error', async () => {
    const port = await freePort()
    const logger = recorder()
    const cache = memcachedBackend(`127.0.0.1:${port}`, { logger, timeout: '200ms' })
    opened.push(cache)
    await until(() => logger.lines.length > 0)
    for (let i = 0; i < 5; i++) await cache.get('k').catch(() => {})
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(logger.lines).toEqual([
      `error [@cache] memcached: cannot reach 127.0.0.1:${port}: connect ECONNREFUSED 127.0.0.1:${port}. Its keys fail with CacheUnavailableError (memoized functions run uncached) until it answers; it is retried in the background.`,
    ])
    const error = await cache.get('k').catch((e: unknown) => e)
    expect(error).toBeInstanceOf(CacheUnavailableError)
    expect((error as CacheUnavailableError).server).toBe(`127.0.0.1:${port}`)
    expect((error as Error).message).toContain(`127.0.0.1:${port}`)
  })
})

describe('a memcached server that is killed and restarted', () => {
  let server: MemcachedServer
  beforeAll(async () => {
    server = await startMemcached({ spawn: true })
  })
  afterAll(async () => {
    await server?.stop()
  })

  it('is reported once when it goes down and once when it is back', async () => {
    const logger = recorder()
    const cache = memcachedBackend(server.server, {
      logger,
      timeout: '200ms',
      eject: { retryAfter: '100ms' },
    })
    opened.push(cache)
    await cache.set('k', 1)
    expect(logger.lines).toEqual([])
    await server.process!.kill()
    for (let i = 0; i < 20; i++) await cache.get('k').catch(() => {})
    expect(logger.lines).toHaveLength(1)
    expect(logger.lines[0]).toMatch(
      new RegExp(`^error \\[@cache\\] memcached: cannot reach ${server.server.replace(/\./g, '\\.')}: `),
    )
    await server.process!.start()
    await until(() => logger.lines.length === 2)
    expect(logger.lines[1]).toBe(`info [@cache] memcached: ${server.server} answers again.`)
    await cache.set('k', 2)
    expect(await cache.get('k')).toBe(2)
    expect(logger.lines).toHaveLength(2)
  })
})

describe('a memcached server that is healthy but slow to answer (a loaded machine)', () => {
  let server: MemcachedServer
  beforeAll(async () => {
    server = await startMemcached({ spawn: true })
  })
  afterAll(async () => {
    server?.process?.thaw()
    await server?.stop()
  })

  it('is not reported as unreachable when its start-up check and first operations take longer than the timeout', async () => {
    const logger = recorder()
    // Stopped, the server still accepts connections (the kernel does) but answers nothing.
    await server.process!.freeze()
    const cache = memcachedBackend(server.server, {
      logger,
      timeout: '200ms',
      eject: { retryAfter: '100ms' },
    })
    opened.push(cache)
    try {
      // Operations fail fast meanwhile (the caller hears it), for about a second.
      for (let i = 0; i < 4; i++)
        expect(await cache.get('k').catch((e: unknown) => e)).toBeInstanceOf(CacheUnavailableError)
      await new Promise((resolve) => setTimeout(resolve, 300))
    } finally {
      server.process!.thaw()
    }
    await until(() => cache.serverStats()[0]!.state === 'up')
    await cache.set('k', 1)
    expect(await cache.get('k')).toBe(1)
    expect(logger.lines).toEqual([])
  })

  it('is reported once it has answered nothing for 5 s, and again once it answers', async () => {
    const logger = recorder()
    const cache = memcachedBackend(server.server, {
      logger,
      timeout: '200ms',
      eject: { retryAfter: '100ms', maxRetryAfter: '200ms' },
    })
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
          `^error \\[@cache\\] memcached: cannot reach ${server.server.replace(/\./g, '\\.')}: no answer for [5-9] s \\(each operation gave up after 200 ms\\)\\. Its keys fail`,
        ),
      ),
    ])
    await until(() => logger.lines.length === 2)
    expect(logger.lines[1]).toBe(`info [@cache] memcached: ${server.server} answers again.`)
  })
})

describe('a memcached server frozen after it was ejected', () => {
  it('is reported once it has answered nothing for 5 s, though its next retry is later (backing off)', async () => {
    const server = await startMemcached({ spawn: true })
    const logger = recorder()
    const cache = memcachedBackend(server.server, { logger, timeout: '200ms' })
    opened.push(cache)
    try {
      await cache.set('k', 1)
      await server.process!.freeze()
      const frozenAt = Date.now()
      // Two failed reads eject it; then only the background retries (250 ms, 500 ms, 1 s, 2 s, 4 s…) time out.
      for (let i = 0; i < 2; i++) await cache.get('k').catch(() => {})
      while (logger.lines.length === 0 && Date.now() - frozenAt < 8_000)
        await new Promise((resolve) => setTimeout(resolve, 50))
      const after = Date.now() - frozenAt
      expect(logger.lines).toEqual([expect.stringMatching(/cannot reach .*: no answer for 5 s/)])
      expect(after).toBeGreaterThanOrEqual(5_000)
      expect(after).toBeLessThan(5_800)
    } finally {
      server.process!.thaw()
      await cache.close()
      await server.stop()
    }
  })
})

describe('a script that never calls close()', () => {
  let server: MemcachedServer
  beforeAll(async () => {
    server = await startMemcached()
  })
  afterAll(async () => {
    await server?.stop()
  })

  const memcached = pathToFileURL(join(__dirname, '../dist/index.js')).href

  it('exits once its work is done, and waits for replies in flight', async () => {
    const { code, output } = await runNodeScript(`
      const { memcachedBackend } = await import(${JSON.stringify(memcached)})
      const cache = memcachedBackend(${JSON.stringify(server.server)}, { namespace: 'exit-test' })
      await cache.set('k', 'v')
      console.log(await cache.get('k'))
      await new Promise((resolve) => setTimeout(resolve, 50))
      console.log(JSON.stringify(await Promise.all([cache.get('k'), cache.incr('n'), cache.has('k')])))
    `)
    expect(output).toMatch(/^v\n\["v",\d+,true\]\n$/)
    expect(code).toBe(0)
  })

  it("leaves a client passed in as it was: its owner's own requests still keep the process alive", async () => {
    const memjsUrl = pathToFileURL(require.resolve('memjs')).href
    const { code, output } = await runNodeScript(`
      const { memcachedBackend } = await import(${JSON.stringify(memcached)})
      const { default: memjs } = await import(${JSON.stringify(memjsUrl)})
      const client = memjs.Client.create(${JSON.stringify(server.server)})
      const cache = memcachedBackend(${JSON.stringify(server.server)}, { namespace: 'own-client', logger: false, client })
      await cache.set('k', 'v')
      console.log(await cache.get('k'))
      await new Promise((resolve) => setTimeout(resolve, 50))
      await client.set('mine', 'hello', {})
      console.log((await client.get('mine')).value.toString())
      await cache.close()
      client.close()
    `)
    expect(output).toBe('v\nhello\n')
    expect(code).toBe(0)
  })

  it('exits with memcached unreachable, after saying so', async () => {
    const port = await freePort()
    const { code, output } = await runNodeScript(`
      const { memcachedBackend } = await import(${JSON.stringify(memcached)})
      const cache = memcachedBackend('127.0.0.1:${port}')
      await new Promise((resolve) => setTimeout(resolve, 100))
    `)
    expect(output).toContain(`[@cache] memcached: cannot reach 127.0.0.1:${port}`)
    expect(code).toBe(0)
  })
})
