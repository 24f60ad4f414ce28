import {
  type IncomingHttpHeaders,
  IncomingMessage,
  type OutgoingHttpHeaders,
  type ServerResponse,
} from 'node:http'
import type { Socket } from 'node:net'
import type { Readable } from 'node:stream'
import { arrivalOf } from './arrivals.js'
import { offerCacheControl } from './cache-control.js'
import type { HttpRequestView, LookupResult, MissResult, ResponseHead } from './view.js'

/**
 * Building blocks for adapters whose framework answers on Node's own `ServerResponse` (Express,
 * Nest on Express, a plain `node:http` server): a view of an `IncomingMessage`, the recording of
 * a `ServerResponse`, and the replay of a result onto one.
 */

/**
 * The view of a plain `node:http` request: the target as sent, `Host` as the host, `https` when
 * the connection is TLS. A framework that resolves these otherwise (a trusted proxy's
 * `X-Forwarded-*`, a rewritten URL) builds its own view instead.
 */
export function nodeRequestView<Raw extends IncomingMessage = IncomingMessage>(
  req: Raw,
  options: { site?: string } = {},
): HttpRequestView<Raw> {
  return {
    method: req.method ?? 'GET',
    url: req.url ?? '/',
    headers: req.headers,
    rawHeaders: req.rawHeaders,
    // Noted by the server as it emitted the request, when it notes arrivals (`noteArrivals`).
    arrivedLines: arrivalOf(req)?.lines,
    protocol: (req.socket as { encrypted?: boolean } | null)?.encrypted ? 'https' : 'http',
    host: req.headers.host,
    site: options.site ?? '',
    raw: req,
  }
}

/**
 * Sends a `hit` or `not-modified` result on `res` with one `writeHead` and one `end`, and returns
 * `true`; for a `miss` or `bypass`, sets its status header (unless the headers are sent) and
 * returns `false`: the handler answers.
 */
export function answerFromResult(res: ServerResponse, result: LookupResult): boolean {
  if (result.kind === 'hit' || result.kind === 'not-modified') {
    // Headers the layers before the cache set again that the handler had removed on the miss.
    if (result.remove !== undefined) for (const name of result.remove) res.removeHeader(name)
    if (result.cacheControl !== undefined) offerCacheControl(res, result.cacheControl)
    res.writeHead(result.status, result.headers as string[])
    res.end(result.kind === 'hit' && !result.headOnly ? result.body : undefined)
    return true
  }
  if (!res.headersSent) for (const [name, value] of result.set) res.setHeader(name, value)
  return false
}

/**
 * Feeds what passes through `res.writeHead`/`write`/`end` to a miss's recorder, and the fate of
 * the response (finished, or closed first) after it.
 *
 * Two views of the headers are given. What is *stored* is what this layer sends: a transform
 * installed before the cache (a compression middleware registered earlier) is not part of it and
 * runs again on replay, while one installed after it is recorded in its output; headers set before
 * the cache was reached are left out (that layer sets them again on every hit). What is *decided
 * on* is the response as it leaves for the client: read after the innermost `writeHead` ran, so it
 * includes headers that earlier layers set, even from hooks that run as the headers go out.
 *
 * The connection is watched as well as the response: a response queued behind another one on a
 * pipelined connection has no socket of its own, and Node emits neither `finish` nor `close` on it
 * when that connection dies.
 */
export function recordNodeResponse(
  res: ServerResponse,
  miss: MissResult,
  /**
   * The names of the headers set or removed after the cache, when the adapter notes them itself
   * (Fastify's reply headers, see `trackFastifyReplyHeaders`); by default, those set, appended or
   * removed on `res` from now on.
   */
  touched?: ReadonlySet<string>,
): void {
  const recorder = miss.recorder
  const original = { writeHead: res.writeHead, write: res.write, end: res.end }
  // Headers the layers before the cache set: not stored (they set them again on every hit), and
  // those the response goes out without are removed on replays.
  const before = res.getHeaders()
  // Names set, appended or removed from now on (by the handler, or a layer after the cache): its
  // own whatever their value. Compared by value with `before`, a header the handler set to what a
  // layer before it had set on the miss (`Content-Language: fr` for a French client) would be left
  // to that layer on hits; a removal that found nothing would not be replayed.
  const removeHeader = res.removeHeader
  const handlerNames = touched ?? trackHeaderNames(res)
  const connection = (res as { req?: IncomingMessage }).req?.socket ?? res.socket ?? undefined
  let status: number | undefined
  let own: OutgoingHttpHeaders | undefined
  let final: ResponseHead | undefined
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
    if (ok) recorder.finish()
    else recorder.abort('it did not finish')
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

  res.writeHead = function (this: ServerResponse, code: number, ...rest: unknown[]) {
    const at = typeof rest[0] === 'string' ? 1 : 0
    const first = own === undefined
    const argument = rest[at]
    // Headers given to `writeHead` go out as given when no header was set before it: a list
    // (`[name, value, …]` or `[[name, value], …]`) or an object naming a header twice in two cases
    // (`{'cache-control': 'private', 'Cache-Control': 'max-age=60'}`) sends every value. After
    // one, Node 20 refuses pairs and keeps only the last value of a name given twice. When the
    // only headers set are this cache's (its status header, set before the handler), the headers
    // are added as Node would have sent them, so that the response goes out as it would without
    // the cache; after a header of the app's own (`X-Powered-By`), Node reads them as it would
    // without the cache, and what is stored and decided on is that last value.
    let every = false
    if (first && !res.headersSent && onlyHeadersSet(res, miss.set)) {
      const pairs = Array.isArray(argument)
        ? headerPairs(argument)
        : namedTwice(argument)
          ? Object.entries(argument as object)
          : undefined
      if (pairs !== undefined) {
        addHeaderList(res, pairs)
        rest = rest.slice(0, at)
        every = true
      }
    }
    const given = headerArgument(argument, every ? 'every' : 'last')
    if (first) {
      if (!res.headersSent && !res.destroyed) {
        if (typeof code === 'number') res.statusCode = code
        const advice = recorder.head({
          status: res.statusCode,
          headers: { ...res.getHeaders(), ...given },
          body: endingBody,
        })
        for (const [name, value] of advice.set) res.setHeader(name, value)
        if (advice.cacheControl !== undefined) offerCacheControl(res, advice.cacheControl)
      }
      status = code
      own = {}
      const current = res.getHeaders()
      for (const name of Object.keys(current)) {
        const value = current[name]
        if (value !== undefined && (handlerNames.has(name) || String(value) !== String(before[name])))
          own[name] = value
      }
      Object.assign(own, given)
    }
    let result: ServerResponse
    try {
      result = (original.writeHead as (...args: unknown[]) => ServerResponse).call(this, code, ...rest)
    } catch (error) {
      // Node refused the headers and sent nothing: the response that goes out instead (an error
      // handler's) is decided, and reported, anew; nothing is claimed until then.
      if (first && !res.headersSent) {
        status = undefined
        own = undefined
        for (const [name] of miss.set) removeHeader.call(res, name)
      }
      throw error
    }
    // Every layer below this one has run its hooks: this is what the client gets.
    if (final === undefined && res.headersSent) final = headAsWritten(res, given)
    return result
  } as ServerResponse['writeHead']

  res.write = function (this: ServerResponse, chunk: unknown, encoding?: unknown, cb?: unknown) {
    if (!ended) collect(chunk, encoding)
    return (original.write as (...args: unknown[]) => boolean).call(this, chunk, encoding, cb)
  } as ServerResponse['write']

  const collect = (chunk: unknown, encoding: unknown) => {
    if (chunk === undefined || chunk === null || typeof chunk === 'function') return
    recorder.write(
      chunk as Uint8Array | string,
      typeof encoding === 'string' ? (encoding as BufferEncoding) : undefined,
    )
  }

  res.end = function (this: ServerResponse, chunk?: unknown, encoding?: unknown, cb?: unknown) {
    if (ended) return (original.end as (...args: unknown[]) => ServerResponse).call(this, chunk, encoding, cb)
    ended = true
    const last = chunk !== undefined && chunk !== null && typeof chunk !== 'function' ? chunk : undefined
    // Recorded before the headers leave, so that the cache knows the whole body (or that it is too large) then.
    if (last !== undefined) collect(last, encoding)
    // Sent in one piece when nothing was written before: the cache may tag it before the headers leave.
    if (own === undefined && !res.headersSent)
      endingBody =
        last === undefined
          ? Buffer.alloc(0)
          : typeof last === 'string'
            ? Buffer.from(last, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8')
            : Buffer.from(last as Uint8Array)
    // Read before ending: a response object that tears itself down once it ended (the injected
    // responses of light-my-request, which Fastify's `inject` uses) was not destroyed half-way.
    const destroyedBeforeEnd = res.destroyed
    let result: ServerResponse
    try {
      result = (original.end as (...args: unknown[]) => ServerResponse).call(this, chunk, encoding, cb)
    } finally {
      endingBody = undefined
    }
    if (!settled) {
      reported = true
      const head: ResponseHead = final ?? { status: res.statusCode, headers: res.getHeaders() }
      // The names the handler touched count with those set before: the ones the client got
      // without are removed on replays, where a layer before the cache may set them.
      const earlier = Object.keys(before)
      for (const name of handlerNames) if (before[name] === undefined) earlier.push(name)
      head.own = { status: status ?? res.statusCode, headers: own ?? {}, earlier }
      recorder.end(undefined, {
        head,
        incomplete: incompleteReason(destroyedBeforeEnd, connectionClosed, final !== undefined, own, sources),
      })
      if (finished) settle(true)
    }
    return result
  } as ServerResponse['end']
}

/**
 * Notes, in lower case, the name of every header set, appended or removed on `res` from now on
 * (Express's `res.set`, `res.append`, `res.removeHeader` and Fastify's `reply.removeHeader` all
 * end there).
 */
function trackHeaderNames(res: ServerResponse): Set<string> {
  const touched = new Set<string>()
  const { setHeader, appendHeader, removeHeader } = res
  res.setHeader = function (this: ServerResponse, name: string, value: unknown) {
    const result = setHeader.call(this, name, value as string)
    touched.add(String(name).toLowerCase())
    return result
  } as ServerResponse['setHeader']
  if (typeof appendHeader === 'function')
    res.appendHeader = function (this: ServerResponse, name: string, value: unknown) {
      const result = appendHeader.call(this, name, value as string)
      touched.add(String(name).toLowerCase())
      return result
    } as ServerResponse['appendHeader']
  res.removeHeader = function (this: ServerResponse, name: string) {
    removeHeader.call(this, name)
    touched.add(String(name).toLowerCase())
  }
  return touched
}

/**
 * The status and headers a `writeHead` sent, read once it returned: by then every hook that runs
 * inside it (`on-headers`, which express-session and cookie-session use; a `ServerResponse`
 * subclass) has added its headers. They are read from the header block Node generated and sends
 * (`_header`, the text whose presence is `headersSent` on Node 20 and 22): what the client gets,
 * whatever object the call chain finally handed to Node's own `writeHead` (a subclass that passes
 * `super.writeHead` a new object with `Set-Cookie`, which Node writes without keeping it among the
 * response's headers). The headers Node adds on its own (`Date`, `Connection`, `Keep-Alive`,
 * `Transfer-Encoding`, a `Content-Length` it counted) are left out unless the response set them:
 * they describe the bytes as Node frames them, which a layer before the cache may have
 * transformed. Without that block (HTTP/2's compatibility response), the response's headers with
 * `given` over them: the headers argument of the call, which Node does not copy into the
 * response's own headers when it had none. For an adapter that wraps `writeHead` itself: what it
 * reads before calling the `writeHead` it wrapped misses those hooks.
 */
export function headAsWritten(
  res: Pick<ServerResponse, 'statusCode' | 'getHeaders'>,
  given: unknown,
): { status: number; headers: OutgoingHttpHeaders } {
  const known = { ...res.getHeaders(), ...headerArgument(given) }
  const block = (res as { _header?: unknown })._header
  const written = typeof block === 'string' ? headerBlock(block) : undefined
  if (written === undefined) return { status: res.statusCode, headers: known }
  for (const name of NODE_FRAMING_HEADERS) if (known[name] === undefined) delete written[name]
  return { status: res.statusCode, headers: written }
}

/** Headers Node writes on its own to frame a response on the connection. */
const NODE_FRAMING_HEADERS = ['date', 'connection', 'keep-alive', 'transfer-encoding', 'content-length']

/**
 * The headers of a header block as Node writes it (`HTTP/1.1 200 OK\r\nName: value\r\n…\r\n\r\n`),
 * with lower-case names, a name written on several lines keeping every value in order.
 * `undefined` for text that is not such a block. Node refuses CR and LF in names and values, so
 * each line is one header.
 */
function headerBlock(block: string): OutgoingHttpHeaders | undefined {
  const lines = block.split('\r\n')
  if (!lines[0]?.startsWith('HTTP/')) return undefined
  const headers: OutgoingHttpHeaders = {}
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!
    if (line === '') break
    const colon = line.indexOf(':')
    if (colon <= 0) return undefined
    const name = line.slice(0, colon).trim().toLowerCase()
    const value = line.slice(colon + 1).trim()
    const before = headers[name]
    headers[name] = before === undefined ? value : [before, value].flat().map(String)
  }
  return headers
}

function incompleteReason(
  destroyed: boolean,
  connectionClosed: boolean,
  sawHeaders: boolean,
  own: OutgoingHttpHeaders | undefined,
  sources: readonly Readable[],
): string | undefined {
  if (destroyed) return 'destroyed'
  if (connectionClosed) return 'closed'
  // A stream piped into the response ends it when the stream ends: a response ended while one
  // had not ended (it failed or was destroyed half-way, and the handler ended the response in
  // its place) holds part of a body. Streams of the older API (no `readableEnded`) cannot say.
  if (sources.some((source) => source.readableEnded === false)) return 'source-unfinished'
  // Headers that went out without passing this layer's writeHead: what was sent is unknown.
  if (!sawHeaders || own === undefined) return 'headers-unseen'
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

/**
 * The headers given to `writeHead` itself, as an object with lower-case names. A name given more
 * than once (by a list, or by an object in two cases) keeps, with `'every'`, every value in order,
 * as Node sends them when no header was set before `writeHead`: `Cache-Control: private` followed
 * by `Cache-Control: max-age=60` is still private. With `'last'`, the last one, as Node sends
 * them after a header was set (it calls `setHeader` for each, skipping an empty name).
 */
function headerArgument(value: unknown, repeated: 'every' | 'last' = 'every'): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {}
  const add = (name: unknown, given: unknown) => {
    if (repeated === 'last' && !name) return
    const lower = String(name).toLowerCase()
    const values = out[lower]
    const more = Array.isArray(given) ? given.map(String) : [String(given)]
    out[lower] =
      values === undefined || repeated === 'last'
        ? more.length === 1
          ? more[0]
          : more
        : [values, more].flat().map(String)
  }
  if (Array.isArray(value)) {
    if (isPairList(value)) for (const pair of value) add(pair[0], pair[1])
    else for (let i = 0; i + 1 < value.length; i += 2) add(value[i], value[i + 1])
  } else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      const lower = k.toLowerCase()
      if (out[lower] === undefined || repeated === 'last') {
        if (k || repeated === 'every') out[lower] = v as string
      } else add(k, v)
    }
  }
  return out
}

/** Whether a `writeHead` headers object names a header twice, in two cases. */
function namedTwice(value: unknown): boolean {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return false
  const names = new Set<string>()
  for (const name of Object.keys(value)) {
    const lower = name.toLowerCase()
    if (names.has(lower)) return true
    names.add(lower)
  }
  return false
}

/** Headers given as `[[name, value], …]`, read by Node as pairs when its first item is an array. */
function isPairList(value: unknown): value is ArrayLike<unknown>[] {
  return Array.isArray(value) && Array.isArray(value[0])
}

/**
 * A header list's `[name, value]` pairs, as Node reads the list when no header was set before
 * `writeHead`: `[[name, value], …]` or `[name, value, …]`. `undefined` for a flat list of odd
 * length, which Node refuses either way.
 */
function headerPairs(list: unknown[]): [unknown, unknown][] | undefined {
  const pairs: [unknown, unknown][] = []
  if (isPairList(list)) for (const pair of list) pairs.push([pair[0], pair[1]])
  else if (list.length % 2 !== 0) return undefined
  else for (let i = 0; i < list.length; i += 2) pairs.push([list[i], list[i + 1]])
  return pairs
}

/**
 * Adds a `writeHead` list to the response's headers as Node sends such a list: each name it gives
 * replaces the header set before, and a name it repeats keeps every value. All or nothing: a name
 * or value Node refuses throws with the response's headers as they were.
 */
function addHeaderList(res: ServerResponse, pairs: [unknown, unknown][]): void {
  const before = res.getHeaders()
  try {
    for (const [name] of pairs) res.removeHeader(String(name))
    for (const [name, value] of pairs) res.appendHeader(name as string, value as string)
  } catch (error) {
    for (const name of res.getHeaderNames()) res.removeHeader(name)
    for (const [name, value] of Object.entries(before)) if (value !== undefined) res.setHeader(name, value)
    throw error
  }
}

/** Whether the response holds no header but `set` (with the values it gives them). */
function onlyHeadersSet(res: ServerResponse, set: readonly [name: string, value: string][]): boolean {
  for (const name of res.getHeaderNames()) {
    const value = res.getHeader(name)
    if (!set.some(([n, v]) => n.toLowerCase() === name && v === value)) return false
  }
  return true
}

/**
 * The address each server listens at, as it said once listening, with what it was asked for: the
 * server's listening handle (Node makes a new one on every `listen`) and the local port of the
 * socket. A server that closes and listens again elsewhere is asked again.
 */
const listenAddresses = new WeakMap<object, { handle: unknown; port: unknown; text: string }>()

/**
 * Where the server that accepted `socket` listens now, as it was told to: the bound address and
 * port (`0.0.0.0:3000` for every replica of a service, `127.0.0.1:3000` and `10.0.0.5:3000` for
 * two interfaces of one), or the path of a Unix socket; the socket's local port when its server is
 * unknown or not listening; `''` without a socket. What replicas share, and two servers of one
 * process never do: adapters put it in their sites.
 */
export function listeningAt(socket: { server?: unknown; localPort?: unknown } | null | undefined): string {
  const server = socket?.server as { address?: () => unknown; _handle?: unknown } | null | undefined
  if (server === undefined || server === null || typeof server.address !== 'function')
    return String(socket?.localPort ?? '')
  const handle = server._handle
  const port = socket?.localPort
  const known = listenAddresses.get(server)
  if (known !== undefined && known.handle === handle && known.port === port) return known.text
  const address = server.address() as { address?: string; port?: number } | string | null
  if (address === null) return String(port ?? '')
  const text = typeof address === 'string' ? address : `${address.address}:${address.port}`
  listenAddresses.set(server, { handle, port, text })
  return text
}

/** Request headers a stale-while-revalidate refresh drops: it asks for the whole, current response. */
export const CONDITIONAL_REQUEST_HEADERS: readonly string[] = [
  'if-none-match',
  'if-modified-since',
  'if-match',
  'if-unmodified-since',
  'if-range',
  'range',
]

/**
 * Gives a refresh's copy of `req` the headers the client sent (the middleware before the cache
 * runs again on them, and credentials are keyed as sent), without the conditional ones, parsed as
 * Node parses a request's (a header sent on several lines joined, or its later lines dropped, as
 * for the request itself). Where the server noted the request's arrival, the host and credential
 * lines are the noted ones (a layer may have rewritten or removed them, and rewrites them again
 * on the copy), and the others come from `rawHeaders`, or from `headers` when a layer emptied or
 * deleted `rawHeaders`. A request neither noted nor with header lines (made in code) lends its headers.
 */
export function setRefreshHeaders(copy: IncomingMessage, req: IncomingMessage): void {
  const raw = req.rawHeaders
  const parse = (copy as unknown as { _addHeaderLines?: (lines: string[], n: number) => void })
    ._addHeaderLines
  const arrival = arrivalOf(req)
  const hasLines = Array.isArray(raw) && raw.length > 0
  if (typeof parse !== 'function' || (!hasLines && arrival === undefined)) {
    copy.headers = { ...req.headers }
    copy.rawHeaders = raw
    for (const name of CONDITIONAL_REQUEST_HEADERS) delete copy.headers[name]
    return
  }
  const lines: string[] = []
  const keep = (name: string, value: string) => {
    const lower = name.toLowerCase()
    if (CONDITIONAL_REQUEST_HEADERS.includes(lower)) return
    if (arrival !== undefined && AS_ARRIVED_LINES.includes(lower)) return
    lines.push(name, value)
  }
  if (hasLines) for (let i = 0; i + 1 < raw.length; i += 2) keep(raw[i]!, raw[i + 1]!)
  else
    for (const [name, value] of Object.entries(req.headers ?? {}))
      if (Array.isArray(value)) for (const one of value) keep(name, one)
      else if (value !== undefined) keep(name, String(value))
  const arrived = arrival?.lines
  if (arrived !== undefined)
    for (let i = 0; i + 1 < arrived.length; i += 2)
      if (AS_ARRIVED_LINES.includes(arrived[i]!.toLowerCase())) lines.push(arrived[i]!, arrived[i + 1]!)
  parse.call(copy, lines, lines.length)
}

/**
 * The request lines a noted copy takes as they arrived, lower case: the host and protocol the
 * entry is keyed on (the layer that maps an alias runs again on what the client sent) and the
 * credentials the credential rules read.
 */
const AS_ARRIVED_LINES: readonly string[] = [
  'host',
  'x-forwarded-host',
  'x-forwarded-proto',
  'authorization',
  'cookie',
]

/** The headers {@link setRefreshHeaders} gives a copy, for a refresh that is not an `IncomingMessage`. */
export function refreshRequestHeaders(req: IncomingMessage): IncomingHttpHeaders {
  const copy = new IncomingMessage(null as never)
  setRefreshHeaders(copy, req)
  return copy.headers
}
