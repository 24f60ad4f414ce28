import type { ListKeysOptions } from '@cache/core'
import { isListedKey, listPrefix } from '@cache/core/backend'
import { BATCH, type DiskContext } from './context.js'
import { keyFromBytes, prefixUpperBound } from './stored-keys.js'

/**
 * The live keys of the namespace, each once (internal `__` keys left out); with `prefix`, only
 * those that start with it. Reads pages of 500 keys in key order along the primary key
 * (`WHERE ns = ? AND key >= ? ORDER BY key LIMIT 500`, a prefix as a key range, never `LIKE`),
 * each page a short read of its own, so writers are never held up. Keys written or deleted
 * during the iteration may or may not be listed. `assertOpen` runs before each page.
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
  for (let first = true; ; first = false) {
    assertOpen()
    const start = from
    const read = () => ctx.lock.run('keys', undefined, () => ctx.store.keyPage(ctx.ns, start, below, BATCH))
    // The first page waits for the writes issued before the call, and is read before those issued after it.
    const page = await (first ? ctx.order.inOrder(undefined, false, read) : read())
    const now = ctx.settings.now()
    for (const [bytes, expiresAt] of page) {
      const key = keyFromBytes(bytes)
      if ((expiresAt === null || expiresAt > now) && isListedKey(key, prefix)) yield key
    }
    if (page.length < BATCH) return
    // The next key after the last one read, in SQLite's byte order, is that key followed by NUL.
    from = `${keyFromBytes(page[page.length - 1]![0])}\u0000`
  }
}
