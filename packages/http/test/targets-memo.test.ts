/**
 * The spelling of a target with a query (its parameters sorted) is kept per target as sent: what
 * is kept must give every target its own key, as computing it again would.
 */
import { describe, expect, it } from 'vitest'
import { requestKey } from '../src/index.js'

const keyOf = (url: string) =>
  requestKey({ protocol: 'https', host: 'shop.test', url, headers: {}, keyExtra: undefined }, 'http', [])?.key

describe('query targets kept per target', () => {
  it('two queries of one path keep their own keys, each the same on every request', () => {
    for (let round = 0; round < 3; round++) {
      expect(keyOf('/p?b=1&a=2')).toBe('http:https://shop.test/p?a=2&b=1')
      expect(keyOf('/p?a=2&b=1')).toBe('http:https://shop.test/p?a=2&b=1')
      expect(keyOf('/p?a=1')).toBe('http:https://shop.test/p?a=1')
      expect(keyOf('/p?a=2')).toBe('http:https://shop.test/p?a=2')
      expect(keyOf('/q?a=1')).toBe('http:https://shop.test/q?a=1')
      // Not plain: the order as sent is kept.
      expect(keyOf('/p?b[x]=1&a=2')).toBe('http:https://shop.test/p?b[x]=1&a=2')
      expect(keyOf('/p?a=2&b[x]=1')).toBe('http:https://shop.test/p?a=2&b[x]=1')
    }
  })

  it('a target with too many parameters bypasses every time, and the kept ones stay right past the bound', () => {
    // Short enough to be kept: the verdict is kept too.
    const many = `/m?${Array.from({ length: 1_001 }, () => 'a').join('&')}`
    expect(many.length).toBeLessThan(2_048)
    expect(keyOf(many)).toBeUndefined()
    expect(keyOf(many)).toBeUndefined()
    for (let i = 0; i < 4_100; i++)
      expect(keyOf(`/n?z=${i}&a=${i}`)).toBe(`http:https://shop.test/n?a=${i}&z=${i}`)
    expect(keyOf('/p?b=1&a=2')).toBe('http:https://shop.test/p?a=2&b=1')
    const long = `/l?b=1&a=${'x'.repeat(3_000)}`
    expect(keyOf(long)).toBe(`http:https://shop.test/l?a=${'x'.repeat(3_000)}&b=1`)
    expect(keyOf(long)).toBe(`http:https://shop.test/l?a=${'x'.repeat(3_000)}&b=1`)
  })
})

describe('origins kept per host', () => {
  const key = (protocol: string, host: string | undefined) =>
    requestKey({ protocol, host, url: '/a', headers: {}, keyExtra: undefined }, 'http', [])?.key

  it('each host and protocol keeps its own origin, and a host that is not canonical bypasses every time', () => {
    for (let round = 0; round < 3; round++) {
      expect(key('https', 'shop.test')).toBe('http:https://shop.test/a')
      expect(key('http', 'shop.test')).toBe('http:http://shop.test/a')
      expect(key('https', 'shop.test:8443')).toBe('http:https://shop.test:8443/a')
      expect(key('https', 'Shop.test')).toBeUndefined()
      expect(key('https', 'shop.test.')).toBeUndefined()
      expect(key('https', 'shop.test:x')).toBeUndefined()
      expect(key('https', undefined)).toBeUndefined()
      expect(key('ftp', 'shop.test')).toBeUndefined()
    }
    for (let i = 0; i < 4_100; i++) expect(key('https', `h${i}.test`)).toBe(`http:https://h${i}.test/a`)
    expect(key('http', 'shop.test')).toBe('http:http://shop.test/a')
    expect(key('https', 'Shop.test')).toBeUndefined()
  })
})
