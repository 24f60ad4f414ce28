import { hashKey } from '@cache/core/backend'
import { startMemcached } from '@cache/test-servers'
import { afterAll, describe, expect, it } from 'vitest'
import { KeyMapper, MAX_KEY_BYTES } from '../src/keys.js'
import { memcachedBackend } from '../src/index.js'
import { serverKeys } from './raw.js'

const server = await startMemcached({ spawn: true })
afterAll(() => server.stop())

describe('KeyMapper', () => {
  const keys = new KeyMapper('app')

  it('keeps short printable keys readable: <namespace>#<generation>:<key>', () => {
    expect(keys.key('abc', keys.suffix('user:42'))).toBe('app#abc:user:42')
    expect(keys.key('abc', keys.suffix(''))).toBe('app#abc:')
  })

  it.each([
    ['a space', 'a b'],
    ['a newline', 'line\nbreak'],
    ['a NUL byte', 'nul\u0000byte'],
    ['DEL', 'del\u007f'],
    ['unicode', 'ünïcødé 🔑'],
    ['the marker #', 'user#42'],
    ['a long key', 'x'.repeat(300)],
  ])('hashes a key with %s', (_label, key) => {
    expect(keys.suffix(key)).toBe(`#${hashKey(key)}`)
  })

  it('never lets a verbatim key look like a hashed one', () => {
    const long = 'y'.repeat(1000)
    const lookalike = `#${hashKey(long)}`
    expect(keys.suffix(lookalike)).not.toBe(keys.suffix(long))
  })

  it('keeps every memcached key within 250 bytes', () => {
    const wide = new KeyMapper('n'.repeat(128))
    const longest = 'z'.repeat(400)
    for (let length = 0; length < 400; length++) {
      const key = wide.key('z'.repeat(13), wide.suffix(longest.slice(0, length)))
      expect(Buffer.byteLength(key)).toBeLessThanOrEqual(MAX_KEY_BYTES)
    }
  })

  it.each([[''], ['has space'], ['has#hash'], ['ü'], ['n'.repeat(129)]])(
    'rejects the namespace %j with a CacheConfigError naming the option',
    (namespace) => {
      expect(() => new KeyMapper(namespace)).toThrow(
        expect.objectContaining({ code: 'CACHE_CONFIG', setting: 'namespace' }),
      )
    },
  )
})

describe('keys on a real server', () => {
  it('stores long, spaced, control-character and unicode keys as safe memcached keys', async () => {
    const cache = memcachedBackend(server.server, { namespace: 'keys' })
    try {
      const awkward = [
        'x'.repeat(251),
        'x'.repeat(5000),
        'a b',
        'tab\there',
        'cr\r\nlf',
        '\u0000',
        'zoë 日本 🎉',
      ]
      for (const key of awkward) await cache.set(key, key)
      for (const key of awkward) expect(await cache.get(key)).toBe(key)
      const stored = (await serverKeys(server.port)).filter((k) => k.startsWith('keys#') && !k.endsWith('#g'))
      expect(stored).toHaveLength(awkward.length)
      for (const key of stored) {
        expect(Buffer.byteLength(key)).toBeLessThanOrEqual(250)
        expect(key).toMatch(/^keys#[0-9a-z]+:#[\w-]{43}$/)
      }
    } finally {
      await cache.close()
    }
  })

  it('keeps a key and the hash-lookalike of another key apart', async () => {
    const cache = memcachedBackend(server.server, { namespace: 'lookalike' })
    try {
      const long = 'q'.repeat(600)
      await cache.set(long, 'long')
      await cache.set(`#${hashKey(long)}`, 'lookalike')
      expect(await cache.get(long)).toBe('long')
      expect(await cache.get(`#${hashKey(long)}`)).toBe('lookalike')
    } finally {
      await cache.close()
    }
  })

  it('rejects a key that is not a string', async () => {
    const cache = memcachedBackend(server.server)
    try {
      await expect(cache.get(42 as unknown as string)).rejects.toMatchObject({ code: 'CACHE_KEY' })
    } finally {
      await cache.close()
    }
  })
})
