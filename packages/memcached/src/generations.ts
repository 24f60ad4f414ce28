import { randomInt } from 'node:crypto'
import { CacheError } from '@cache/core'
import {
  incrExtras,
  Opcode,
  type Response,
  request,
  Status,
  storeExtras,
  unexpected as protocolError,
} from './protocol.js'

type Call = (index: number, buf: Buffer, operation: string) => Promise<Response>

interface Cached {
  text: string
  at: number
}

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

  private remember(index: number, value: bigint): string {
    const text = value.toString(36)
    this.values[index] = { text, at: performance.now() }
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
