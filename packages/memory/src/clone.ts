import { deserialize, serialize } from 'node:v8'
import { CacheSerializationError } from '@cache/core'

/**
 * A deep copy through V8's serializer (Buffers stay Buffers, cycles are kept). V8 would turn a
 * class instance into a plain object without a word, losing its prototype and methods; we refuse
 * those instead, naming the path, as the serializers of the other backends do.
 */
export function cloneValue(value: unknown): unknown {
  assertCloneable(value, '$', new Set())
  try {
    return deserialize(serialize(value))
  } catch (cause) {
    throw new CacheSerializationError(`cannot clone value: ${(cause as Error).message}`, '$', { cause })
  }
}

const CLONEABLE = new Set<unknown>([
  Object.prototype,
  null,
  Array.prototype,
  Date.prototype,
  RegExp.prototype,
  Map.prototype,
  Set.prototype,
])

function assertCloneable(value: unknown, path: string, seen: Set<object>): void {
  if (typeof value === 'function')
    throw new CacheSerializationError(`cannot clone a function at ${path}`, path)
  if (typeof value === 'symbol') throw new CacheSerializationError(`cannot clone a symbol at ${path}`, path)
  if (typeof value !== 'object' || value === null || seen.has(value)) return
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return
  const proto = Object.getPrototypeOf(value)
  if (!CLONEABLE.has(proto)) {
    const kind = proto?.constructor?.name ?? 'object'
    throw new CacheSerializationError(
      `cannot clone an instance of ${kind} at ${path} (its prototype would be lost)`,
      path,
    )
  }
  seen.add(value)
  if (value instanceof Map) {
    let i = 0
    for (const [k, v] of value) {
      assertCloneable(k, `${path}<key ${i}>`, seen)
      assertCloneable(v, `${path}.get(${i++})`, seen)
    }
  } else if (value instanceof Set) {
    let i = 0
    for (const v of value) assertCloneable(v, `${path}<item ${i++}>`, seen)
  } else if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) assertCloneable(value[i], `${path}[${i}]`, seen)
  } else {
    for (const key of Object.keys(value))
      assertCloneable((value as Record<string, unknown>)[key], `${path}.${key}`, seen)
  }
}
