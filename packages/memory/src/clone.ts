import { deserialize, serialize } from 'node:v8'
import { CacheSerializationError } from '@cache/core'
import { assertStructuredClonable } from '@cache/core/backend'

/**
 * A deep copy through V8's serializer (Buffers stay Buffers, cycles are kept). What V8 would not
 * bring back as it was (a class instance, a subclass of a built-in, a property added to a Date)
 * is refused with the error the `v8` serializer throws, naming the path.
 */
export function cloneValue(value: unknown): unknown {
  assertStructuredClonable(value)
  try {
    return deserialize(serialize(value))
  } catch (cause) {
    throw new CacheSerializationError(`cannot clone value: ${(cause as Error).message}`, '$', { cause })
  }
}
