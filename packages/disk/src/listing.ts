import type { ListKeysOptions } from '@cache/core'
import { isListedKey, listPrefix } from '@cache/core/backend'
import { BATCH, type DiskContext } from './context.js'
import { keyFromBytes, prefixUpperBound } from './stored-keys.js'

/**
 * The live keys of the namespace, each once (internal `__` keys left out); with `prefix`, only
 * those that start with it. Reads pages of 500 keys in key order along the primary key
 * (`WHERE ns = ? AND key >= ? ORDER BY key LIMIT 500`, a prefix as a key range, never `LIKE`),
 * each page a short read of its own, so writers are never held up. Keys written or deleted
 * during the iteration may or may not be listed. `assertOpen` runs before the first page; a
 * listing issued before `close()` reads on until its end (or until its consumer leaves it).
 */
export async function* listKeys(
  ctx: DiskContext,
  options: ListKeysOptions | undefined,
  assertOpen: () => void,
): AsyncIterableIterator<string> {
  const prefix = listPrefix(options)
  const below = prefixUpperBound(prefix)
  // A prefix with a surrogate code unit has no exact key range: read the namespace, filter here.
  let from = below === undefined ? '' : prefix
  assertOpen()
  const { inFlight } = ctx
  // Counted in flight while it reads, not while its consumer holds a key (see InFlight.settled):
  // close() lets a listing issued before it go on to its end, and refuses its pages once closed.
  inFlight.listingStarted()
  let running = true
  try {
    for (let first = true; ; first = false) {
      const start = from
      const read = () => ctx.lock.run('keys', undefined, () => ctx.store.keyPage(ctx.ns, start, below, BATCH))
      // The first page waits for the writes issued before the call, and is read before those issued after it.
      const page = await (first ? ctx.order.inOrder(undefined, false, read) : read())
      const now = ctx.settings.now()
      for (const [bytes, expiresAt] of page) {
        const key = keyFromBytes(bytes)
        if ((expiresAt === null || expiresAt > now) && isListedKey(key, prefix)) {
          running = false
          inFlight.handedOver()
          yield key
          inFlight.resumed()
          running = true
        }
      }
      if (page.length < BATCH) return
      // The next key after the last one read, in SQLite's byte order, is that key followed by NUL.
      from = `${keyFromBytes(page[page.length - 1]![0])}\u0000`
    }
  } finally {
    inFlight.listingEnded(running)
  }
}
