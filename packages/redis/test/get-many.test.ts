import { createServer, type Server, type Socket, connect } from 'node:net'
import { type RedisServer, startRedis } from '@cache/test-servers'
import { CacheClosedError } from '@cache/core'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type RedisBackend, redisBackend } from '../src/index.js'

/*
 * getMany while another client writes: a relay between the backend and a real redis-server lets
 * the other client's write reach the server right after the first command of the getMany (once its
 * reply has come back) and before any further command of it, the worst moment for a getMany made
 * of several commands.
 */

/** A loopback relay to `port` that can let another client in between two commands it forwards. */
interface Relay {
  readonly url: string
  /**
   * The next command the backend sends is forwarded alone; once the server answers it, `write`
   * runs and the commands after it are held until it is done. Resolves when `write` has run.
   */
  between(write: () => Promise<unknown>): Promise<void>
  close(): Promise<void>
}

/** Where the RESP command at the start of `buffer` ends (ioredis sends arrays of bulk strings). */
function commandEnd(buffer: Buffer): number | undefined {
  let at = buffer.indexOf('\r\n')
  if (at < 0) return undefined
  const count = Number(buffer.subarray(1, at).toString())
  at += 2
  for (let i = 0; i < count; i++) {
    const line = buffer.indexOf('\r\n', at)
    if (line < 0) return undefined
    at = line + 2 + Number(buffer.subarray(at + 1, line).toString()) + 2
    if (at > buffer.length) return undefined
  }
  return at
}

async function startRelay(port: number): Promise<Relay> {
  let armed: { write: () => Promise<unknown>; done: () => void } | undefined
  const sockets = new Set<Socket>()
  const server: Server = createServer((client) => {
    const upstream = connect(port, '127.0.0.1')
    for (const socket of [client, upstream]) {
      sockets.add(socket)
      socket.on('error', () => socket.destroy())
      socket.on('close', () => sockets.delete(socket))
    }
    client.on('close', () => upstream.destroy())
    upstream.on('close', () => client.destroy())
    let pending = Buffer.alloc(0)
    let holding = false
    let answered: (() => void) | undefined
    upstream.on('data', (data) => {
      client.write(data)
      const next = answered
      answered = undefined
      next?.()
    })
    const pump = () => {
      while (!holding) {
        const end = commandEnd(pending)
        if (end === undefined) return
        upstream.write(pending.subarray(0, end))
        pending = pending.subarray(end)
        const intruder = armed
        if (intruder === undefined) continue
        armed = undefined
        holding = true
        answered = () =>
          void intruder.write().then(() => {
            holding = false
            intruder.done()
            pump()
          })
      }
    }
    client.on('data', (data) => {
      pending = Buffer.concat([pending, data])
      pump()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address() as { port: number }
  return {
    url: `redis://127.0.0.1:${address.port}`,
    between: (write) => new Promise<void>((done) => (armed = { write, done })),
    close: () => {
      for (const socket of sockets) socket.destroy()
      return new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

describe('getMany while another client writes (one node)', () => {
  let redis: RedisServer
  let relay: Relay
  let cache: RedisBackend
  let other: RedisBackend
  beforeAll(async () => {
    redis = await startRedis()
    relay = await startRelay(redis.port)
    cache = redisBackend(relay.url, { namespace: 'many' })
    other = redisBackend(redis.url, { namespace: 'many' })
    await Promise.all([cache.ready(), other.ready()])
  }, 30_000)
  afterAll(async () => {
    await Promise.all([cache?.close(), other?.close()])
    await relay?.close()
    await redis?.stop()
  })

  it('reads a key another client creates during the call as absent or as written, never as another type', async () => {
    await cache.set('here', 'H')
    const errors = cache.stats.errors
    const created = relay.between(() => other.set('new', 'N'))
    const read = await cache.getMany(['here', 'new', 'never']).then(
      (values) => values,
      (error: unknown) => error,
    )
    await created
    expect([
      ['H', undefined, undefined],
      ['H', 'N', undefined],
    ]).toContainEqual(read)
    expect(cache.stats.errors).toBe(errors)
    expect(await cache.get('new')).toBe('N')
  })

  it('still rejects a key of another type with WRONGTYPE when another client writes during the call', async () => {
    await other.set('here', 'H')
    await other.client.rpush('many:list', 'job1')
    const created = relay.between(() => other.set('new', 'N'))
    await expect(cache.getMany(['here', 'list', 'new'])).rejects.toThrow(/WRONGTYPE/)
    await created
  })
})

describe("getMany's second step (the types of the keys MGET answered nil)", () => {
  let redis: RedisServer
  let raw: Redis
  beforeAll(async () => {
    redis = await startRedis()
    raw = new Redis(redis.url)
  }, 30_000)
  afterAll(async () => {
    raw?.disconnect()
    await redis?.stop()
  })

  it('goes out for a call under way when close() is called, which resolves with its real result', async () => {
    for (const wait of ['none', 'tick', 'immediate'] as const) {
      const cache = redisBackend(redis.url, { namespace: `closing-${wait}`, logger: false })
      await cache.set('a', 1)
      const read = cache.getMany(['a', 'missing'])
      if (wait === 'tick') await new Promise((resolve) => process.nextTick(resolve))
      if (wait === 'immediate') await new Promise((resolve) => setImmediate(resolve))
      const closed = cache.close()
      expect(await read, wait).toEqual([1, undefined])
      await closed
      await expect(cache.getMany(['a', 'missing'])).rejects.toBeInstanceOf(CacheClosedError)
    }
  })

  it('an ACL user without TYPE gets an error that says getMany needs it, not a bare NOPERM', async () => {
    const user = `notype${process.pid}`
    await raw.call('ACL', 'SETUSER', user, 'on', '>secret', '~*', '+@all', '-type')
    const cache = redisBackend(redis.url.replace('redis://', `redis://${user}:secret@`), {
      namespace: 'notype',
      logger: false,
    })
    try {
      await cache.set('a', 1)
      expect(await cache.getMany(['a'])).toEqual([1])
      await expect(cache.getMany(['a', 'missing'])).rejects.toThrow(/NOPERM.*TYPE/s)
    } finally {
      await cache.close()
    }
  })

  it("caught in a MULTI the app's code opened on a shared client, fails saying so, not WRONGTYPE", async () => {
    const client = new Redis(redis.url)
    const cache = redisBackend(client, { namespace: 'multi', logger: false })
    try {
      await cache.set('a', 1)
      // The app's code opens MULTI on the client in a reply that comes back just before MGET's.
      const opened = client.get('unrelated').then(() => {
        client.multi({ pipeline: false })
      })
      const outcome = await cache.getMany(['a', 'missing']).then(
        (values) => ({ values }),
        (error: Error) => ({ error: error.message }),
      )
      await opened
      await client.exec()
      expect(outcome).toEqual({ error: expect.stringMatching(/inside a MULTI transaction/) })
      expect(JSON.stringify(outcome)).not.toMatch(/WRONGTYPE/)
    } finally {
      await cache.close()
      client.disconnect()
    }
  })
})
