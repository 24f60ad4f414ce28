import type { CacheEvent } from '@cache/core'
import { afterEach, describe, expect, it } from 'vitest'
import { clusterBehindProxies, type ProxiedSetup, singleBehindProxy } from './servers.js'

function outcome<T>(promise: Promise<T>): Promise<{ value: T } | { error: unknown }> {
  return promise.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  )
}

describe.each([
  ['one server', singleBehindProxy],
  ['Redis Cluster', clusterBehindProxies],
])('%s: close() while an incr settles its lost reply', (_, start) => {
  let setup: ProxiedSetup | undefined
  afterEach(async () => {
    await setup?.stop()
    setup = undefined
  })

  it('waits for the settle under way and gives the call its real outcome (the server comes back within the timeout)', async () => {
    setup = await start('closing', { timeout: '2s', maxReconnectDelay: '100ms', logger: false })
    const { cache } = setup
    const exitListeners = process.listenerCount('beforeExit')
    const events: CacheEvent[] = []
    cache.on('error', (event) => events.push(event))
    await cache.ready()
    const key = `hits-${Date.now()}`
    await cache.incr(key)
    const { proxy, server } = await setup.route(key)
    // The server runs the incr, its reply is lost with the link, and the link cannot come back yet:
    // the call settles (waits to reconnect and ask the server whether it ran).
    const dropped = proxy.dropNextReply()
    await proxy.refuse()
    const call = outcome(cache.incr(key))
    await dropped
    await new Promise((resolve) => setTimeout(resolve, 100))
    const closing = cache.close()
    await new Promise((resolve) => setTimeout(resolve, 100))
    await proxy.listen()
    await closing
    expect(await server.get(`closing:${key}`)).toBe('2')
    // The settle found the incr applied: the caller gets the counter, nothing is reported lost.
    // Before, close() cut the settle: CacheClosedError, and no event said it may have been applied.
    expect(await call).toEqual({ value: 2 })
    expect(events.filter((event) => /applied/.test(String(event.error)))).toEqual([])
    // Nothing left unsettled: the process's beforeExit is not listened to any more.
    expect(process.listenerCount('beforeExit')).toBe(exitListeners)
  }, 30_000)

  it('reports the call as one that may have been applied when the server cannot be reached within the timeout', async () => {
    setup = await start('unknown', { timeout: '300ms', maxReconnectDelay: '100ms', logger: false })
    const { cache } = setup
    const exitListeners = process.listenerCount('beforeExit')
    const events: CacheEvent[] = []
    cache.on('error', (event) => events.push(event))
    await cache.ready()
    const key = `hits-${Date.now()}`
    await cache.incr(key)
    const { proxy, server } = await setup.route(key)
    const dropped = proxy.dropNextReply()
    await proxy.refuse()
    const call = outcome(cache.incr(key))
    await dropped
    await cache.close()
    await proxy.listen()
    expect(await server.get(`unknown:${key}`)).toBe('2')
    // Reported failed, and the event says so: never nothing (before: CacheClosedError, no event).
    expect(((await call) as { error?: unknown }).error).toBeInstanceOf(Error)
    const said = events.filter((event) =>
      /may have been applied although it was reported failed/.test(String(event.error)),
    )
    expect(said.map((event) => [event.operation, event.key])).toEqual([['incr', key]])
    expect(process.listenerCount('beforeExit')).toBe(exitListeners)
  }, 30_000)
})
