import { describe, expect, it } from 'vitest'
import { CacheSerializationError, jsonSerializer } from '../src/index.js'
import { parseTagged, stringifyTagged } from '../src/kit.js'

describe('stringifyTagged / parseTagged', () => {
  it('is the text jsonSerializer stores, and reads it back', () => {
    const value = { when: new Date(0), list: [1, 'two', null], nested: { ok: true } }
    const text = stringifyTagged(value)
    expect(jsonSerializer.serialize(value).toString('utf8')).toBe(text)
    expect(parseTagged(text)).toEqual(value)
    expect(parseTagged(stringifyTagged({ plain: [1, 2] }))).toEqual({ plain: [1, 2] })
  })

  it('decodes a tag key spelled with \\u escapes, as the full walk did', () => {
    expect(parseTagged('{"\\u0024c":"u"}')).toBeUndefined()
    expect(parseTagged('[{"$\\u0063":"N","v":"12"}]')).toEqual([12n])
  })

  it('throws CacheSerializationError on text that is not JSON', () => {
    expect(() => parseTagged('{nope')).toThrow(CacheSerializationError)
  })
})
