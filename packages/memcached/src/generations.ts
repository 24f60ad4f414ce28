import { randomInt } from 'node:crypto'
import { CacheError } from '@cache/core'
import {
  atTickEnd,
  type Done,
  doneWhenSettled,
  incrExtras,
  Opcode,
  onEveryGenerationBump,
  type Response,
  request,
  Status,
  storeExtras,
  unexpected as protocolError,
} from './protocol.js'

type Call = (index: number, buf: Buffer, operation: string) => Promise<Response>
type CallNow = (index: number, buf: Buffer, operation: string, done: Done<Response>) => void

interface Cached {
  text: string
  at: number
  /** The counter as the server last sent it (a read that gets the same bytes parses nothing). */
  bytes?: Buffer
}

/** Every {@link Generations} of this process, by `<server> <generation key>`. */
const everyCopy = new Map<string, Set<WeakRef<Generations>>>()

// Writes given up in this process moved generations on (see protocol.ts): every backend, also
// one closed meanwhile or on another client, stops trusting its copy.
onEveryGenerationBump((server, keys, failure) => {
  if (failure === undefined) for (const key of keys) Generations.movedOn(server, key)
})

/** The outcome of a generation read. */
export type GenerationRead = { value: string } | { error: unknown }

/**
 * A namespace's generation, one counter per server, kept on that server under `<namespace>#g`.
 * Keys include the generation of the server they live on, so `clear()` is one INCR per server,
 * and a server that is down only affects its own keys.
 *
 * A new counter starts at the current time in ms times 2^20 plus 20 random bits, not at 0: if
 * memcached evicts or loses the counter, the new generation does not match keys written under an
 * old one (not even one created in the same millisecond).
 */
export class Generations {
  /** Per server, the generation read the operations of the current tick share. */
  private readonly tickReads: (TickRead | undefined)[] = []
  private readonly values: (Cached | undefined)[]
  /** The generation read (a GET of the counter), copied for each use. */
  private readonly readRequest: Buffer

  constructor(
    private readonly key: string,
    private readonly servers: readonly string[],
    private readonly ttlMs: number,
    private readonly call: Call,
    private readonly callNow: CallNow,
  ) {
    this.values = new Array(servers.length).fill(undefined)
    this.readRequest = request(Opcode.get, key)
    const self = new WeakRef(this)
    for (const server of servers) {
      const place = `${server} ${key}`
      let set = everyCopy.get(place)
      if (set === undefined) everyCopy.set(place, (set = new Set()))
      set.add(self)
    }
  }

  /**
   * The generation `key` on `server` was moved on by a request written now (writes given up,
   * see protocol.ts): no backend of this process that keeps a copy of it (same server as listed,
   * same namespace) trusts that copy or a read sent before; each reads it again.
   */
  static movedOn(server: string, key: string): void {
    const set = everyCopy.get(`${server} ${key}`)
    if (set === undefined) return
    for (const ref of set) {
      const generations = ref.deref()
      if (generations === undefined) set.delete(ref)
      else generations.moving(generations.servers.indexOf(server))
    }
    if (set.size === 0) everyCopy.delete(`${server} ${key}`)
  }

  /** The generation of server `index` if it was read recently enough to trust without reading it. */
  trusted(index: number): string | undefined {
    const cached = this.values[index]
    // generationTtl 0 (the default) trusts no copy: no clock read on the way.
    if (this.ttlMs === 0 || cached === undefined) return undefined
    return performance.now() - cached.at < this.ttlMs ? cached.text : undefined
  }

  /**
   * Server `index` is about to get a new generation, by a request written now: the operations
   * called after it (in this tick too) must not use a read sent before it, nor a trusted copy.
   * Each sends its own read, which the server answers after the change: they run under the new
   * generation, in call order.
   */
  private moving(index: number): void {
    this.tickReads[index] = undefined
    const cached = this.values[index]
    if (cached !== undefined) cached.at = Number.NEGATIVE_INFINITY
  }

  /** The generation of server `index` last seen by this process, however old. */
  last(index: number): string | undefined {
    return this.values[index]?.text
  }

  /** Moves every server to a new generation. Fails if any server could not be reached. */
  async bump(): Promise<void> {
    await this.everyServer((index) => this.bumpOne(index, 'clear'))
  }

  /**
   * Moves one server to a new generation: nothing it held for this namespace is read again.
   * `call` defaults to the one every operation uses.
   */
  async bumpOne(index: number, operation: string, call: Call = this.call): Promise<void> {
    this.moving(index)
    for (let attempt = 0; attempt < 5; attempt++) {
      const response = await call(index, request(Opcode.increment, this.key, incrExtras(1)), operation)
      if (response.status === Status.ok) {
        this.remember(index, response.value.readBigUInt64BE(0))
        return
      }
      if (response.status !== Status.notFound) throw unexpected(operation, response.status)
      // No counter yet (or it was evicted): any fresh one is a new generation.
      if (await this.create(index, operation, call)) return
    }
    throw new CacheError(`memcached: ${operation} could not update the generation counter`)
  }

  /** `flush_all` on every server; the next operation starts a new generation. */
  async flush(): Promise<void> {
    await this.everyServer(async (index) => {
      this.moving(index)
      const response = await this.call(index, request(Opcode.flush, ''), 'clear')
      if (response.status !== Status.ok) throw unexpected('clear', response.status)
      this.values[index] = undefined
    })
  }

  /**
   * Reads (or creates) the generation of server `index`, with a request written now, and calls
   * `done` with it (never before this returns). The common case, a counter that has not moved,
   * costs a comparison of a few bytes.
   */
  readNow(index: number, operation: string, done: (read: GenerationRead) => void): void {
    // A copy of the read made once: each request gets its own number written into it.
    this.callNow(index, Buffer.from(this.readRequest), operation, (error, response) => {
      if (error !== undefined) return done({ error })
      if (response!.status !== Status.ok) {
        // No counter (evicted, or never created): create one, or read the one another process
        // created first.
        const status = response!.status
        const slow = async () => {
          if (status !== Status.notFound) throw unexpected(operation, status)
          return (await this.create(index, operation)) ?? (await this.read(index, operation))
        }
        slow().then(
          (value) => done({ value }),
          (failure: unknown) => done({ error: failure }),
        )
        return
      }
      const bytes = response!.value
      const cached = this.values[index]
      if (cached?.bytes?.equals(bytes)) {
        if (this.ttlMs > 0) cached.at = performance.now()
        return done({ value: cached.text })
      }
      let value: bigint
      try {
        value = this.parse(bytes, operation)
      } catch (failure) {
        return done({ error: failure })
      }
      done({ value: this.remember(index, value, Buffer.from(bytes)) })
    })
  }

  /** Reads (or creates) the generation of server `index`, with a request sent now. */
  async read(index: number, operation: string): Promise<string> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const response = await this.call(index, request(Opcode.get, this.key), operation)
      if (response.status === Status.ok) return this.remember(index, this.parse(response.value, operation))
      if (response.status !== Status.notFound) throw unexpected(operation, response.status)
      const created = await this.create(index, operation)
      if (created) return created
    }
    throw new CacheError('memcached: could not read the generation counter')
  }

  /** The counter in a generation read's answer; a `CacheError` if another client wrote something else there. */
  private parse(bytes: Buffer, operation: string): bigint {
    const text = bytes.toString('latin1')
    if (/^[0-9]{1,20}$/.test(text)) return BigInt(text)
    throw new CacheError(
      `memcached: ${operation} failed: the generation counter ${this.key} holds ${JSON.stringify(text.slice(0, 40))}, ` +
        'which @cache did not write; delete that key to start a new generation',
    )
  }

  /** ADDs a fresh counter; its text, or undefined if another process created one first. */
  private async create(
    index: number,
    operation: string,
    call: Call = this.call,
  ): Promise<string | undefined> {
    const start = (BigInt(Date.now()) << 20n) | BigInt(randomInt(1 << 20))
    const response = await call(
      index,
      request(Opcode.add, this.key, storeExtras(0, 0), Buffer.from(start.toString())),
      operation,
    )
    if (response.status === Status.ok) return this.remember(index, start)
    if (response.status !== Status.exists) throw unexpected(operation, response.status)
    return undefined
  }

  /**
   * Runs `run` with the current generation of server `index`, read by a request written together
   * with the operation's (and those of every other operation of the same tick, which share it),
   * on the same connection: memcached answers them in order, so the operation costs no extra
   * round trip and sees any `clear()` that finished before it started. If the generation changed
   * since this process last saw it, what `run` did under the old one is dropped and it runs again.
   * Within `generationTtl` of the last read, the copy is trusted instead, unless `internal` (the
   * keys include @cache's own: invalidation state, locks). `count` counts a failed generation read.
   */
  run<R>(
    index: number,
    operation: string,
    internal: boolean,
    count: (error: unknown) => void,
    run: (generation: string) => Promise<R>,
  ): Promise<R> {
    return new Promise((resolve, reject) =>
      this.runNow<R>(
        index,
        operation,
        internal,
        count,
        (generation, done) => doneWhenSettled(() => run(generation), done),
        (error, value) => (error === undefined ? resolve(value as R) : reject(error)),
      ),
    )
  }

  /**
   * {@link run}, with callbacks instead of promises: `run` calls its `done` once with its
   * outcome, and `done` is called once with the operation's (the single-key operations hand one
   * promise to the caller and none in between). `run` must not throw.
   */
  runNow<R>(
    index: number,
    operation: string,
    internal: boolean,
    count: (error: unknown) => void,
    run: (generation: string, done: Done<R>) => void,
    done: Done<R>,
  ): void {
    const trusted = this.trusted(index)
    if (trusted !== undefined && !internal) {
      run(trusted, done)
      return
    }
    const read = this.generationOfThisTick(index, operation)
    const known = this.last(index)
    if (known === undefined) {
      read.onResult((first) => {
        if ('error' in first) {
          count(first.error)
          return done(first.error)
        }
        run(first.value, done)
      })
      return
    }
    if (read.result !== undefined) {
      // Not reached in practice (a tick's read is answered in a later tick): checked like the rest.
      const current = read.result
      run('value' in current ? current.value : known, done)
      return
    }
    // The read goes out before the operation and is answered first. If it shows a new generation
    // (another process's clear()), every operation of the tick that ran under the old one runs
    // again at once, in call order (its waiter was registered in call order): the re-runs go out
    // together, as the first attempts did. What a first attempt answers is then dropped.
    let rerun = false
    let current: GenerationRead | undefined
    // The first attempt's outcome, when it comes before the read's (a failed connection).
    let answered = false
    let failure: unknown
    let value: R | undefined
    read.onResult((result) => {
      if ('value' in result && result.value !== known) {
        rerun = true
        run(result.value, done)
        return
      }
      current = result
      if (answered) settleRun(current, failure, value, count, done)
    })
    run(known, (error, answer) => {
      if (rerun) return
      if (current !== undefined) return settleRun(current, error, answer, count, done)
      answered = true
      failure = error
      value = answer
    })
  }

  /**
   * The generation of server `index`, read by a request sent in this tick: the operations of one
   * tick share it (it is written, with them, once they are all in). None of them can have started
   * after a `clear()` that this read missed: learning that a `clear()` finished takes I/O, which a
   * tick does not do.
   */
  private generationOfThisTick(index: number, operation: string): TickRead {
    let read = this.tickReads[index]
    if (read === undefined) {
      const fresh = new TickRead()
      read = fresh
      this.tickReads[index] = fresh
      atTickEnd(() => {
        if (this.tickReads[index] === fresh) this.tickReads[index] = undefined
      })
      this.readNow(index, `${operation} (reading the generation)`, (result) => fresh.settle(result))
    }
    return read
  }

  private remember(index: number, value: bigint, bytes?: Buffer): string {
    const text = value.toString(36)
    this.values[index] =
      bytes === undefined ? { text, at: performance.now() } : { text, at: performance.now(), bytes }
    return text
  }

  private async everyServer(task: (index: number) => Promise<unknown>): Promise<void> {
    const results = await Promise.allSettled(this.values.map((_, index) => task(index)))
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed) throw failed.reason
  }
}

/**
 * Ends an operation run under the generation it knew, once the generation read sent with it
 * showed no change (`read`) and the operation answered (`failure`, `value`). A function of the
 * module, not a closure made per operation (the build names each such closure, per call).
 */
function settleRun<R>(
  read: GenerationRead,
  failure: unknown,
  value: R | undefined,
  count: (error: unknown) => void,
  done: Done<R>,
): void {
  if (!('error' in read)) done(failure, value)
  // Sent together: if the operation failed too, its own failure was counted and says more.
  else if (failure !== undefined) done(failure)
  else {
    count(read.error)
    done(read.error)
  }
}

function unexpected(operation: string, status: number): CacheError {
  return protocolError('memcached', operation, status)
}

/** The generation read the operations of one tick on one server share. */
class TickRead {
  result: GenerationRead | undefined
  private waiters: ((read: GenerationRead) => void)[] = []

  settle(read: GenerationRead): void {
    this.result = read
    for (const waiter of this.waiters.splice(0)) waiter(read)
  }

  /** Calls `waiter` with the read's outcome: now if it is in, else once it is. */
  onResult(waiter: (read: GenerationRead) => void): void {
    const result = this.result
    if (result !== undefined) waiter(result)
    else this.waiters.push(waiter)
  }
}
