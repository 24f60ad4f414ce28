import { type CacheBackend, CacheUnsupportedError } from '@cache/core'
import {
  assertKnownOptions,
  isGeneration,
  isInternalKey,
  optionNames,
  sameGenerations,
} from '@cache/core/backend'
import type { HttpCache } from './http-cache.js'
import { isStoredResponse, type StoredResponse } from './stored-response.js'

/** One stored response, as {@link responseIndex} lists it. */
export interface ResponseIndexEntry {
  /** The backend key (pass it, without `keyPrefix:`, to `invalidateKey` with a custom `key`). */
  key: string
  /** `protocol://host/path?query` of the request that made it. */
  url: string
  /** Always `GET` (`HEAD` is answered from the `GET` entry). */
  method: 'GET'
  status: number
  /** Epoch ms. */
  storedAt: number
  /** Seconds since it was stored (whole seconds, rounded down). */
  ageSeconds: number
  /** Seconds it stays fresh (rounded down; negative while served stale under stale-while-revalidate). */
  ttlSeconds: number
  tags?: string[]
  /** Size of the body in bytes. */
  bytes: number
}

/** Options of `cache.responseIndex()`. */
export interface ResponseIndexOptions {
  /** Backend keys read per round trip. Default: 100. */
  batchSize?: number
}

const RESPONSE_INDEX_NAMES = optionNames<ResponseIndexOptions>({ batchSize: true })

/** A backend that can list its keys (the `keys` method being added to `CacheBackend`). */
type ListingBackend = CacheBackend & {
  keys(options?: { prefix?: string }): AsyncIterable<string>
}

/**
 * Lists the responses a cache has stored under its `keyPrefix` that are still served: not
 * expired and of the current URL, prefix and tag generations. Vary records and @cache's own keys
 * (generations) are left out; each variant of a response that varies is listed. Needs a backend
 * that lists its keys (`backend.keys()`); others throw `CacheUnsupportedError`. Entries stored by
 * a version without the index (no `url`/`versionKeys`) are left out.
 */
export async function* responseIndex(
  engine: HttpCache,
  options: ResponseIndexOptions = {},
): AsyncIterableIterator<ResponseIndexEntry> {
  assertKnownOptions(options, RESPONSE_INDEX_NAMES, 'responseIndex()')
  const batchSize = options.batchSize ?? 100
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new RangeError(`batchSize must be a positive whole number, got ${String(batchSize)}`)
  const backend = engine.backend()
  // Feature-detected until `listKeys` from @cache/core is the one way to ask.
  if (typeof (backend as Partial<ListingBackend>).keys !== 'function')
    throw new CacheUnsupportedError(
      backend.name,
      'keys',
      'responseIndex() lists the keys of the backend, and this one cannot list them (memcached never can)',
    )
  const s = engine.settings
  let batch: string[] = []
  for await (const key of (backend as ListingBackend).keys({ prefix: `${s.keyPrefix}:` })) {
    if (isInternalKey(key)) continue
    batch.push(key)
    if (batch.length >= batchSize) {
      yield* live(backend, batch, s.now(), s.swrMs ?? 0)
      batch = []
    }
  }
  if (batch.length > 0) yield* live(backend, batch, s.now(), s.swrMs ?? 0)
}

async function* live(
  backend: CacheBackend,
  keys: string[],
  now: number,
  swrMs: number,
): AsyncIterableIterator<ResponseIndexEntry> {
  const values = await backend.getMany(keys)
  const found: [string, StoredResponse & { versionKeys: string[]; url: string }][] = []
  const versionKeys = new Set<string>()
  for (let i = 0; i < keys.length; i++) {
    const value = values[i]
    if (!isStoredResponse(value) || !Array.isArray(value.versionKeys) || typeof value.url !== 'string')
      continue
    if (now >= value.staleAt + swrMs) continue
    found.push([keys[i]!, value as StoredResponse & { versionKeys: string[]; url: string }])
    for (const k of value.versionKeys) versionKeys.add(k)
  }
  if (found.length === 0) return
  const names = [...versionKeys]
  const generations = new Map<string, unknown>()
  const read = await backend.getMany(names)
  for (let i = 0; i < names.length; i++) generations.set(names[i]!, read[i])
  for (const [key, entry] of found) {
    const current = entry.versionKeys.map((k) => generations.get(k))
    // A generation that is gone turns its entries into misses: not live.
    if (!current.every(isGeneration) || !sameGenerations(entry.versions, current)) continue
    const item: ResponseIndexEntry = {
      key,
      url: entry.url,
      method: 'GET',
      status: entry.status,
      storedAt: entry.storedAt,
      ageSeconds: Math.max(0, Math.floor((now - entry.storedAt) / 1000)),
      ttlSeconds: Math.floor((entry.staleAt - now) / 1000),
      bytes: entry.body.length,
    }
    if (entry.tags !== undefined) item.tags = entry.tags
    yield item
  }
}
