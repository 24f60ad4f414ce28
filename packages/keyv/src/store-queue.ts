import { KeyedQueue } from '@cache/core/backend'

/**
 * The per-key queue of every `keyvBackend` over one store object in this process. Core's
 * read-then-write fallbacks queue per layer, and each `keyvBackend` has its own layer: two
 * backends over one Keyv instance, one `Map` or one adapter would each read, then write over the
 * other. Keyed by the store (the Keyv instance's `store`, or the store given), which two Keyv
 * instances over one store share too. Kept on `globalThis`, so that the ESM and the CommonJS
 * build of this package (or two copies of it) in one process use the same queues.
 */
const QUEUES = Symbol.for('@cache/keyv:store-queues')

type Registry = WeakMap<object, KeyedQueue>

export function storeQueue(store: object): KeyedQueue {
  const global = globalThis as { [QUEUES]?: Registry }
  const registry = (global[QUEUES] ??= new WeakMap())
  let queue = registry.get(store)
  if (queue === undefined) registry.set(store, (queue = new KeyedQueue()))
  return queue
}
