import { randomInt } from 'node:crypto'
import { CacheError } from '@cache/core'
import {
  type Done,
  incrExtras,
  Opcode,
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
  private readonly values: (Cached | undefined)[]

  constructor(
    private readonly key: string,
    servers: number,
    private readonly ttlMs: number,
    private readonly call: Call,
    private readonly callNow: CallNow,
  ) {
    this.values = new Array(servers).fill(undefined)
  }

  /** The generation of server `index` if it was read recently enough to trust without reading it. */
  trusted(index: number): string | undefined {
    const cached = this.values[index]
    return cached !== undefined && performance.now() - cached.at < this.ttlMs ? cached.text : undefined
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
    this.callNow(index, request(Opcode.get, this.key), operation, (error, response) => {
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
        cached.at = performance.now()
        return done({ value: cached.text })
      }
      done({ value: this.remember(index, BigInt(bytes.toString('latin1')), Buffer.from(bytes)) })
    })
  }

  /** Reads (or creates) the generation of server `index`, with a request sent now. */
  async read(index: number, operation: string): Promise<string> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const response = await this.call(index, request(Opcode.get, this.key), operation)
      if (response.status === Status.ok)
        return this.remember(index, BigInt(response.value.toString('latin1')))
      if (response.status !== Status.notFound) throw unexpected(operation, response.status)
      const created = await this.create(index, operation)
      if (created) return created
    }
    throw new CacheError('memcached: could not read the generation counter')
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

function unexpected(operation: string, status: number): CacheError {
  return protocolError('memcached', operation, status)
}
