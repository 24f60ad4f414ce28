import type { Socket } from 'node:net'
import { CacheTimeoutError, CacheUnavailableError, CacheValueTooLargeError } from '@cache/core'
import type memjs from 'memjs'
import { LinkFailure, Opcode, type Response, request } from './protocol.js'

/**
 * What an item costs a memcached server beyond its value and key, with room to spare: memcached
 * 1.6 counts a 48-byte header, the key and its terminator, 4 bytes of flags, 8 of CAS and the
 * value's 2-byte line end against `item_size_max` (63 bytes); a value is sent only when
 * `value + key + ITEM_MARGIN` is at most the server's `item_size_max`.
 */
export const ITEM_MARGIN = 128

/** A SET/ADD request is its value and key plus 32 bytes (header, extras). */
const REQUEST_MARGIN = ITEM_MARGIN - 32

/** memcached's smallest item size limit (`-I` accepts no less than 1 KB). */
const MIN_ITEM_SIZE_MAX = 1024

/** A request no longer than this fits every memcached server: it never waits for the limit. */
export const ALWAYS_FITS = MIN_ITEM_SIZE_MAX - REQUEST_MARGIN

const STAT = 0x10

/** What a waiting request is told once the limit is read: nothing, or why it could not be. */
export type LimitWaiter = (failure?: Error) => void

/** The parts of memjs's `Server` used here (public in memjs's source, absent from its types). */
interface Connection {
  _socket: Socket | undefined
  responseCallbacks: Record<number, unknown>
  errorCallbacks: Record<number, unknown>
  onResponse(seq: number, fn: (response: StatAnswer) => void): void
  onError(seq: number, fn: (error: unknown) => void): void
  write(blob: Buffer): void
}

interface StatAnswer {
  header: { status: number; totalBodyLength: number }
  key: Buffer
  val: Buffer
}

/** A server's item size limit, as read on one connection. */
interface Known {
  socket: Socket
  /** `item_size_max` in bytes; Infinity for a server that does not say (nothing is checked). */
  itemSizeMax: number
}

/** A read of a server's limit under way, and the requests waiting for it, in call order. */
interface Reading {
  waiters: LimitWaiter[]
}

/**
 * Each server's item size limit (`item_size_max`, memcached's `-I`), read with `stats settings`
 * once per connection: when the backend starts, and again on the first large value written on a
 * new connection (a restarted server may have another `-I`). memcached refuses a SET over its
 * limit by unlinking the key's item first (CAS or not), so a value the server would refuse is
 * refused here before anything is sent, leaving the stored value as it was.
 *
 * Requests no longer than {@link ALWAYS_FITS} fit every server and never wait. A larger one
 * waits, while the limit of its server's current connection is not known, for it to be read (one
 * round trip), and every request to that server waits behind it, so calls still go out in order.
 */
export class ServerLimits {
  private readonly known: (Known | undefined)[]
  private readonly reading: (Reading | undefined)[]

  constructor(
    private readonly client: memjs.Client,
    private readonly names: readonly string[],
    private readonly timeoutMs: number,
    /** Sends a request whatever the server's health (answered after the stats, on the same connection). */
    private readonly sendRaw: (index: number, buf: Buffer) => Promise<Response>,
  ) {
    this.known = names.map(() => undefined)
    this.reading = names.map(() => undefined)
  }

  /** True when a request to server `index` must wait (see {@link wait}). */
  mustWait(index: number, length: number): boolean {
    const reading = this.reading[index]
    // While a read is under way, only a large value waits for it, and whatever comes after.
    if (reading !== undefined && reading.waiters.length > 0) return true
    return length > ALWAYS_FITS && !this.ready(index)
  }

  /** {@link mustWait} for several requests sent together. */
  mustWaitAny(index: number, requests: readonly Buffer[]): boolean {
    const reading = this.reading[index]
    if (reading !== undefined && reading.waiters.length > 0) return true
    if (this.ready(index)) return false
    for (const buf of requests) if (buf.length > ALWAYS_FITS) return true
    return false
  }

  /** Calls `waiter` once the limit of server `index` is read (reading it if nobody is), in call order. */
  wait(index: number, waiter: LimitWaiter): void {
    const reading = this.reading[index]
    if (reading !== undefined) {
      reading.waiters.push(waiter)
      return
    }
    this.read(index).then(
      () => undefined,
      () => undefined,
    )
    this.reading[index]!.waiters.push(waiter)
  }

  /**
   * Reads the limit of server `index` on its connection (opening one if needed): `stats settings`
   * then a VERSION, whose answer (memcached answers in order) says every stat has arrived; rejects
   * with the failure of the VERSION. The requests waiting meanwhile are then let go.
   */
  read(index: number): Promise<void> {
    const server = this.client.servers[index] as unknown as Connection
    const waiters: LimitWaiter[] = []
    this.reading[index] = { waiters }
    let itemSizeMax = Number.POSITIVE_INFINITY
    const counter = this.client as unknown as { seq: number }
    counter.seq = (counter.seq + 1) >>> 0
    const seq = counter.seq
    const stats = request(STAT, 'settings')
    stats.writeUInt32BE(seq, 12)
    const answer = (response: StatAnswer) => {
      if (response.header.status !== 0 || response.header.totalBodyLength === 0) return
      if (response.key.toString('latin1') === 'item_size_max') {
        const parsed = Number(response.val.toString('latin1'))
        if (Number.isSafeInteger(parsed) && parsed > 0) itemSizeMax = parsed
      }
    }
    // memjs keeps a quiet handler until the answer with an empty body (the end of the stats).
    ;(answer as { quiet?: boolean }).quiet = true
    server.onResponse(seq, answer)
    // Its failure is the VERSION's, which follows it on the same connection.
    server.onError(seq, () => {})
    server.write(stats)
    const socket = server._socket
    const forget = () => {
      delete server.responseCallbacks[seq]
      delete server.errorCallbacks[seq]
    }
    return this.sendRaw(index, request(Opcode.version, '')).then(
      () => {
        forget()
        // On the connection the stats were read on; a later one reads them again.
        if (socket !== undefined && server._socket === socket) this.known[index] = { socket, itemSizeMax }
        this.release(index, waiters)
      },
      (error: unknown) => {
        forget()
        this.release(index, waiters, this.unread(index, error))
        throw error
      },
    )
  }

  /** The value in `buf` (a SET/ADD to server `index`) is over the server's limit: the error, else undefined. */
  refusal(index: number, buf: Buffer, key: string | undefined): CacheValueTooLargeError | undefined {
    const known = this.known[index]
    if (known === undefined || buf.length + REQUEST_MARGIN <= known.itemSizeMax) return undefined
    const opcode = buf[1]
    if (opcode !== Opcode.set && opcode !== Opcode.add && opcode !== Opcode.setq) return undefined
    const keyLength = buf.readUInt16BE(2)
    const size = buf.length - 24 - buf[4]! - keyLength
    const limit = Math.max(0, known.itemSizeMax - keyLength - ITEM_MARGIN)
    return new CacheValueTooLargeError(
      key ?? '',
      size,
      limit,
      `the memcached server ${this.names[index]} (its item size limit, -I: item_size_max ${known.itemSizeMax} bytes, which holds values of up to ${limit} bytes with this key); nothing was sent, the stored value is unchanged`,
    )
  }

  /** The limit of server `index`'s current connection is known. */
  private ready(index: number): boolean {
    const known = this.known[index]
    if (known === undefined) return false
    const socket = (this.client.servers[index] as unknown as Connection)._socket
    return socket === known.socket
  }

  private release(index: number, waiters: LimitWaiter[], failure?: Error): void {
    if (this.reading[index]?.waiters === waiters) this.reading[index] = undefined
    for (const waiter of waiters) waiter(failure)
  }

  /** Why a value could not be sent: its server's limit could not be read. */
  private unread(index: number, error: unknown): Error {
    const server = this.names[index]!
    const options = { cause: error, server, unsent: true }
    if (error instanceof LinkFailure && error.timedOut)
      return new CacheTimeoutError(
        'memcached',
        `reading the item size limit of ${server}`,
        this.timeoutMs,
        options,
      )
    const message = error instanceof Error ? error.message : String(error)
    return new CacheUnavailableError(
      'memcached',
      `memcached: cannot read the item size limit of ${server} (${message}); the value was not sent`,
      options,
    )
  }
}
