import { type CacheEvent, CacheUnavailableError } from '@cache/core'
import { type RedisServer, recorder, startRedis, until } from '@cache/test-servers'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { redisBackend } from '../src/index.js'

/**
 * Redis refuses a step of the near cache's set-up once (an ACL change, then put back): the
 * invalidation connection is cut and its `SUBSCRIBE` or `CLIENT ID` refused, or the reading
 * connection is cut and its `CLIENT TRACKING` refused.
 */
const refusals = [
  {
    step: 'SUBSCRIBE',
    revoke: ['resetchannels'],
    grant: ['&*'],
    cut: 'cache-near-invalidations',
  },
  {
    step: 'CLIENT ID',
    revoke: ['-client|id'],
    grant: ['+client|id'],
    cut: 'cache-near-invalidations',
  },
  {
    step: 'CLIENT TRACKING',
    revoke: ['-client|tracking'],
    grant: ['+client|tracking'],
    cut: 'reader',
  },
]

describe('nearCache: a set-up step that Redis refuses once', () => {
  let server: RedisServer
  let admin: Redis
  beforeAll(async () => {
    server = await startRedis({ spawn: true })
    admin = new Redis(server.port, server.host)
  })
  afterAll(async () => {
    admin?.disconnect()
    await server?.stop()
  })

  it.each(refusals)(
    'serves no copy while $step is refused, misses no write of another backend, reports once, and near caches again once it is allowed',
    async ({ step, revoke, grant, cut }) => {
      const user = `near-${step.replace(/\W+/g, '-').toLowerCase()}`
      const namespace = `refused-${user}`
      await admin.call('ACL', 'SETUSER', user, 'reset', 'on', '>secret', '~*', '&*', '+@all')
      const log = recorder()
      const reader = redisBackend(`redis://${user}:secret@127.0.0.1:${server.port}?connectionName=reader`, {
        namespace,
        nearCache: { heartbeat: '100ms' },
        timeout: '200ms',
        maxReconnectDelay: '100ms',
        logger: log,
      })
      const errors: CacheEvent[] = []
      reader.on('error', (event) => errors.push(event))
      const writer = redisBackend(server.url, { namespace })
      try {
        await reader.ready()
        await writer.set('k', 'v0')
        expect(await reader.get('k')).toBe('v0')
        // Redis refuses the step from now on; the connection that runs it is cut, so it runs again.
        await admin.call('ACL', 'SETUSER', user, ...revoke)
        const clients = ((await admin.client('LIST')) as string).split('\n')
        const line = clients.find((l) => l.includes(` name=${cut} `))
        if (line !== undefined)
          await admin.client('KILL', 'ID', /^id=(\d+) /.exec(line)![1]!).catch(() => undefined)
        await until(() => errors.some((event) => event.operation === 'near cache'), 5000)
        // Every write of the other backend is read at once: no copy from before is served.
        for (let i = 1; i <= 5; i++) {
          await writer.set('k', `v${i}`)
          expect(await reader.get('k')).toBe(`v${i}`)
          expect(await reader.get('k')).toBe(`v${i}`)
          await new Promise((resolve) => setTimeout(resolve, 60))
        }
        // Allowed again: the set-up is tried again by itself, and near caching resumes.
        await admin.call('ACL', 'SETUSER', user, ...grant)
        await reader.ready('8s')
        await writer.set('k', 'v6')
        expect(await reader.get('k')).toBe('v6')
        await writer.set('k', 'v7')
        const deadline = Date.now() + 2000
        while ((await reader.get('k')) !== 'v7' && Date.now() < deadline)
          await new Promise((resolve) => setImmediate(resolve))
        expect(await reader.get('k')).toBe('v7')
        // Served from the process: the server is frozen and the read still answers.
        const pid = server.process!.pid!
        await server.process!.freeze()
        try {
          expect(await reader.get('k')).toBe('v7')
        } finally {
          process.kill(pid, 'SIGCONT')
        }
        // Reported once (counted, evented, logged), however often the set-up was tried again.
        const near = errors.filter((event) => event.operation === 'near cache')
        expect(near).toHaveLength(1)
        expect(near[0]!.error).toBeInstanceOf(CacheUnavailableError)
        expect(log.lines.filter((l) => l.startsWith('error') && l.includes('nearCache'))).toHaveLength(1)
      } finally {
        await Promise.all([reader.close(), writer.close()])
      }
    },
    20_000,
  )
})
