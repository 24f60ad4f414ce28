/**
 * The memcached binary protocol on top of memjs's connections.
 *
 * memjs's high-level client has no gets/cas, parses INCR results wrongly above 2^32, and retries
 * failed requests (which would replay an increment). So requests are built here and written to a
 * memjs `Server` chosen by the backend: memjs still owns the sockets, SASL, response framing and
 * the per-request timeout; this file owns the bytes and the statuses.
 */
import { CacheError } from '@cache/core'
import type memjs from 'memjs'
import type { Expiry } from './expiry.js'

export const Opcode = {
  get: 0x00,
  set: 0x01,
  add: 0x02,
  delete: 0x04,
  increment: 0x05,
  flush: 0x08,
  version: 0x0b,
} as const

export const Status = {
  ok: 0x00,
  notFound: 0x01,
  exists: 0x02,
  tooLarge: 0x03,
  notStored: 0x05,
  nonNumeric: 0x06,
} as const

/** INCR expiration meaning "fail with NOT_FOUND instead of creating the counter". */
export const NO_CREATE = 0xffffffff

/** What memjs's parser hands back for one response. */
interface RawResponse {
  header: { status: number; cas: Buffer }
  extras: Buffer
  val: Buffer
}

/** The parts of memjs's `Server` this file drives (public in memjs's source, absent from its types). */
interface Connection {
  host: string
  port: number
  connected: boolean
  _socket?: { cork(): void; uncork(): void; ref(): unknown; unref(): unknown }
  onResponse(seq: number, fn: (response: RawResponse) => void): void
  onError(seq: number, fn: (error: unknown) => void): void
  write(blob: Buffer): void
}

export interface Response {
  status: number
  /** The value bytes (GET) or the 8-byte counter (INCR). */
  value: Buffer
  /** The item's flags on a GET hit (0 otherwise). */
  flags: number
  /** The item's CAS version, 8 bytes. */
  cas: Buffer
}

const EMPTY = Buffer.alloc(0)

/** A request: 24-byte header, extras, key, value. `key` is ASCII (the backend made it safe). */
export function request(
  opcode: number,
  key: string,
  extras: Buffer = EMPTY,
  value: Buffer = EMPTY,
  cas?: Buffer,
): Buffer {
  const keyLength = key.length
  const buf = Buffer.allocUnsafe(24 + extras.length + keyLength + value.length)
  buf[0] = 0x80
  buf[1] = opcode
  buf.writeUInt16BE(keyLength, 2)
  buf[4] = extras.length
  buf[5] = 0
  buf.writeUInt16BE(0, 6)
  buf.writeUInt32BE(extras.length + keyLength + value.length, 8)
  buf.writeUInt32BE(0, 12) // opaque: set by send()
  if (cas) cas.copy(buf, 16)
  else buf.fill(0, 16, 24)
  extras.copy(buf, 24)
  buf.write(key, 24 + extras.length, 'latin1')
  value.copy(buf, 24 + extras.length + keyLength)
  return buf
}

/** SET/ADD extras: flags and expiration. */
export function storeExtras(flags: number, exptime: number): Buffer {
  const extras = Buffer.allocUnsafe(8)
  extras.writeUInt32BE(flags, 0)
  extras.writeUInt32BE(exptime, 4)
  return extras
}

/** A SET or ADD of `bytes` with an expiry; with `cas`, only if the item still has that version. */
export function storeRequest(
  opcode: number,
  key: string,
  expiry: Expiry,
  bytes: Buffer,
  cas?: Buffer,
): Buffer {
  return request(opcode, key, storeExtras(expiry.flags, expiry.exptime), bytes, cas)
}

/** A counter as memcached's INCR reads it: decimal ASCII. */
export function counterBytes(n: number): Buffer {
  return Buffer.from(String(n), 'latin1')
}

/** INCR extras: amount, initial value, expiration (NO_CREATE: do not create). */
export function incrExtras(amount: number): Buffer {
  const extras = Buffer.alloc(20)
  extras.writeBigUInt64BE(BigInt(amount), 0)
  extras.writeUInt32BE(NO_CREATE, 16)
  return extras
}

/** A request that got no answer: the link failed, or the server did not answer in time. */
export class LinkFailure extends Error {
  constructor(
    readonly timedOut: boolean,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options)
  }
}

/**
 * Sends one request on one memjs server and resolves with its response, or rejects with a
 * {@link LinkFailure}. memjs fails the request when the server does not answer within its
 * `timeout`; `guardMs` also bounds the time spent connecting, which memjs counts separately.
 * Never retried: a lost INCR is reported, not replayed.
 */
export function send(client: memjs.Client, index: number, buf: Buffer, guardMs: number): Promise<Response> {
  const server = client.servers[index] as unknown as Connection
  client.incrSeq()
  const seq = (client as unknown as { seq: number }).seq
  buf.writeUInt32BE(seq, 12)
  return new Promise<Response>((resolve, reject) => {
    let guard: NodeJS.Timeout | undefined
    let settled = false
    const settle = () => {
      if (guard) clearTimeout(guard)
      if (!settled) release(server)
      settled = true
    }
    server.onResponse(seq, (response) => {
      settle()
      const extras = response.extras
      resolve({
        status: response.header.status,
        value: response.val,
        flags: extras.length >= 4 ? extras.readUInt32BE(0) : 0,
        cas: response.header.cas,
      })
    })
    server.onError(seq, (error) => {
      settle()
      const message = error instanceof Error ? error.message : String(error)
      const cause = error instanceof Error ? error : new Error(message)
      reject(new LinkFailure(/timed out/i.test(message), message, { cause }))
    })
    if (!server.connected) {
      // Connecting (or reconnecting): bound the whole operation, not just the request.
      guard = setTimeout(() => {
        server.onResponse(seq, () => {})
        server.onError(seq, () => {})
        settle()
        reject(new LinkFailure(true, `not connected within ${guardMs} ms`))
      }, guardMs)
    }
    hold(server)
    server.write(buf)
  })
}

/*
 * A connection keeps the process alive only while it has requests waiting for their answer: a
 * script that never calls close() exits once its work is done. memjs times requests out with the
 * socket's own timeout, which holds nothing, so the socket itself is ref'd while busy.
 */
const waiting = new WeakMap<Connection, number>()

function hold(server: Connection): void {
  const count = (waiting.get(server) ?? 0) + 1
  waiting.set(server, count)
  // An idle socket is unref'd; one memjs creates for this write starts ref'd.
  if (count === 1) server._socket?.ref()
}

function release(server: Connection): void {
  const count = (waiting.get(server) ?? 1) - 1
  waiting.set(server, count)
  if (count === 0) server._socket?.unref()
}

/**
 * Holds the writes to server `index` until the current tick ends, so that the requests this tick
 * sends leave in one write and reach the server together (otherwise Nagle's algorithm holds each
 * small request back until the previous one is acknowledged).
 */
export function holdWrites(client: memjs.Client, index: number): void {
  const server = client.servers[index] as unknown as Connection
  const socket = server.connected ? server._socket : undefined
  if (socket === undefined) return
  socket.cork()
  queueMicrotask(() => socket.uncork())
}

/** An error for a status the caller did not expect. */
export function unexpected(backend: string, operation: string, status: number): CacheError {
  return new CacheError(`${backend}: ${operation} failed with memcached status 0x${status.toString(16)}`)
}

/** The unsigned 64-bit counter of an INCR response, as a number. */
export function counterValue(response: Response): number {
  return Number(response.value.readBigUInt64BE(0))
}
