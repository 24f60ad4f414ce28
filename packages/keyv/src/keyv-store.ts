import { EventEmitter } from 'node:events'
import { type CacheBackend, type MinimalBackend, toBackend } from '@cache/core'
import type { KeyvStoreAdapter, StoredData } from 'keyv'

/** Options of {@link toKeyvStore}. */
export interface KeyvStoreOptions {
  /** `disconnect()` (called by `keyv.disconnect()`) closes the backend. Default: true. */
  closeOnDisconnect?: boolean
}

/**
 * A @cache backend as a Keyv store adapter, for Keyv, cacheable and cache-manager.
 *
 * Keyv hands the adapter its `{ value, expires }` envelope (serialized by Keyv unless told
 * otherwise) and a TTL in ms; the backend stores the envelope with that TTL, so entries expire
 * in the backend as well. Keys arrive prefixed by Keyv's namespace. `clear()` clears the
 * backend's namespace: give each Keyv namespace its own backend namespace.
 */
export class KeyvStoreFromBackend extends EventEmitter implements KeyvStoreAdapter {
  /** Read by Keyv and cacheable; `dialect` names where the data lives. */
  readonly opts: { dialect: string; url: string }
  /** Set by Keyv to its namespace; keys already carry it, so it is informational here. */
  namespace: string | undefined
  readonly backend: CacheBackend
  private readonly closeOnDisconnect: boolean

  constructor(backend: CacheBackend | MinimalBackend, options: KeyvStoreOptions = {}) {
    super()
    this.backend = toBackend(backend)
    this.opts = { dialect: `@cache/${this.backend.name}`, url: '' }
    this.closeOnDisconnect = options.closeOnDisconnect ?? true
  }

  async get<Value>(key: string): Promise<StoredData<Value> | undefined> {
    return this.backend.get<StoredData<Value>>(key)
  }

  async set(key: string, value: unknown, ttl?: number): Promise<boolean> {
    await this.backend.set(key, value, toTtl(ttl))
    return true
  }

  async setMany(entries: Array<{ key: string; value: unknown; ttl?: number }>): Promise<void> {
    await this.backend.setMany(
      entries.map((entry) => ({ key: entry.key, value: entry.value, ttl: toTtl(entry.ttl) })),
    )
  }

  delete(key: string): Promise<boolean> {
    return this.backend.delete(key)
  }

  async deleteMany(keys: string[]): Promise<boolean> {
    return (await this.backend.deleteMany(keys)) > 0
  }

  clear(): Promise<void> {
    return this.backend.clear()
  }

  has(key: string): Promise<boolean> {
    return this.backend.has(key)
  }

  async hasMany(keys: string[]): Promise<boolean[]> {
    return Promise.all(keys.map((key) => this.backend.has(key)))
  }

  async getMany<Value>(keys: string[]): Promise<Array<StoredData<Value | undefined>>> {
    return this.backend.getMany<StoredData<Value>>(keys)
  }

  async disconnect(): Promise<void> {
    if (this.closeOnDisconnect) await this.backend.close()
  }
}

/** Keyv's TTL: ms, with 0/undefined for none. Passed on exactly (as `'<ms>ms'`, never rounded). */
function toTtl(ttl: number | undefined): string | undefined {
  return typeof ttl === 'number' && ttl > 0 && Number.isFinite(ttl) ? `${ttl}ms` : undefined
}

/** Wraps a @cache backend as a Keyv store adapter. See {@link KeyvStoreOptions}. */
export function toKeyvStore(
  backend: CacheBackend | MinimalBackend,
  options: KeyvStoreOptions = {},
): KeyvStoreFromBackend {
  return new KeyvStoreFromBackend(backend, options)
}
