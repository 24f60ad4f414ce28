/**
 * An estimate of the bytes a value keeps alive in the V8 heap: strings at 2 bytes a character,
 * numbers 8, objects and arrays their contents plus a fixed overhead. Each object is counted once,
 * however many paths lead to it (a doubly linked list, a tree with parent links), and at any depth.
 * A typed array or `Buffer` counts the whole memory it is a view of: a 10-byte view of a 10 MB
 * buffer keeps the 10 MB alive, and so does a small `Buffer` from Node's shared pool (8 KB).
 * The walk is iterative: a value nested deeper than the stack allows is measured too.
 */
export function estimateSize(value: unknown): number {
  let total = 0
  const seen = new Set<object>()
  const buffers = new Set<ArrayBufferLike>()
  const pending: unknown[] = [value]
  while (pending.length > 0) {
    const item = pending.pop()
    const primitive = primitiveSize(item)
    if (primitive !== undefined) {
      total += primitive
      continue
    }
    const object = item as object
    if (seen.has(object)) {
      total += 8
      continue
    }
    seen.add(object)
    if (ArrayBuffer.isView(object)) {
      total += OBJECT_OVERHEAD
      if (!buffers.has(object.buffer)) {
        buffers.add(object.buffer)
        total += object.buffer.byteLength
      }
      continue
    }
    if (object instanceof ArrayBuffer || object instanceof SharedArrayBuffer) {
      if (!buffers.has(object)) {
        buffers.add(object)
        total += object.byteLength
      }
      total += OBJECT_OVERHEAD
      continue
    }
    total += OBJECT_OVERHEAD
    if (Array.isArray(object)) {
      total += 8 * object.length
      for (const element of object) pending.push(element)
    } else if (object instanceof Map) {
      for (const [k, v] of object) pending.push(k, v)
    } else if (object instanceof Set) {
      for (const v of object) pending.push(v)
    } else if (object instanceof Date) {
      total += 8
    } else {
      for (const key in object) {
        total += 2 * key.length + 8
        pending.push((object as Record<string, unknown>)[key])
      }
    }
  }
  return total
}

const OBJECT_OVERHEAD = 16

function primitiveSize(value: unknown): number | undefined {
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
  return value === null ? 4 : undefined
}
