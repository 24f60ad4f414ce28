import { describe, expect, it } from 'vitest'
import { CacheConfigError } from '../src/index.js'
import { parseRedisUrl, redactUrl } from '../src/kit.js'

describe('parseRedisUrl', () => {
  it('reads a single-node URL with credentials, port and database', () => {
    expect(parseRedisUrl('redis://user:p%40ss@cache.local:6380/2')).toEqual({
      mode: 'single',
      host: 'cache.local',
      port: 6380,
      db: 2,
      tls: false,
      auth: { username: 'user', password: 'p@ss' },
      query: {},
    })
  })

  it('defaults the port to 6379, takes a password-only userinfo, and rediss:// means TLS', () => {
    const url = parseRedisUrl('rediss://:secret@[::1]')
    expect(url).toMatchObject({ mode: 'single', host: '::1', port: 6379, db: 0, tls: true })
    expect(url.auth).toEqual({ password: 'secret' })
    expect(parseRedisUrl('redis://legacy@h').auth).toEqual({ password: 'legacy' })
  })

  it('reads sentinels, the master name, database and sentinel credentials', () => {
    expect(parseRedisUrl('redis+sentinel://:pw@s1:26380,s2/mymaster/3?sentinelPassword=sp')).toEqual({
      mode: 'sentinel',
      sentinels: [
        { host: 's1', port: 26380 },
        { host: 's2', port: 26379 },
      ],
      name: 'mymaster',
      db: 3,
      tls: false,
      auth: { password: 'pw' },
      query: { sentinelPassword: 'sp' },
    })
  })

  it('reads cluster seed nodes', () => {
    expect(parseRedisUrl('rediss+cluster://a:7000,b:7001')).toMatchObject({
      mode: 'cluster',
      nodes: [
        { host: 'a', port: 7000 },
        { host: 'b', port: 7001 },
      ],
      tls: true,
    })
  })

  it.each([
    ['http://host', /expected redis:\/\//],
    ['redis://a:1,b:2', /one host/],
    ['redis://host:99999', /not host\[:port\]/],
    ['redis://host/notanumber', /database number/],
    ['redis+sentinel://s1:26379', /masterName/],
    ['redis+cluster://a:1/0', /no database number/],
    ['redis://host?color=blue', /unknown parameter "color"/],
    ['redis://host?family=5', /family=5/],
  ])('rejects %s with a CacheConfigError', (url, message) => {
    expect(() => parseRedisUrl(url)).toThrow(CacheConfigError)
    expect(() => parseRedisUrl(url)).toThrow(message)
  })

  it('never echoes a password in an error', () => {
    expect(() => parseRedisUrl('redis://user:hunter2@a:1,b:2')).toThrow(/redis:\/\/user:\*\*\*@a:1,b:2/)
    expect(() => parseRedisUrl('redis://hunter2@a:1,b:2')).not.toThrow(/hunter2/)
    expect(redactUrl('rediss://:pw@h:1/0')).toBe('rediss://:***@h:1/0')
    expect(redactUrl('redis://h:1')).toBe('redis://h:1')
  })
})
