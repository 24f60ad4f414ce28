import {
  type CacheBackend,
  type CacheEntry,
  CacheConfigError,
  CacheUnavailableError,
  type Duration,
  type SetManyItem,
} from '@cache/core'
import {
  booleanOption,
  assertIncrement,
  assertKeyList,
  checkLogger,
  copyItemList,
  copyKeyList,
  durationOption,
  ObservedBackend,
} from '@cache/core/backend'
import type memjs from 'memjs'
import { type Expiry, isExpired } from './expiry.js'
import { Generations } from './generations.js'
import { KeyMapper } from './keys.js'
import { casDisabled, casIsOff, casUnguarded, Counters } from './counters.js'
import { Batches } from './batch.js'
import { ItemFormat } from './items.js'
import { Links } from './links.js'
import { CallOrder } from './order.js'
import { Routes } from './routing.js'
import {
  checkArguments,
  createClient,
  maxAttemptsOption,
  type MemcachedBackendOptions,
  type MemcachedEvent,
  type MemcachedEventName,
} from './options.js'
import type { ServerPool, ServerReport } from './pool.js'
import {
  flushWrites,
  Opcode,
  type Response,
  request,
  Status,
  storeRequest,
  clearBuffersOnFailure,
  closeWhenSettled,
  onGenerationBump,
  unrefWhenIdle,
} from './protocol.js'

/** No item (a miss), as {@link MemcachedBackend.decodeRead} answers it. */
const MISS: unique symbol = Symbol('miss')

/** ADDs sent again at most when the item they found leaves the server before it is replaced. */
const ADD_ATTEMPTS = 3

/**
 * memcached through memjs: one or many servers (keys placed by a ketama ring, a failing server
 * ejected and retried), SASL, CAS. See the README for the key format, TTL rounding, how
 * `clear()` works, placement and failure behaviour.
 */
export class MemcachedBackend extends ObservedBackend implements CacheBackend {
  readonly name = 'memcached'
  /** Every process that reaches the server sees its entries. */
  readonly shared = true
  readonly namespace: string
  readonly client: memjs.Client
  private readonly items: ItemFormat
  private readonly counters: Counters
  private readonly keyMapper: KeyMapper
  private readonly generations: Generations
  private readonly links: Links
  private readonly pool: ServerPool
  private readonly routes: Routes
  private readonly batches: Batches
  private readonly timeoutMs: number
  private readonly maxAttempts: number
  private readonly flushOnClear: boolean
  private readonly ownsClient: boolean
  /** Keeps call order per key behind calls of several round trips (see order.ts). */
  private readonly order: CallOrder
  private readonly stopBumpWatch: () => void

  /** The TTL in ms a write that names none gets; `null` for no expiry. */
  get defaultTtlMs(): number | null {
    return this.items.defaultTtlMs ?? null
  }

  constructor(
    servers: string | readonly string[] = '127.0.0.1:11211',
    options: MemcachedBackendOptions = {},
  ) {
    super('memcached', checkArguments(servers, options).logger)
    // A bad logger is refused before a client is made.
    checkLogger(options.logger)
    this.namespace = options.namespace ?? 'cache'
    this.keyMapper = new KeyMapper(this.namespace)
    this.timeoutMs = durationOption(options.timeout, 'timeout', '300ms')
    this.order = new CallOrder(this.timeoutMs, (operation, error, keys) => {
      for (const key of keys) this.observer.error(operation, error, key as string)
    })
    this.items = new ItemFormat(options, this.observer)
    this.maxAttempts = maxAttemptsOption(options)
    this.flushOnClear = booleanOption(options.flushOnClear, 'flushOnClear', false)
    this.ownsClient = options.client === undefined
    if (options.client !== undefined) assertClientWaitsLonger(options.client, this.timeoutMs)
    this.client = options.client ?? createClient(servers, options, this.timeoutMs)
    if (this.ownsClient) unrefWhenIdle(this.client)
    clearBuffersOnFailure(this.client)
    const generationTtlMs = durationOption(options.generationTtl, 'generationTtl', 0, { zero: true })
    this.links = new Links(this.client, {
      timeoutMs: this.timeoutMs,
      weights: options.weights,
      eject: options.eject ?? {},
      logger: options.logger,
      observer: this.observer,
      closed: () => this.closed,
      // A server comes back only once its generation moved on: values it kept through a freeze,
      // or writes and deletes it missed while ejected, are never read again.
      retry: (index, links) =>
        this.generations.bumpOne(index, 'retry', (i, buf) => links.pool.sendRaw(i, buf)),
    })
    this.pool = this.links.pool
    this.counters = new Counters({
      links: this.links,
      observer: this.observer,
      items: this.items,
      maxAttempts: this.maxAttempts,
    })
    // Generation reads are timed here but their failures are counted by the operation that waited.
    this.generations = new Generations(
      this.keyMapper.generationKey,
      this.pool.names,
      generationTtlMs,
      (i, buf, op) => this.links.call(i, buf, op, undefined, false, false),
      (i, buf, op, done) => this.links.callNow(i, buf, op, undefined, false, false, done),
    )
    this.stopBumpWatch = onGenerationBump(this.client, (server, keys, failure) =>
      this.bumpFailed(server, keys, failure),
    )
    this.routes = new Routes({
      keyMapper: this.keyMapper,
      pool: this.pool,
      generations: this.generations,
      closed: () => this.closed,
      countError: (operation, error, key) => this.observer.error(operation, error, key),
    })
    this.batches = new Batches({
      routes: this.routes,
      links: this.links,
      observer: this.observer,
      items: this.items,
    })
  }

  /**
   * A listener of `error`, `server-down` or `server-up` runs where a failure is being handled (or
   * a server brought back): what it throws is logged once per listener and goes no further, so it
   * can neither stop a call from settling nor escape as an uncaught exception. A listener of `hit`,
   * `miss`, `set` or `delete` that throws rejects the call that emitted it.
   */
  override on(event: MemcachedEventName, listener: (event: MemcachedEvent) => void): this {
    this.observer.on(event, listener)
    return this
  }

  override off(event: MemcachedEventName, listener: (event: MemcachedEvent) => void): this {
    this.observer.off(event, listener)
    return this
  }

  /** Each server's health: state, consecutive failures, ejections, next retry. */
  serverStats(): ServerReport[] {
    return this.pool.report()
  }

  /** The server (`host:port`) that holds `key`. */
  serverFor(key: string): string {
    return this.pool.names[this.routes.serverOf(key)]!
  }

  get<T = unknown>(key: string): Promise<T | undefined> {
    return this.single(
      key,
      'get',
      (mkey) => request(Opcode.get, mkey),
      this.live,
      (found) => {
        const value = this.decodeRead<T>(key, found)
        return value === MISS ? undefined : value
      },
    )
  }

  getEntry<T = unknown>(key: string): Promise<CacheEntry<T> | undefined> {
    return this.single(
      key,
      'getEntry',
      (mkey) => request(Opcode.get, mkey),
      this.live,
      (found) => {
        const value = this.decodeRead<T>(key, found)
        if (value === MISS) return undefined
        return found!.flags === 0 ? { value } : { value, expiresAt: found!.flags * 1000 }
      },
    )
  }

  /**
   * The value of the item read for `key`, or MISS for none: a hit is counted only once the value
   * decodes (a read that rejects counts nothing), a miss at once.
   */
  private decodeRead<T>(key: string, found: Response | undefined): T | typeof MISS {
    if (found === undefined) {
      this.observer.miss(key)
      return MISS
    }
    const value = this.items.decode(found.value) as T
    this.observer.hit(key)
    return value
  }

  has(key: string): Promise<boolean> {
    return this.single(
      key,
      'has',
      (mkey) => request(Opcode.get, mkey),
      this.live,
      (found) => found !== undefined,
    )
  }

  set(key: string, value: unknown, ttl?: Duration): Promise<void> {
    let expiry: Expiry
    let bytes: Buffer
    try {
      expiry = this.items.expiry(ttl)
      bytes = this.items.encode(key, value)
    } catch (error) {
      return Promise.reject(error)
    }
    return this.single(
      key,
      'set',
      (mkey) => storeRequest(Opcode.set, mkey, expiry, bytes),
      (response) => {
        if (response.status !== Status.ok) throw this.items.failure('set', response.status, key, bytes.length)
      },
      () => this.observer.set(key),
    )
  }

  /**
   * Stores the value only if the key is absent (memcached ADD). One that times out is not undone
   * (see `undoFor` in protocol.ts): it may have found the key taken, and a DELETE behind it would
   * remove the value, or lock, another process holds. So it may have been applied.
   */
  async add(key: string, value: unknown, ttl?: Duration): Promise<boolean> {
    const expiry = this.items.expiry(ttl)
    const bytes = this.items.encode(key, value)
    // Exclusive: over an expired item it takes three round trips, which later calls must not overtake.
    const added = await this.order.exclusive(key, 'add', () =>
      this.routes.withKey(key, 'add', async (index, mkey) => {
        // The item memcached still held may leave it between two of these requests (its own
        // expiry, whole seconds): the key is free then, and the ADD is sent again.
        for (let attempt = 0; ; attempt++) {
          const response = await this.links.call(
            index,
            storeRequest(Opcode.add, mkey, expiry, bytes),
            'add',
            key,
          )
          if (response.status === Status.ok) return true
          if (response.status !== Status.exists)
            throw this.items.failure('add', response.status, key, bytes.length)
          // The server may still hold an item that reads already treat as expired (see expiry.ts):
          // replace it, but only if nobody changed it meanwhile.
          const current = await this.links.call(index, request(Opcode.get, mkey), 'add', key)
          if (current.status === Status.notFound && attempt < ADD_ATTEMPTS) continue
          if (current.status !== Status.ok || !isExpired(current.flags, this.items.now())) return false
          // With CAS 0 (memcached -C) the SET below would replace whatever is there by then.
          if (casIsOff(current)) throw casDisabled('add')
          const replaced = await this.links.call(
            index,
            storeRequest(Opcode.set, mkey, expiry, bytes, current.cas),
            'add',
            key,
          )
          if (replaced.status === Status.notFound && attempt < ADD_ATTEMPTS) continue
          if (replaced.status === Status.ok && casIsOff(replaced))
            this.observer.error('add', casUnguarded('add'), key)
          return replaced.status === Status.ok
        }
      }),
    )
    if (added) this.observer.set(key)
    return added
  }

  delete(key: string): Promise<boolean> {
    return this.single(
      key,
      'delete',
      (mkey) => request(Opcode.delete, mkey),
      (response, operation) => {
        if (response.status === Status.notFound) return false
        if (response.status !== Status.ok) throw this.items.failure(operation, response.status, key)
        return true
      },
      (removed) => {
        if (removed) this.observer.delete(key)
        return removed
      },
    )
  }

  /**
   * Deletes the key only if it holds the string `expected`: a get, then a delete carrying that
   * item's CAS version, which the server refuses if anything wrote the key in between.
   */
  async compareAndDelete(key: string, expected: string): Promise<boolean> {
    const removed = await this.order.exclusive(key, 'compareAndDelete', () =>
      this.routes.withKey(key, 'compareAndDelete', async (index, mkey) => {
        const found = await this.links.call(index, request(Opcode.get, mkey), 'compareAndDelete', key)
        if (found.status === Status.notFound) return false
        if (found.status !== Status.ok) throw this.items.failure('compareAndDelete', found.status, key)
        if (
          isExpired(found.flags, this.items.now()) ||
          !found.value.equals(this.items.codec.encode(expected))
        )
          return false
        // With CAS 0 (memcached -C) the DELETE would remove whatever is there by then.
        if (casIsOff(found)) throw casDisabled('compareAndDelete')
        const cas = request(Opcode.delete, mkey, undefined, undefined, found.cas)
        const response = await this.links.call(index, cas, 'compareAndDelete', key)
        if (response.status === Status.exists || response.status === Status.notFound) return false
        if (response.status !== Status.ok) throw this.items.failure('compareAndDelete', response.status, key)
        return true
      }),
    )
    if (removed) this.observer.delete(key)
    return removed
  }

  /**
   * Removes this namespace: bumps its generation on every server, so every key written before
   * becomes unreachable (memcached evicts the old items in time). `{ flush: true }` (or the
   * `flushOnClear` option) flushes the servers instead, removing every application's keys.
   */
  async clear(options: { flush?: boolean } = {}): Promise<void> {
    this.assertOpen()
    try {
      if (options.flush ?? this.flushOnClear) await this.generations.flush()
      else await this.generations.bump()
    } catch (error) {
      this.observer.error('clear', error)
      throw error
    }
  }

  /**
   * Adds `by` to an integer counter, creating it at `by` with the TTL if absent: a CAS loop
   * (see {@link Counters.incr}), so a refused step writes nothing.
   */
  async incr(key: string, by = 1, ttl?: Duration): Promise<number> {
    assertIncrement(by)
    const ttlMs = this.items.ttlMs(ttl)
    return this.order.exclusive(key, 'incr', () =>
      this.routes.withKey(key, 'incr', (index, mkey) => this.counters.incr(key, index, mkey, by, ttlMs)),
    )
  }

  /**
   * Read-modify-write with memcached CAS: reads the value and its CAS version, calls `fn`, and
   * writes only if nobody wrote in between; otherwise retries with the newer value (so `fn` must
   * be free of side effects). Callers in this process queue per key instead of conflicting.
   */
  async atomicUpdate<T>(
    key: string,
    fn: (current: T | undefined) => T | Promise<T>,
    ttl?: Duration,
  ): Promise<T> {
    const ttlMs = this.items.ttlMs(ttl)
    return this.order.exclusive(key, 'atomicUpdate', () =>
      this.routes.withKey(key, 'atomicUpdate', (index, mkey) =>
        this.counters.update(key, index, mkey, fn, ttlMs),
      ),
    )
  }

  /** One round trip per server, with quiet GETs (see {@link Batches.getMany}). */
  async getMany<T = unknown>(keys: readonly string[]): Promise<(T | undefined)[]> {
    // A copy: behind a pending write of one of the keys, the batch runs later.
    const list = copyKeyList(keys, 'getMany')
    return this.order.after(list, 'getMany', () => this.batches.getMany<T>(list))
  }

  /** One round trip per server, with quiet SETs (see {@link Batches.setMany}). */
  async setMany(items: readonly SetManyItem[]): Promise<void> {
    const list = copyItemList(items)
    return this.order.after(
      list.map((item) => item.key),
      'setMany',
      () => this.batches.setMany(list),
    )
  }

  /** One `delete` per key, all at once (what core's fallback does), each removal counted with its key. */
  async deleteMany(keys: readonly string[]): Promise<number> {
    this.assertOpen()
    assertKeyList(keys, 'deleteMany')
    const removed = await Promise.all(keys.map((key) => this.delete(key)))
    return removed.filter(Boolean).length
  }

  /**
   * Closes the connections this backend opened (not a client passed in), each once no request
   * waits on it: a request in flight is answered, or given up at its timeout and undone as ever
   * (see the README, "Failure behaviour"). Resolves at once. Idempotent.
   */
  async close(): Promise<void> {
    if (!this.markClosed()) return
    this.pool.close()
    // Writes still waiting may be given up after close(), and a failed bump is still told. Only
    // a client passed in (which may outlive many backends) lets go of this one.
    if (!this.ownsClient) this.stopBumpWatch()
    // What this tick sent goes out before the connections end: it is answered, as it would be
    // had it been written at once.
    flushWrites(this.client)
    if (this.ownsClient) closeWhenSettled(this.client)
  }

  /**
   * One request for one key, in the key's current generation (see {@link Routes.withKey}):
   * `build` makes it, `read` turns the server's answer into the result or throws, and `finish`
   * (counting, decoding) runs once before the caller's promise settles; what it throws rejects
   * the call. Written with callbacks from the call to the socket and back: the caller's promise
   * is the only one (awaiting each layer cost more per call than the rest of the client's work).
   */
  private single<A, R>(
    key: string,
    operation: string,
    build: (mkey: string) => Buffer,
    read: (response: Response, operation: string, key: string) => A,
    finish: (answer: A) => R,
  ): Promise<R> {
    if (this.order.busy)
      return this.order.after(key, operation, () => this.singleNow(key, operation, build, read, finish))
    return this.singleNow(key, operation, build, read, finish)
  }

  private singleNow<A, R>(
    key: string,
    operation: string,
    build: (mkey: string) => Buffer,
    read: (response: Response, operation: string, key: string) => A,
    finish: (answer: A) => R,
  ): Promise<R> {
    return new Promise((resolve, reject) =>
      this.routes.withKeyNow<A>(
        key,
        operation,
        (index, mkey, done) =>
          this.links.callNow(index, build(mkey), operation, key, true, true, (error, response) => {
            if (error !== undefined) return done(error)
            let answer: A
            try {
              answer = read(response!, operation, key)
            } catch (failure) {
              return done(failure)
            }
            done(undefined, answer)
          }),
        (error, answer) => {
          if (error !== undefined) return reject(error)
          try {
            resolve(finish(answer as A))
          } catch (failure) {
            reject(failure)
          }
        },
      ),
    )
  }

  /**
   * Writes given up on a connection to `server` are hidden by a bump of their namespaces'
   * generations (see `abandon` in protocol.ts), which every backend of the process then reads
   * again. If the bump could not be sent, those writes may still land when the server resumes:
   * said through `error`, never silently.
   */
  private bumpFailed(server: string, keys: readonly string[], failure: Error | undefined): void {
    // A client passed in may carry other namespaces' writes: each backend tells of its own.
    if (failure === undefined || !keys.includes(this.keyMapper.generationKey)) return
    this.observer.error(
      'set',
      new CacheUnavailableError(
        'memcached',
        `memcached: writes given up on ${server} (no answer in time) may still be applied when it resumes: the generation of namespace "${this.namespace}" could not be moved on to hide them (${failure.message})`,
        { cause: failure, server },
      ),
    )
  }

  /** The live item in a GET's answer, or undefined on a miss (or an item past its stored expiry). */
  private readonly live = (response: Response, operation: string, key: string): Response | undefined => {
    if (response.status === Status.notFound) return undefined
    if (response.status !== Status.ok) throw this.items.failure(operation, response.status, key)
    return response.flags !== 0 && isExpired(response.flags, this.items.now()) ? undefined : response
  }
}

/**
 * A memcached backend. `servers` is `'host:port'` or `'host:port,host:port'` (or an array).
 * See {@link MemcachedBackendOptions}.
 */
export function memcachedBackend(
  servers: string | readonly string[] = '127.0.0.1:11211',
  options: MemcachedBackendOptions = {},
): MemcachedBackend {
  return new MemcachedBackend(servers, options)
}

/**
 * A client passed in must not give up a request before the backend does: memjs's own timer ends
 * the connection without the undo and the generation bump the backend sends when it gives up a
 * write (see `abandon` in protocol.ts), so a write reported failed would land when a frozen
 * server resumes, readable by every process.
 */
function assertClientWaitsLonger(client: memjs.Client, timeoutMs: number): void {
  for (const server of client.servers as unknown as { options?: { timeout?: unknown }; host?: string }[]) {
    const seconds = server.options?.timeout
    if (typeof seconds !== 'number' || seconds * 1000 > timeoutMs) continue
    throw new CacheConfigError(
      'client',
      `the memjs client's own timeout (${seconds} s, for ${server.host ?? 'a server'}) must be longer than the backend's \`timeout\` (${timeoutMs} ms): memjs would give up a write first, and the backend could not keep it from landing when the server answers again. Create the client with a longer \`timeout\` (memjs takes seconds), or let the backend make its own client`,
    )
  }
}
