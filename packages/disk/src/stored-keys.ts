/*
 * How keys come back out of SQLite. better-sqlite3 hands SQLite a JS string as generalized UTF-8
 * (WTF-8): a lone surrogate becomes its own 3-byte sequence, so `k\ud800` and `k\ud801` are two
 * rows. Read back as TEXT, both would decode to U+FFFD; read as bytes and decoded here, they come
 * back as they were written.
 */

/** A key read as bytes (`CAST(key AS BLOB)`), decoded with lone surrogates kept. */
export function keyFromBytes(bytes: Buffer): string {
  if (!hasSurrogate(bytes)) return bytes.toString('utf8')
  let out = ''
  let i = 0
  while (i < bytes.length) {
    const b = bytes[i]!
    if (b === 0xed && i + 2 < bytes.length && bytes[i + 1]! >= 0xa0) {
      // ED A0..BF xx: a surrogate code unit of its own (UTF-8 proper never has one).
      out += String.fromCharCode(0xd000 | ((bytes[i + 1]! & 0x3f) << 6) | (bytes[i + 2]! & 0x3f))
      i += 3
      continue
    }
    const length = b < 0x80 ? 1 : b < 0xe0 ? 2 : b < 0xf0 ? 3 : 4
    out += bytes.toString('utf8', i, i + length)
    i += length
  }
  return out
}

/**
 * The smallest key above every key that starts with `prefix`, in SQLite's order (bytes, that
 * is code points): the prefix with its last code point incremented. `undefined` when no such
 * bound is exact: a prefix with a surrogate code unit (a pair split by the prefix's end would
 * sort elsewhere as bytes), or one made only of U+10FFFF.
 */
export function prefixUpperBound(prefix: string): string | undefined {
  if (/[\ud800-\udfff]/.test(prefix)) return undefined
  const points = [...prefix]
  while (points.length > 0) {
    const last = points.pop()!.codePointAt(0)!
    if (last < 0x10ffff) {
      // Skip the surrogate range: those code points are never in a well-formed key.
      const next = last + 1 === 0xd800 ? 0xe000 : last + 1
      return points.join('') + String.fromCodePoint(next)
    }
  }
  return undefined
}

function hasSurrogate(bytes: Buffer): boolean {
  for (let i = bytes.indexOf(0xed); i !== -1 && i + 1 < bytes.length; i = bytes.indexOf(0xed, i + 1))
    if (bytes[i + 1]! >= 0xa0) return true
  return false
}
