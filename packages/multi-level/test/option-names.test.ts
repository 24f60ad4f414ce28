import { createServer, type Server } from 'node:net'
import { CacheConfigError } from '@cache/core'
import { memoryBackend } from '@cache/memory'
import { freePort } from '@cache/test-servers'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  type MultiLevelOptions,
  multiLevel,
  type RedisBus,
  type RedisBusOptions,
  redisBus,
} from '../src/index.js'

/**
 * A misspelt option is refused at once instead of the chain or bus running without it: a bus on
 * the default channel (evicting for every application on the server), or connected to
 * 127.0.0.1:6379 instead of the server its URL named. A counting listener stands where a bus
 * would connect; nothing listens on 6379.
 */

let listener: Server
let port: number
let connections: number
beforeEach(async () => {
  port = await freePort()
  connections = 0
  listener = createServer((socket) => {
    connections++
    socket.destroy()
  })
  await new Promise<void>((resolve) => listener.listen(port, '127.0.0.1', resolve))
})
const buses: RedisBus[] = []
afterEach(async () => {
  await Promise.all(buses.splice(0).map((b) => b.close()))
  await new Promise((resolve) => listener.close(resolve))
})

/** The CacheConfigError `build` throws synchronously; nothing may have connected. */
async function refusal(build: () => unknown): Promise<CacheConfigError> {
  let thrown: unknown
  try {
    const made = build()
    if (made && typeof (made as RedisBus).publish === 'function') buses.push(made as RedisBus)
  } catch (error) {
    thrown = error
  }
  await new Promise((resolve) => setTimeout(resolve, 100))
  expect(connections).toBe(0)
  expect(thrown).toBeInstanceOf(CacheConfigError)
  return thrown as CacheConfigError
}

describe('multiLevel and redisBus option names', () => {
  it('refuses a misspelt chain option', async () => {
    const error = await refusal(() =>
      multiLevel({ levels: [memoryBackend()], closelevels: false } as MultiLevelOptions),
    )
    expect(error.setting).toBe('closelevels')
    expect(error.message).toBe('closelevels: not an option of multiLevel(); did you mean `closeLevels`?')
  })

  it('refuses { level: [...] } instead of taking the options object for a backend', async () => {
    const error = await refusal(() => multiLevel({ level: [memoryBackend()] } as never))
    expect(error.setting).toBe('level')
    expect(error.message).toMatch(/did you mean `levels`\?/)
  })

  it('refuses a misspelt breaker setting instead of the default threshold', async () => {
    const error = await refusal(() =>
      multiLevel({ levels: [memoryBackend()], breaker: { failureTreshold: 10 } } as MultiLevelOptions),
    )
    expect(error.setting).toBe('failureTreshold')
    expect(error.message).toMatch(/did you mean `failureThreshold`\?/)
  })

  it('refuses a misspelt bus option before connecting, instead of using the shared default channel', async () => {
    const error = await refusal(() =>
      redisBus(`redis://127.0.0.1:${port}`, { chanel: 'shop' } as RedisBusOptions),
    )
    expect(error.setting).toBe('chanel')
    expect(error.message).toBe('chanel: not an option of redisBus(); did you mean `channel`?')
  })

  it('refuses { url } as the bus connection instead of connecting to 127.0.0.1:6379', async () => {
    const error = await refusal(() => redisBus({ url: `redis://127.0.0.1:${port}` }))
    expect(error.setting).toBe('url')
    expect(error.message).toMatch(/give the URL itself as the first argument/)
  })

  it('refuses a bus option given in the ioredis options of the connection', async () => {
    const error = await refusal(() => redisBus({ host: '127.0.0.1', port, channel: 'shop' }))
    expect(error.setting).toBe('channel')
    expect(error.message).toMatch(/an option of redisBus\(\): give it in the second argument/)
    expect(
      (await refusal(() => redisBus({ cluster: [{ host: '127.0.0.1', port }], heartbeat: 1 }))).setting,
    ).toBe('heartbeat')
  })

  it("refuses a bus option inside redisOptions (the bus's and a cluster connection's)", async () => {
    const error = await refusal(() =>
      redisBus(`redis://127.0.0.1:${port}`, { redisOptions: { channel: 'shop-bus' } }),
    )
    expect(error.setting).toBe('channel')
    expect(error.message).toBe(
      "channel: not an ioredis option (redisBus()'s redisOptions, where ioredis ignores it): an option of redisBus(): give it in the second argument, redisBus(connection, { channel })",
    )
    const inCluster = await refusal(() =>
      redisBus({ cluster: [{ host: '127.0.0.1', port }], redisOptions: { channel: 'shop-bus' } }),
    )
    expect(inCluster.message).toMatch(
      /^channel: not an ioredis option \(redisBus\(\)'s first argument's redisOptions/,
    )
  })

  it('multiLevel(l1, l2, { stateTtl }) says the options go in one object with the levels', async () => {
    const error = await refusal(() => multiLevel(memoryBackend(), memoryBackend(), { stateTtl: 1 } as never))
    expect(error.message).toMatch(
      /^multiLevel\(\): its last argument is not a cache backend but options \(\{ stateTtl \}\): .*multiLevel\(\{ levels: \[l1, l2\], stateTtl \}\)$/,
    )
    expect((await refusal(() => multiLevel(null as never))).message).toMatch(
      /^multiLevel\(\): expected an options object, got null/,
    )
    expect((await refusal(() => redisBus(`redis://127.0.0.1:${port}`, new Map() as never))).message).toMatch(
      /^redisBus\(\): expected an options object, got a Map/,
    )
  })

  it('accepts every documented option at once', async () => {
    const busOptions: Required<RedisBusOptions> = {
      channel: 'all',
      publishTimeout: undefined as never,
      // The current name given as undefined, the deprecated one with a value (both is refused).
      publishTimeoutMs: 500,
      heartbeat: '1s',
      redisOptions: { connectionName: 'all' },
      logger: false,
    }
    const bus = redisBus(`redis://127.0.0.1:${port}`, busOptions)
    buses.push(bus)
    buses.push(redisBus({ host: '127.0.0.1', port, db: 0 }, { logger: false }))
    const all: Required<MultiLevelOptions> = {
      levels: [memoryBackend(), memoryBackend()],
      breaker: { failureThreshold: 3, openFor: '1s' },
      maxPendingKeys: 100,
      bus,
      stateTtl: 0,
      namespace: 'all',
      closeLevels: true,
      logger: false,
      now: Date.now,
    }
    const chain = multiLevel(all)
    await chain.set('k', 1)
    expect(await chain.get('k')).toBe(1)
    await chain.close()
  })
})
