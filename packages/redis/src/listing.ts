import { isListedKey, keyFromWellFormed } from '@cache/core/backend'
import type { Cluster, Redis } from 'ioredis'
import type { RedisClient } from './client.js'
import { clearCluster, type Limits } from './cluster-clear.js'
import { listCluster } from './cluster-keys.js'

/** How `wellFormedKey` marks a key it escaped. */
const ESCAPED = '\uffff'
/** Outcome records of `exactlyOnceWindow` without a namespace (see exactly-once.ts). */
const RECORD_PREFIX = '~op~'

/** Runs a command under the backend's per-command timeout. */
type Timed = <T>(command: Promise<T>) => Promise<T>

/**
 * `clear()`: unlinks every key of `namespace` (never `FLUSHDB`); on a cluster on every master the
 * nodes themselves name (see cluster-clear.ts).
 */
export function clearNamespace(
  client: RedisClient,
  namespace: string,
  count: number,
  limits: Limits,
): Promise<void> {
  const pattern = namespacePattern(namespace)
  return client.isCluster
    ? clearCluster(client as Cluster, pattern, count, limits)
    : clearNode(client as Redis, pattern, count, limits.timed)
}

/**
 * `keys()`: the keys of `namespace` (stored with `keyPrefix`) that start with `prefix`, internal
 * keys left out; on a cluster on every master the nodes themselves name (see cluster-keys.ts).
 */
export async function* listKeys(
  client: RedisClient,
  namespace: string | undefined,
  keyPrefix: string,
  prefix: string,
  count: number,
  limits: Limits,
): AsyncGenerator<string> {
  for (const pattern of listPatterns(namespace, prefix)) {
    const found = client.isCluster
      ? listCluster(client as Cluster, pattern, count, limits)
      : scanNode(client as Redis, pattern, count, limits)
    for await (const stored of found) {
      const key = userKeyOf(stored, namespace, keyPrefix)
      if (key !== undefined && isListedKey(key, prefix)) yield key
    }
  }
}

/** The `SCAN MATCH` pattern of every key of a namespace (what `clear()` removes). */
export function namespacePattern(namespace: string): string {
  return `${escapeGlob(namespace)}:*`
}

/**
 * The `SCAN MATCH` patterns that list the keys of `namespace` starting with `prefix`. A key with
 * U+FFFF or a lone surrogate is stored escaped (see `wellFormedKey`), never as its text: with a
 * prefix, a second pattern finds the escaped ones, which the caller filters by the key read back.
 */
export function listPatterns(namespace: string | undefined, prefix: string): string[] {
  const start = namespace === undefined ? '' : `${escapeGlob(namespace)}:`
  const patterns: string[] = []
  if (prefix === '' || (wellFormed(prefix) && !prefix.includes(ESCAPED)))
    patterns.push(`${start}${escapeGlob(prefix)}*`)
  if (prefix !== '') patterns.push(`${start}${ESCAPED}*`)
  return patterns
}

/**
 * The key `set` was given, from a key as stored (`keyPrefix`: the namespace and its `:`);
 * undefined for one no key maps to (bytes that are not UTF-8, written by someone else) and,
 * without a namespace, for `exactlyOnceWindow`'s outcome records (`~op~…`).
 */
export function userKeyOf(
  stored: Buffer,
  namespace: string | undefined,
  keyPrefix: string,
): string | undefined {
  const text = stored.toString('utf8')
  if (text.includes('\ufffd') && !Buffer.from(text, 'utf8').equals(stored)) return undefined
  if (namespace === undefined && text.startsWith(RECORD_PREFIX)) return undefined
  return keyFromWellFormed(text.slice(keyPrefix.length))
}

/** One node's keys matching `pattern`, a `SCAN` step (`count` keys asked for) at a time. */
export async function* scanNode(
  node: Redis,
  pattern: string,
  count: number,
  limits: Limits,
): AsyncGenerator<Buffer> {
  for await (const keys of scanPages(node, pattern, count, limits.timed, limits.open)) yield* keys
}

/** Unlinks one node's keys matching `pattern`, a `SCAN` step at a time. */
export async function clearNode(node: Redis, pattern: string, count: number, timed: Timed): Promise<void> {
  for await (const keys of scanPages(node, pattern, count, timed))
    if (keys.length > 0) await timed(node.unlink(...keys))
}

/** `SCAN cursor MATCH pattern COUNT count` on one node, page by page, each after `open()`. */
async function* scanPages(
  node: Redis,
  pattern: string,
  count: number,
  timed: Timed,
  open?: () => void,
): AsyncGenerator<Buffer[]> {
  let cursor = '0'
  do {
    open?.()
    const [next, keys] = await timed(node.scanBuffer(cursor, 'MATCH', pattern, 'COUNT', count))
    cursor = next.toString()
    yield keys
  } while (cursor !== '0')
}

/** `MATCH` treats `* ? [ ] \\` as glob syntax: escape them so a namespace matches literally. */
function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&')
}

function wellFormed(text: string): boolean {
  return (text as string & { isWellFormed(): boolean }).isWellFormed()
}
