import { type RedisServer, startRedis } from '@cache/test-servers'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { redisBus } from '../src/index.js'

/** A bus whose Redis user the ACL refuses the channel: it can never be up, and says so at once. */
describe('a bus refused by the Redis ACL (NOPERM)', () => {
  let server: RedisServer
  beforeAll(async () => {
    server = await startRedis({ spawn: true })
    const admin = new Redis(server.url)
    await admin.call('ACL', 'SETUSER', 'nochan', 'on', '>pw', '~*', 'resetchannels', '+@all')
    await admin.call('ACL', 'SETUSER', 'nopub', 'on', '>pw', '~*', '&*', '+@all', '-publish')
    await admin.call('ACL', 'SETUSER', 'nosub', 'on', '>pw', '~*', '&*', '+@all', '-subscribe')
    admin.disconnect()
  })
  afterAll(async () => {
    await server?.stop()
  })

  for (const user of ['nochan', 'nopub', 'nosub']) {
    it(`ready() rejects naming NOPERM, and an error event is emitted at once (${user})`, async () => {
      const bus = redisBus(`redis://${user}:pw@${server.host}:${server.port}`, { logger: false })
      const errors: unknown[] = []
      bus.on('error', (event) => errors.push(event.error))
      try {
        const outcome = await Promise.race([
          bus.ready().then(
            () => 'resolved',
            (error: Error & { code?: string }) => `${error.code}: ${error.message}`,
          ),
          new Promise((resolve) => setTimeout(resolve, 3000, 'pending')),
        ])
        // Before: still pending (an await at start-up hung for ever), and no error event.
        expect(outcome).toMatch(/^CACHE_CONFIG: .*NOPERM/)
        expect(errors.length).toBeGreaterThan(0)
        expect(String(errors[0])).toMatch(/NOPERM/)
      } finally {
        await bus.close()
      }
    })
  }
})

/** A user granted the bus's channel but not `<channel>:mute`: the bus works, and says once what it misses. */
describe('a bus whose user may not use the mute channel', () => {
  let server: RedisServer
  beforeAll(async () => {
    server = await startRedis({ spawn: true })
    const admin = new Redis(server.url)
    await admin.call('ACL', 'SETUSER', 'onlychan', 'on', '>pw', '~*', 'resetchannels', '&only', '+@all')
    admin.disconnect()
  })
  afterAll(async () => {
    await server?.stop()
  })

  it('is up, and reports the refusal once (error event naming the channel and the grant)', async () => {
    const bus = redisBus(`redis://onlychan:pw@${server.host}:${server.port}`, {
      channel: 'only',
      heartbeat: '100ms',
      logger: false,
    })
    const errors: Error[] = []
    bus.on('error', (event) => errors.push(event.error as Error))
    try {
      await bus.ready()
      await new Promise((resolve) => setTimeout(resolve, 500))
      expect(bus.state).toBe('up')
      // Before: refused in silence (the probe's NOPERM was caught and dropped).
      expect(errors).toHaveLength(1)
      expect(errors[0]!.message).toMatch(/'only:mute' \(NOPERM.*&only\*/)
    } finally {
      await bus.close()
    }
  })
})
