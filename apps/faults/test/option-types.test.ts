/**
 * A switch read from a configuration file arrives as text: `'false'` is truthy, so an option
 * taken as it comes would be switched on by the value meant to switch it off (a memcached
 * `flushOnClear: 'false'` flushed the whole server; `allowAuthorized: 'false'` cached authorized
 * responses). Every boolean option refuses anything but `true` and `false`, naming itself.
 */
import { CacheConfigError } from '@cache/core'
import { cacheResponse } from '@cache/express'
import { memcachedBackend } from '@cache/memcached'
import { memoryBackend } from '@cache/memory'
import { multiLevel } from '@cache/multi-level'
import { redisBackend } from '@cache/redis'
import { describe, expect, it } from 'vitest'

/** [option, construction with the option set to `value`]. */
const SWITCHES: [string, (value: unknown) => unknown][] = [
  ['clone', (value) => memoryBackend({ clone: value as boolean })],
  ['checkValues', (value) => memoryBackend({ checkValues: value as boolean })],
  ['closeLevels', (value) => multiLevel({ levels: [memoryBackend()], closeLevels: value as boolean })],
  // Nothing listens on port 1: construction sends nothing, and the backends are closed at once.
  ['flushOnClear', (value) => memcachedBackend('127.0.0.1:1', { flushOnClear: value as boolean })],
  ['keepAlive', (value) => memcachedBackend('127.0.0.1:1', { keepAlive: value as boolean })],
  ['coalesce', (value) => redisBackend('redis://127.0.0.1:1', { coalesce: value as boolean })],
  ...(['allowAuthorized', 'allowCookies', 'etag', 'frontSkipsAllMiddleware'] as const).map(
    (option): [string, (value: unknown) => unknown] => [
      option,
      (value) => cacheResponse({ ttl: 60, backend: memoryBackend(), [option]: value }),
    ],
  ),
]

describe('boolean options', () => {
  it.each(SWITCHES)('%s refuses text, a number and null, and takes true and false', async (option, make) => {
    for (const bad of ['false', 'true', 0, 1, null]) {
      let thrown: unknown
      try {
        await close(make(bad))
      } catch (error) {
        thrown = error
      }
      expect(thrown, `${option}: ${JSON.stringify(bad)}`).toBeInstanceOf(CacheConfigError)
      expect((thrown as CacheConfigError).setting).toBe(option)
      expect((thrown as Error).message).toMatch(/expected true or false/)
    }
    for (const good of [true, false]) await close(make(good))
  })
})

/** Closes what a construction made, if it can be closed. */
async function close(made: unknown): Promise<void> {
  const closable = made as { close?: () => Promise<void> } | undefined
  if (typeof closable?.close === 'function') await closable.close()
}
