/**
 * Peer configurations shared by several scenarios: each peer's fastest documented setting, with
 * the documentation that recommends it.
 */
import type { Keyv } from 'keyv'

/** Keyv's in-memory Map store without serialization (keyv README, "Custom Serializers"). */
export async function keyvWithoutSerialization(): Promise<Keyv> {
  const { Keyv } = await import('keyv')
  const keyv = new Keyv()
  keyv.serialize = undefined
  keyv.deserialize = undefined
  return keyv
}

/**
 * Keyv with plain `JSON.stringify`/`JSON.parse` (the keyv README's "Custom Serializers" example)
 * instead of the default `@keyv/serialize`, which walks every object property by property to
 * escape strings and encode Buffers.
 */
export function withJsonSerializer<K extends Keyv>(keyv: K): K {
  keyv.serialize = JSON.stringify
  keyv.deserialize = JSON.parse
  return keyv
}

/**
 * cacheable's in-memory store in its fastest documented configuration: `useClone: false`
 * (values returned by reference, as @cache/memory and lru-cache do) and `storeHashSize: 1` (one
 * `Map`, so no key is hashed to pick one; the @cacheable/memory README's own example).
 */
export const CACHEABLE_MEMORY_FAST = { useClone: false, storeHashSize: 1 } as const
