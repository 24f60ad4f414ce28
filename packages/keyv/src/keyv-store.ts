import { EventEmitter } from 'node:events'
import { type CacheBackend, isCacheError, isUnavailable, listKeys, type MinimalBackend } from '@cache/core'
import {
  assertKnownOptions,
  booleanOption,
  CHAIN,
  chainOf,
  optionNames,
  STORE,
  storeOf,
  toBackend,
} from '@cache/core/backend'
import type { KeyvStoreAdapter, StoredData } from 'keyv'

/**
 * The backend for one Keyv namespace, given that namespace (`undefined` for a Keyv without one),
 * e.g. `(namespace) => redisBackend(client, { namespace })`.
 */
export type BackendForNamespace = (namespace: string | undefined) => CacheBackend | MinimalBackend

/** Options of {@link toKeyvStore}. */
export interface KeyvStoreOptions {
  /**
   * `disconnect()` (called by `keyv.disconnect()`) closes the backend, or every backend the
   * {@link BackendForNamespace} function returned. Default: true.
   */
  closeOnDisconnect?: boolean
  /**
   * Throw the backend's failures to Keyv instead of answering a miss (`undefined`, `false`), as
   * Keyv's own adapters do with the same option. Each failure is emitted as an `error` event
   * either way. Set it together with Keyv's own `throwOnErrors`. Default: false.
   */
  throwOnErrors?: boolean
}

const OPTION_NAMES = optionNames<KeyvStoreOptions>({ closeOnDisconnect: true, throwOnErrors: true })

/** What an adapter given a function says of its chain: its backends are made later, per namespace. */
const MADE_PER_NAMESPACE = Object.freeze({ unknown: 'made per Keyv namespace by a function' })

/**
 * A @cache backend as a Keyv store adapter, for Keyv, cacheable and cache-manager.
 *
 * Keyv hands the adapter its `{ value, expires }` envelope (serialized by Keyv unless told
 * otherwise) and a TTL in ms; the backend stores the envelope with that TTL, so entries expire
 * in the backend as well. Keys are stored as Keyv hands them (prefixed by its namespace).
 *
 * Namespaces: given a function of the namespace ({@link BackendForNamespace}), each Keyv namespace
 * gets its own backend namespace, so `clear()` of one leaves the others alone. Given one
 * backend, every Keyv namespace shares it and `clear()` clears the whole backend namespace.
 *
 * Failures follow the contract of Keyv's own adapters: each is emitted once as an `error` event
 * (which Keyv re-emits) and answered as a miss, unless `throwOnErrors`. A caller's error (a value
 * the backend cannot store, a bad TTL) is always thrown, as Keyv throws for what it cannot serialize.
 */
export class KeyvStoreFromBackend extends EventEmitter implements KeyvStoreAdapter {
  private readonly dialect: string
  /** Set by Keyv to its namespace; picks the backend when the adapter was given a function. */
  namespace: string | undefined
  private readonly single: CacheBackend | undefined
  private readonly forNamespace: BackendForNamespace | undefined
  /** What `forNamespace` returned, by namespace. */
  private readonly backends = new Map<string | undefined, CacheBackend>()
  /**
   * See {@link KeyvStoreOptions.throwOnErrors}. Public, as on Keyv's own adapters:
   * `keyvBackend(adapter)` turns it on, so that a backend built back from the adapter throws.
   */
  throwOnErrors: boolean
  private readonly closeOnDisconnect: boolean

  constructor(backend: CacheBackend | MinimalBackend | BackendForNamespace, options: KeyvStoreOptions = {}) {
    super()
    assertKnownOptions(options, OPTION_NAMES, 'toKeyvStore()')
    if (typeof backend === 'function') {
      this.forNamespace = backend
      this.dialect = '@cache'
    } else {
      this.single = toBackend(backend)
      this.dialect = `@cache/${this.single.name}`
    }
    this.closeOnDisconnect = booleanOption(options.closeOnDisconnect, 'closeOnDisconnect', true)
    this.throwOnErrors = booleanOption(options.throwOnErrors, 'throwOnErrors', false)
  }

  /** Whether other processes see the entries: the backend's `shared` (undefined for one per namespace). */
  get shared(): boolean | undefined {
    return this.single?.shared
  }

  /**
   * The chain of levels the backend is or wraps, if any (see `CHAIN`). Given a function, which
   * backends it makes is not known before Keyv asks: a chain with a bus cannot check them (one may
   * be a chain without a bus), and refuses them.
   */
  get [CHAIN](): object | undefined {
    return this.single === undefined ? MADE_PER_NAMESPACE : chainOf(this.single)
  }

  /** The store the backend is or wraps (see `STORE`): two adapters of one backend are one store. */
  get [STORE](): object {
    return this.single === undefined ? this : storeOf(this.single)
  }

  /** Whether only this machine's processes see them: the backend's `hostOnly`. */
  get hostOnly(): boolean | undefined {
    return this.single?.hostOnly
  }

  /**
   * Read by Keyv and cacheable; `dialect` names where the data lives. Keyv offers
   * `keyv.iterator()` only for stores whose dialect or url names an adapter on its own list
   * (sqlite, postgres, mysql, mongo, redis, valkey, etcd): when the backend lists keys, `url`
   * says `ITERABLE_URL`, which names one, so that Keyv uses {@link iterator}.
   */
  get opts(): { dialect: string; url: string } {
    return { dialect: this.dialect, url: typeof this.backend.keys === 'function' ? ITERABLE_URL : '' }
  }

  /** The backend of the current Keyv namespace (the one backend, when given one). */
  get backend(): CacheBackend {
    if (this.single) return this.single
    let backend = this.backends.get(this.namespace)
    if (!backend) {
      backend = toBackend(this.forNamespace!(this.namespace))
      this.backends.set(this.namespace, backend)
    }
    return backend
  }

  async get<Value>(key: string): Promise<StoredData<Value> | undefined> {
    try {
      return await this.backend.get<StoredData<Value>>(key)
    } catch (error) {
      return this.readFailed(error, undefined)
    }
  }

  async getMany<Value>(keys: string[]): Promise<Array<StoredData<Value | undefined>>> {
    try {
      return await this.backend.getMany<StoredData<Value>>(keys)
    } catch (error) {
      return this.readFailed(
        error,
        keys.map(() => undefined),
      )
    }
  }

  async has(key: string): Promise<boolean> {
    try {
      return await this.backend.has(key)
    } catch (error) {
      return this.readFailed(error, false)
    }
  }

  async hasMany(keys: string[]): Promise<boolean[]> {
    try {
      return await Promise.all(keys.map((key) => this.backend.has(key)))
    } catch (error) {
      return this.readFailed(
        error,
        keys.map(() => false),
      )
    }
  }

  async set(key: string, value: unknown, ttl?: number): Promise<boolean> {
    try {
      await this.backend.set(key, value, toTtl(ttl))
      return true
    } catch (error) {
      return this.writeFailed(error, false)
    }
  }

  async setMany(entries: Array<{ key: string; value: unknown; ttl?: number }>): Promise<void> {
    try {
      await this.backend.setMany(
        entries.map((entry) => ({ key: entry.key, value: entry.value, ttl: toTtl(entry.ttl) })),
      )
    } catch (error) {
      this.writeFailed(error, undefined)
    }
  }

  async delete(key: string): Promise<boolean> {
    try {
      return await this.backend.delete(key)
    } catch (error) {
      return this.writeFailed(error, false)
    }
  }

  async deleteMany(keys: string[]): Promise<boolean> {
    try {
      return (await this.backend.deleteMany(keys)) > 0
    } catch (error) {
      return this.writeFailed(error, false)
    }
  }

  async clear(): Promise<void> {
    try {
      await this.backend.clear()
    } catch (error) {
      this.writeFailed(error, undefined)
    }
  }

  /**
   * Keyv's store iterator: `[key, value]` for every live key of the Keyv namespace `namespace`
   * (keys as Keyv handed them, `namespace:key`; every key without one), values as stored. Lists
   * through the backend's `keys()` and reads values with `getMany`, 100 keys at a time; a key
   * deleted between the two is left out. Throws `CacheUnsupportedError` when the backend cannot
   * list keys (Keyv then offers no `iterator()`), and a backend failure as it is (a listing cut
   * short is never passed off as complete).
   */
  async *iterator<Value>(
    namespace?: string,
  ): AsyncGenerator<Array<string | Awaited<Value> | undefined>, void> {
    const backend = this.backend
    const keys = listKeys(backend, namespace ? { prefix: `${namespace}:` } : {})
    let page: string[] = []
    const flush = async function* (batch: string[]): AsyncGenerator<[string, Awaited<Value>]> {
      const values = await backend.getMany<Awaited<Value>>(batch)
      for (let i = 0; i < batch.length; i++) if (values[i] !== undefined) yield [batch[i]!, values[i]!]
    }
    try {
      for await (const key of keys) {
        page.push(key)
        if (page.length < ITERATOR_PAGE) continue
        yield* flush(page)
        page = []
      }
      if (page.length > 0) yield* flush(page)
    } catch (error) {
      this.emit('error', error)
      throw error
    }
  }

  async disconnect(): Promise<void> {
    if (!this.closeOnDisconnect) return
    if (this.single) return this.single.close()
    await Promise.all([...this.backends.values()].map((backend) => backend.close()))
  }

  /**
   * Keyv reports nothing of a failed store read (it answers a miss, or rethrows), so the adapter
   * emits it; then throws it if asked to, or if it is the caller's error, else answers `miss`.
   */
  private readFailed<T>(error: unknown, miss: T): T {
    this.emit('error', error)
    if (this.throwOnErrors || callerError(error)) throw error
    return miss
  }

  /**
   * Keyv emits what a store write throws (and rethrows it with its own `throwOnErrors`), so a
   * thrown failure is left to Keyv; one that is answered as `miss` is emitted here.
   */
  private writeFailed<T>(error: unknown, miss: T): T {
    if (this.throwOnErrors || callerError(error)) throw error
    this.emit('error', error)
    return miss
  }
}

/** Keys per `getMany` of {@link KeyvStoreFromBackend.iterator}. */
const ITERATOR_PAGE = 100

/** The `opts.url` of an adapter whose backend lists keys; it names `redis` for Keyv's list of iterable adapters. */
const ITERABLE_URL = '@cache (iterates keys as @keyv/redis does)'

/** An error about the call (a value the backend cannot store, a bad TTL), not about the backend. */
function callerError(error: unknown): boolean {
  return error instanceof RangeError || (isCacheError(error) && !isUnavailable(error))
}

/** Keyv's TTL: ms, with 0/undefined for none. Passed on exactly (as `'<ms>ms'`, never rounded). */
function toTtl(ttl: number | undefined): string | undefined {
  return typeof ttl === 'number' && ttl > 0 && Number.isFinite(ttl) ? `${ttl}ms` : undefined
}

/**
 * Wraps a @cache backend as a Keyv store adapter: one backend, or a function that gives the
 * backend of each Keyv namespace. See {@link KeyvStoreOptions}.
 */
export function toKeyvStore(
  backend: CacheBackend | MinimalBackend | BackendForNamespace,
  options: KeyvStoreOptions = {},
): KeyvStoreFromBackend {
  return new KeyvStoreFromBackend(backend, options)
}
