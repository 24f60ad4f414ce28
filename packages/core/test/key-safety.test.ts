import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { wellFormedKey } from '../src/kit.js'

describe('wellFormedKey: keys for stores that UTF-8-encode them', () => {
  it('leaves a well-formed key as it is', () => {
    for (const key of ['', 'user:42', 'ünïcødé 🔑', '\ufffd']) expect(wellFormedKey(key)).toBe(key)
  })

  it('keeps keys with lone surrogates apart from each other and from U+FFFD', () => {
    const keys = ['k\ud800', 'k\ud801', 'k\udc00', 'k\ufffd', 'k\uffff', '\uffff']
    const mapped = keys.map(wellFormedKey)
    expect(new Set(mapped).size).toBe(keys.length)
    for (const key of mapped) expect(Buffer.from(key, 'utf8').toString('utf8')).toBe(key)
  })

  it('is one-to-one on any strings, once UTF-8 encoded (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), fc.string({ unit: 'binary' }), (a, b) => {
        fc.pre(a !== b)
        const utf8 = (s: string) => Buffer.from(wellFormedKey(s), 'utf8').toString('hex')
        expect(utf8(a)).not.toBe(utf8(b))
      }),
      { numRuns: 2000 },
    )
  })
})
