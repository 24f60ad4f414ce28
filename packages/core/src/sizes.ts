/** A size in bytes: a number, or a string such as `'512KB'`, `'1.5MB'`, `'1GB'` (1 KB = 1024 B). */
export type Size = number | string

const UNIT_BYTES: Record<string, number> = {
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1024 ** 4,
  tib: 1024 ** 4,
}

const SIZE = /^\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-z]*)\s*$/i

/**
 * Bytes in a size. Throws a `RangeError` naming the value for 0, negatives, `NaN`, unknown
 * units (`'1XB'`) and malformed strings.
 *
 * @param what how to name the value in the error, e.g. `maxSize` or `CACHE_MAX_SIZE`
 */
export function parseSize(value: Size, what = 'size'): number {
  let bytes: number
  if (typeof value === 'number') {
    bytes = value
  } else if (typeof value === 'string') {
    const match = SIZE.exec(value)
    const unit = match ? UNIT_BYTES[(match[2] || 'b').toLowerCase()] : undefined
    if (!match || unit === undefined) {
      throw new RangeError(
        `${what}: ${JSON.stringify(value)} is not a size (use bytes or e.g. '512KB', '100MB', '1GB')`,
      )
    }
    bytes = Number(match[1]) * unit
  } else {
    throw new RangeError(`${what}: ${String(value)} is not a size (use bytes or e.g. '512KB')`)
  }
  if (!(bytes >= 1) || !Number.isFinite(bytes)) {
    throw new RangeError(
      `${what}: ${typeof value === 'string' ? JSON.stringify(value) : String(value)} is not a positive size`,
    )
  }
  return Math.floor(bytes)
}
