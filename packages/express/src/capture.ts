import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { Readable } from 'node:stream'

/** What a handler sent, as seen at the capture layer, and the response as it left the server. */
export interface CapturedResponse {
  /** The status at this layer. */
  status: number
  /**
   * Headers set at this layer or after it (by the handler, or middleware registered after the
   * cache): what a replay must carry. Headers that middleware registered before the cache set
   * before the handler ran are left out: that middleware sets them again on every hit.
   */
  headers: OutgoingHttpHeaders
  /**
   * The status and every header of the response as the client receives it, whoever set them:
   * middleware before the cache (including hooks that run as the headers go out, like a session
   * cookie), the handler, and middleware after it. Storability is decided on these.
   */
  final: { status: number; headers: OutgoingHttpHeaders }
  /** The body bytes, or `undefined` when they exceeded the size limit. */
  body: Buffer | undefined
  /** Why the body cannot be trusted to be complete, or `undefined` when it can. */
  incomplete: string | undefined
}

export interface CaptureHooks {
  /**
   * Once, just before the headers go out (an explicit `writeHead`, or the implicit one of the first
   * `write` or of `end`): headers may still be added. `body` is the whole body when the response is
   * being ended in one go, `undefined` when it is streamed. `given`: the headers passed to
   * `writeHead` itself, which `res.getHeaders()` does not hold yet (lower-case names).
   */
  beforeHeaders(res: ServerResponse, body: Buffer | undefined, given: OutgoingHttpHeaders): void
  /** The body passed the size limit: it will not be stored. */
  tooLarge(): void
  /** `writeHead` threw (headers Node refuses) before anything was sent. */
  headersRefused(): void
  /** Just after `end()` returned: everything the handler sent, and the final headers. */
  ended(captured: CapturedResponse): void
  /**
   * Once: `true` when the response finished (every byte handed to the OS on a live connection),
   * `false` when it, or its connection, was closed or destroyed first, before or after `end()`.
   * Runs after `ended` when both run.
   */
  settled(finished: boolean): void
}

/**
 * Records what passes through `res.writeHead`/`write`/`end` of one response.
 *
 * Two views of the headers are kept. What is *stored* is what this layer sends: a transform
 * installed before the cache (e.g. `compression` registered earlier) is not part of it and runs
 * again on replay, while one installed after it is captured in its output. What is *decided on*
 * is the response as it leaves for the client: read after the innermost `writeHead` ran, so it
 * includes headers that earlier middleware set, even from hooks that run as the headers go out.
 *
 * The connection is watched as well as the response: a response queued behind another one on a
 * pipelined connection has no socket of its own, and Node emits neither `finish` nor `close` on it
 * when that connection dies.
 */
export function captureResponse(res: ServerResponse, maxBodySize: number, hooks: CaptureHooks): void {
  const original = { writeHead: res.writeHead, write: res.write, end: res.end }
  const before = res.getHeaders()
  const connection = (res as { req?: IncomingMessage }).req?.socket ?? res.socket ?? undefined
  const chunks: Buffer[] = []
  let size = 0
  let tooLarge = false
  let status: number | undefined
  let headers: OutgoingHttpHeaders | undefined
  let final: CapturedResponse['final'] | undefined
  let endingBody: Buffer | undefined
  let ended = false
  let reported = false
  let finished = false
  let settled = false
  let connectionClosed = connection?.destroyed === true
  /** Streams piped into the response (`source.pipe(res)`, `pipeline`, `sendFile`). */
  const sources: Readable[] = []
  res.on('pipe', (source: Readable) => sources.push(source))

  const settle = (ok: boolean) => {
    if (settled) return
    settled = true
    stopWatching()
    hooks.settled(ok)
  }
  const stopWatching = connection
    ? onConnectionClose(connection, () => {
        connectionClosed = true
        if (!finished) settle(false)
      })
    : () => {}
  // A request whose connection died before its handler ran (queued behind another response).
  if (connectionClosed) queueMicrotask(() => settle(false))
  res.once('finish', () => {
    // Node emits 'finish' even when the connection was destroyed with bytes of the response still
    // queued (their write callbacks run on destroy): only a live connection proves the bytes left.
    if (connectionClosed || connection?.destroyed) return settle(false)
    finished = true
    if (reported) settle(true)
  })
  res.once('close', () => {
    if (!finished) settle(false)
  })

  const collect = (chunk: unknown, encoding: unknown) => {
    if (chunk === undefined || chunk === null || typeof chunk === 'function' || tooLarge) return
    // Always a copy: a handler may reuse or fill its buffer once it is written.
    const bytes =
      typeof chunk === 'string'
        ? Buffer.from(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8')
        : Buffer.from(chunk as Uint8Array)
    size += bytes.length
    if (size > maxBodySize) {
      tooLarge = true
      chunks.length = 0
      hooks.tooLarge()
    } else {
      chunks.push(bytes)
    }
  }

  res.writeHead = function (this: ServerResponse, code: number, ...rest: unknown[]) {
    const given = headerArgument(typeof rest[0] === 'string' ? rest[1] : rest[0])
    const first = headers === undefined
    if (first) {
      if (!res.headersSent && !res.destroyed) {
        if (typeof code === 'number') res.statusCode = code
        hooks.beforeHeaders(res, endingBody, given)
      }
      status = code
      headers = {}
      const current = res.getHeaders()
      for (const name of Object.keys(current)) {
        const value = current[name]
        if (value !== undefined && String(value) !== String(before[name])) headers[name] = value
      }
      Object.assign(headers, given)
    }
    let result: ServerResponse
    try {
      result = (original.writeHead as (...args: unknown[]) => ServerResponse).call(this, code, ...rest)
    } catch (error) {
      // Node refused the headers and sent nothing: the response that goes out instead (an error
      // handler's) is decided, and reported, anew.
      if (first && !res.headersSent) {
        status = undefined
        headers = undefined
        hooks.headersRefused()
      }
      throw error
    }
    if (final === undefined && res.headersSent) {
      // Every layer below this one has run its hooks: this is what the client gets.
      final = { status: res.statusCode, headers: { ...res.getHeaders(), ...given } }
    }
    return result
  } as ServerResponse['writeHead']

  res.write = function (this: ServerResponse, chunk: unknown, encoding?: unknown, cb?: unknown) {
    if (!ended) collect(chunk, encoding)
    return (original.write as (...args: unknown[]) => boolean).call(this, chunk, encoding, cb)
  } as ServerResponse['write']

  res.end = function (this: ServerResponse, chunk?: unknown, encoding?: unknown, cb?: unknown) {
    if (ended) return (original.end as (...args: unknown[]) => ServerResponse).call(this, chunk, encoding, cb)
    ended = true
    collect(chunk, encoding)
    const body = tooLarge ? undefined : chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size)
    endingBody = body
    let result: ServerResponse
    try {
      result = (original.end as (...args: unknown[]) => ServerResponse).call(this, chunk, encoding, cb)
    } finally {
      endingBody = undefined
    }
    if (!settled) {
      reported = true
      const last = final ?? { status: res.statusCode, headers: res.getHeaders() }
      hooks.ended({
        status: status ?? res.statusCode,
        headers: headers ?? {},
        final: last,
        body,
        incomplete: incompleteReason(
          res,
          connectionClosed,
          final !== undefined,
          headers,
          last.headers,
          size,
          sources,
        ),
      })
      if (finished) settle(true)
    }
    return result
  } as ServerResponse['end']
}

function incompleteReason(
  res: ServerResponse,
  connectionClosed: boolean,
  sawHeaders: boolean,
  headers: OutgoingHttpHeaders | undefined,
  finalHeaders: OutgoingHttpHeaders,
  size: number,
  sources: readonly Readable[],
): string | undefined {
  if (res.destroyed) return 'destroyed'
  if (connectionClosed) return 'closed'
  // A stream piped into the response ends it when the stream ends: a response ended while one
  // had not ended (it failed or was destroyed half-way, and the handler ended the response in
  // its place) holds part of a body. Streams of the older API (no `readableEnded`) cannot say.
  if (sources.some((source) => source.readableEnded === false)) return 'source-unfinished'
  // Headers that went out without passing this layer's writeHead: what was sent is unknown.
  if (!sawHeaders || headers === undefined) return 'headers-unseen'
  // The length this layer set, and the one the client was told (which middleware before the cache
  // may have set): both must be the bytes sent.
  for (const declared of [headers['content-length'], finalHeaders['content-length']]) {
    if (declared !== undefined && Number(declared) !== size) return 'content-length'
  }
  return undefined
}

/** One 'close' listener per connection, whatever the number of responses queued on it. */
const closeListeners = new WeakMap<Socket, Set<() => void>>()

function onConnectionClose(connection: Socket, listener: () => void): () => void {
  let listeners = closeListeners.get(connection)
  if (listeners === undefined) {
    const set = new Set<() => void>()
    listeners = set
    closeListeners.set(connection, set)
    connection.once('close', () => {
      closeListeners.delete(connection)
      for (const fn of [...set]) fn()
    })
  }
  listeners.add(listener)
  return () => listeners.delete(listener)
}
/** The headers given to `writeHead` itself, as an object with lower-case names. */
function headerArgument(value: unknown): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {}
  if (Array.isArray(value)) {
    if (Array.isArray(value[0])) {
      for (const [k, v] of value as [string, string][]) out[String(k).toLowerCase()] = v
    } else {
      for (let i = 0; i + 1 < value.length; i += 2) out[String(value[i]).toLowerCase()] = value[i + 1]
    }
  } else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) out[k.toLowerCase()] = v as string
  }
  return out
}
