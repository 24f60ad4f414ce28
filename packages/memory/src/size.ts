/**
 * An estimate of the bytes a value holds in the V8 heap: strings at 2 bytes a character,
 * numbers 8, buffers their length, objects and arrays their contents plus a fixed overhead.
 * Shared references are counted once per path; depth is capped at 64 (deeper parts count 64 B).
 */
export function estimateSize(value: unknown): number {
  return estimate(value, 0)
}

const OBJECT_OVERHEAD = 16

function estimate(value: unknown, depth: number): number {
  switch (typeof value) {
    case 'string':
      return 2 * value.length + 8
    case 'number':
    case 'bigint':
      return 8
    case 'boolean':
    case 'undefined':
      return 4
    case 'symbol':
    case 'function':
      return 32
  }
  if (value === null) return 4
  if (depth > 64) return 64
  if (ArrayBuffer.isView(value)) return value.byteLength + OBJECT_OVERHEAD
  if (value instanceof ArrayBuffer) return value.byteLength + OBJECT_OVERHEAD
  let total = OBJECT_OVERHEAD
  if (Array.isArray(value)) {
    for (const item of value) total += 8 + estimate(item, depth + 1)
  } else if (value instanceof Map) {
    for (const [k, v] of value) total += estimate(k, depth + 1) + estimate(v, depth + 1)
  } else if (value instanceof Set) {
    for (const v of value) total += estimate(v, depth + 1)
  } else if (value instanceof Date) {
    total += 8
  } else {
    for (const key in value as object)
      total += 2 * key.length + 8 + estimate((value as Record<string, unknown>)[key], depth + 1)
  }
  return total
}
