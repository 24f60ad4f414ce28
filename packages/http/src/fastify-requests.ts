import { randomUUID } from 'node:crypto'
import { IncomingMessage } from 'node:http'
import { types } from 'node:util'
import { fastifyInstanceOptions } from './adapter-kit.js'
import { type Arrival, arrivalOf, notedLines, noteArrivals } from './arrivals.js'
import { refreshRefusal } from './express-routing.js'
import { noteFastifyApp } from './fastify-servers.js'
import type { Refresh } from './view.js'
import { refreshRequestHeaders } from './node.js'
import { hostKeyPart } from './request-key.js'

/*
 * What the Fastify adapters (`@cache/fastify`, `@cache/nestjs` on platform-fastify) need to know
 * of a request that Fastify does not keep: the target the client sent and the one Fastify routed,
 * as they were before any hook ran, and the connection a background refresh stands for.
 */

/** A request's target as noted before its first `onRequest` hook. */
export interface FastifyTargetNote {
  /**
   * The target as the client sent it: as it arrived at the server's `request` event, before any
   * listener (a `serverFactory` wrapper) or `rewriteUrl` could change it. For a request that did
   * not pass the server (`inject()`), `raw.originalUrl` when `rewriteUrl` set it.
   */
  sent: string
  /** The target Fastify routed the request by (after `rewriteUrl`). */
  routed: string
  /**
   * The request came over a connection that no server of the app accepted as it arrived (a server
   * of the app's own handed it to `fastify.routing` or emitted it on `fastify.server`): what it
   * was sent as cannot be told, `sent` is the target as routed.
   */
  unseen?: true
  /** `request.query` as Fastify's parser made it, before any hook ran. */
  query?: unknown
  /** The prototype of {@link query} then. */
  queryPrototype?: unknown
  /**
   * The values of {@link query} as the parser made them (arrays copied), when it had any: a hook
   * may change the object in place.
   */
  parsed?: Record<string, unknown>
  /**
   * Whether `request.query` differed from what the parser made once every `preValidation` hook
   * ran (noted where the cache adds a hook, before the route's schema coerces it).
   */
  queryChangedBeforeValidation?: boolean
  /**
   * Of a request no server emitted (`inject()`; not a refresh's copy, which is keyed on the lines
   * of the request it refreshes): the lines {@link Arrival.lines} keeps (credentials, body, host),
   * as `rawHeaders` held them before the first hook ran. `undefined` when it had none.
   */
  lines?: readonly string[]
}

const NOTE = Symbol('@cache/http.fastify-target')

/** The header that carries, on a refresh's `inject()` copy, the connection it stands for. */
const CONNECTION_HEADER = `x-cache-connection-${randomUUID()}`
/** What a refresh's copy takes of the connection it stands for. */
interface Connection {
  encrypted?: boolean
  server?: unknown
  localAddress?: string
  localPort?: number
}
/** A refresh's copy as its `inject()` runs: the connection it stands for, its response once seen. */
interface Copy {
  connection: Connection
  /** The header naming the refresh (the cache's), taken off the copy's header lines by the noting hook. */
  refreshHeader?: string
  /** light-my-request's request and response, closed when the refresh is over. */
  request?: { aborted?: boolean; emit(event: 'close'): unknown; [ABANDONED]?: true }
  response?: CopyResponse
  /** `close` was emitted on the request. */
  closed?: boolean
  /** The refresh was over before the copy reached the noting hook: the copy is marked abandoned there. */
  over?: true
}
/** light-my-request's response, as a refresh's copy closes it. */
interface CopyResponse {
  destroyed?: boolean
  finished?: boolean
  destroy(): void
  write(...args: unknown[]): boolean
  end(...args: unknown[]): unknown
}
const copies = new Map<string, Copy>()

/** The refresh id of a copy whose refresh header the noting hook took off (see {@link fastifyRefreshId}). */
const REFRESH_ID = Symbol('@cache/http.fastify-refresh-id')
/** On a copy whose refresh was over (abandoned after `revalidateTimeout`) before its response ended. */
const ABANDONED = Symbol('@cache/http.fastify-refresh-abandoned')

type RawRequest = {
  url?: string
  originalUrl?: unknown
  headers: Record<string, unknown>
  socket?: Connection | null
  rawHeaders?: string[]
  [NOTE]?: FastifyTargetNote
  [REFRESH_ID]?: string
  [ABANDONED]?: true
}

type NotingRequest = { raw: RawRequest; query?: unknown }
type NotingReply = { raw?: { destroyed?: boolean; destroy(): void } }

/**
 * The first `onRequest` hook of every route of an instance that {@link noteFastifyTargets} was
 * given: notes the target as sent and as routed, before any hook of the app can rewrite
 * `request.raw.url`, and the header lines of a request no server emitted (`inject()`), before any
 * hook or middleware can strip a credential from them; and gives a refresh's copy the connection
 * of the request it refreshes.
 */
function noteTarget(request: NotingRequest, reply: NotingReply, done: () => void): void {
  note(request, reply, true)
  done()
}

/**
 * The noting hook where it could not be made the first (see {@link noteFastifyTargets}): hooks of
 * the app ran before it. A request no server emitted is left unnoted, and so bypasses: what its
 * header lines were before those hooks cannot be told.
 */
function noteTargetAfterHooks(request: NotingRequest, reply: NotingReply, done: () => void): void {
  note(request, reply, false)
  done()
}

function note(request: NotingRequest, reply: NotingReply, first: boolean): void {
  const raw = request.raw
  const id = raw.headers[CONNECTION_HEADER]
  if (raw[NOTE] === undefined) {
    const routed = raw.url ?? '/'
    const arrived = arrival(raw)
    // `inject()`: no server noted its lines as it arrived.
    const injected = arrived === undefined && id === undefined
    if (injected && !first) return
    const lines = injected ? notedLines(raw.rawHeaders) : undefined
    const query = request.query
    const parsed = queryValues(query)
    const sent =
      arrived === UNSEEN
        ? routed
        : (arrived ?? (typeof raw.originalUrl === 'string' ? raw.originalUrl : routed))
    raw[NOTE] = {
      sent,
      routed,
      ...(arrived === UNSEEN ? { unseen: true as const } : {}),
      query,
      queryPrototype: query !== null && typeof query === 'object' ? Object.getPrototypeOf(query) : undefined,
      ...(parsed === undefined ? {} : { parsed }),
      ...(lines === undefined ? {} : { lines }),
    }
  }
  if (id !== undefined) {
    delete raw.headers[CONNECTION_HEADER]
    const copy = copies.get(String(id))
    if (copy !== undefined) {
      copy.request = raw as unknown as Copy['request']
      copy.response = reply.raw as CopyResponse | undefined
      // Over before it got here (an event loop stalled past `revalidateTimeout`): it runs on as
      // a bypass, answered to nobody.
      if (copy.over === true) raw[ABANDONED] = true
      // The internal lines reach no hook nor handler (one echoing `rawHeaders` would store them
      // in the entry): the refresh id is kept on the request for the cache.
      dropLine(raw.rawHeaders, CONNECTION_HEADER)
      const header = copy.refreshHeader
      if (header !== undefined && raw.headers[header] !== undefined) {
        raw[REFRESH_ID] = String(raw.headers[header])
        delete raw.headers[header]
        dropLine(raw.rawHeaders, header)
      }
      // light-my-request sends `user-agent: lightMyRequest` unless told `undefined`, which it
      // keeps as a header: the copy of a request without one has none either.
      if ('user-agent' in raw.headers && raw.headers['user-agent'] === undefined) {
        delete raw.headers['user-agent']
        dropLine(raw.rawHeaders, 'user-agent')
      }
      // light-my-request's socket says nothing of TLS (Fastify reads `request.protocol` from it)
      // nor of the server and port the request came through (where a Nest handler's entries are made).
      if (raw.socket != null) Object.assign(raw.socket, copy.connection)
    }
  }
}

/**
 * The header lines the cache decides with ({@link Arrival.lines}) as the request arrived: as the
 * server emitted it, or for `inject()`, as the noting hook found them before any hook ran.
 * `undefined` when neither noted any.
 */
export function fastifyArrivedLines(raw: unknown): readonly string[] | undefined {
  return arrivalOf(raw)?.lines ?? (raw as RawRequest | null)?.[NOTE]?.lines
}

/** Takes the line of header `name` (as light-my-request writes it: lower case) off `lines`. */
function dropLine(lines: string[] | undefined, name: string): void {
  const at = lines?.indexOf(name) ?? -1
  if (at !== -1) lines?.splice(at, 2)
}

/**
 * The refresh a request is the `inject()` copy of, taken out of `refreshes` (with the refresh
 * header, off `headers` and `request.raw.headers`): `undefined` for a client's request (or an id
 * that names no refresh). `false` for a copy the noting hook saw whose refresh is over (abandoned after `revalidateTimeout` while a slow hook or guard
 * before the cache ran, or failed): it must bypass the cache, for as a client's request it would
 * find the stale entry and start another refresh, and another, for as long as the hook is slow.
 */
export function takeFastifyRefresh(
  raw: unknown,
  headers: Record<string, unknown>,
  header: string,
  refreshes: Map<string, Refresh>,
): Refresh | false | undefined {
  const id = fastifyRefreshId(raw, headers, header)
  if (id === undefined) return undefined
  const refresh = refreshes.get(id)
  refreshes.delete(id)
  delete headers[header]
  const request = raw as RawRequest | null
  if (request?.headers !== undefined) delete request.headers[header]
  if (request?.[ABANDONED] === true) return false
  // Only a copy the noting hook saw as one: a header a client sends (Nest's name is no secret)
  // names no refresh, and leaves the request a client's.
  if ((refresh === undefined || refresh.done) && request?.[REFRESH_ID] !== undefined) return false
  return refresh
}

/**
 * The id a refresh's copy carried in `header`: as the noting hook took it off the request, or
 * still in `headers` when that hook did not see the copy.
 */
export function fastifyRefreshId(
  raw: unknown,
  headers: Record<string, unknown>,
  header: string,
): string | undefined {
  const taken = (raw as RawRequest | null)?.[REFRESH_ID]
  if (taken !== undefined) return taken
  const id = headers[header]
  return id === undefined ? undefined : String(id)
}

/**
 * Makes the noting hook the first `onRequest` hook of `instance` (and of the instances it
 * encapsulates from now on), before hooks the app added earlier: Fastify composes each route's
 * hooks from its instance's list when the app becomes ready. Returns `false` when Fastify's list
 * cannot be found; the hook is then added last, with `addHook`, and sees what earlier hooks left.
 */
export function noteFastifyTargets(instance: unknown): boolean {
  noteFastifyArrivals((instance as { server?: unknown } | null)?.server)
  // The app is noted on its server as its cache is installed, not as its requests come.
  noteFastifyApp(instance)
  const hooks = internal(instance, 'fastify.hooks') as { onRequest?: unknown[] } | undefined
  const list = hooks?.onRequest
  if (Array.isArray(list)) {
    if (list[0] !== noteTarget) {
      const at = list.indexOf(noteTarget)
      if (at !== -1) list.splice(at, 1)
      list.unshift(noteTarget)
    }
    return true
  }
  const fastify = instance as { addHook?(name: string, fn: Function): unknown } | null
  fastify?.addHook?.('onRequest', noteTargetAfterHooks)
  return false
}

/**
 * Notes the target each request arrives with at `server` as it emits the request, before every
 * listener (see `noteArrivals`): a `serverFactory` whose listener rewrites `req.url` before calling
 * Fastify's handler runs after it. Once per server.
 */
export function noteFastifyArrivals(server: unknown): void {
  noteArrivals(server)
}

/** A request that came over a real connection which the server noting arrivals did not accept. */
const UNSEEN = Symbol('unseen')

/**
 * The target `raw` arrived with, as the server that accepted its connection noted it. `UNSEEN`
 * for a request of a real connection (an `http.IncomingMessage`) that server did not note: a
 * server of the app's own handed it to `fastify.routing`, or emitted it on `fastify.server` (which
 * noted it as it was handed over, maybe rewritten). `undefined` for a request without a
 * connection of its own (`inject()`).
 */
function arrival(raw: RawRequest): string | typeof UNSEEN | undefined {
  const arrived: Arrival | undefined = arrivalOf(raw)
  const socket = raw.socket
  if (!(raw instanceof IncomingMessage)) return arrived?.url
  if (arrived === undefined || arrived.server !== socket?.server) return UNSEEN
  return arrived.url
}

/**
 * What {@link noteFastifyTargets}'s hook noted of a request; for a request only the server noted
 * (its hook was installed after the routes were made), the target it arrived with, as sent and
 * routed. `undefined`: neither ran.
 */
export function fastifyTarget(raw: unknown): FastifyTargetNote | undefined {
  const request = raw as RawRequest | null
  const note = request?.[NOTE]
  if (note !== undefined) return note
  if (request === null || request === undefined || arrivalOf(request) === undefined) return undefined
  const arrived = arrival(request)
  if (arrived === UNSEEN) {
    const routed = request.url ?? '/'
    return { sent: routed, routed, unseen: true }
  }
  return arrived === undefined ? undefined : { sent: arrived, routed: arrived }
}

/**
 * Whether {@link noteFastifyTargets}'s hook ran for this request: on a route made before it was
 * installed, no request is noted there, a refresh's `inject()` copy included.
 */
export function fastifyHookNoted(raw: unknown): boolean {
  return (raw as RawRequest | null)?.[NOTE] !== undefined
}

/**
 * A `preValidation` hook, to be the last of a route's: notes whether the hooks replaced
 * `request.query` or changed it in place, before the route's schema validates it (a validator may
 * coerce its values, or hand Fastify a new object).
 */
export function noteFastifyQueryBeforeValidation(
  request: { raw: unknown; query?: unknown },
  _reply: unknown,
  done: () => void,
): void {
  const note = (request.raw as RawRequest | null)?.[NOTE]
  if (note !== undefined) note.queryChangedBeforeValidation = queryChanged(note, request.query)
  done()
}

/**
 * Whether a layer of the app replaced `request.query` (fastify-qs parses the query with qs in an
 * `onRequest` hook) or changed it in place (comma lists split into the object, a default filled
 * in from a header): which query strings it reads as the same query cannot be told, as with a
 * `querystringParser` of the app's own, and a value it added is in no key. Compared, by value,
 * with the query Fastify's parser made, as the last `preValidation` hook saw it
 * ({@link noteFastifyQueryBeforeValidation}) or else as it is now. Asked of every request, with a
 * query string or without one. When the first `onRequest` hook did not note the request, what
 * the parser made of a query string cannot be told (`true`); of a target without one, it made no
 * values: the query changed when it holds any.
 */
export function fastifyQueryReplaced(request: { raw: unknown; query?: unknown }): boolean {
  const raw = request.raw as RawRequest | null
  const note = raw?.[NOTE]
  if (note === undefined || !('query' in note)) {
    const url = raw?.url
    return url === undefined || /[?;]/.test(url) || holdsValues(request.query)
  }
  return note.queryChangedBeforeValidation ?? queryChanged(note, request.query)
}

/** A query's values (arrays copied), or `undefined` for an object without any (or no object). */
function queryValues(query: unknown): Record<string, unknown> | undefined {
  if (query === null || typeof query !== 'object') return undefined
  let values: Record<string, unknown> | undefined
  for (const name of Object.keys(query)) {
    const value = (query as Record<string, unknown>)[name]
    values ??= Object.create(null) as Record<string, unknown>
    values[name] = Array.isArray(value) ? [...value] : value
  }
  return values
}

/** Whether `query` is another object than the parser made, or holds other values now. */
function queryChanged(note: FastifyTargetNote, query: unknown): boolean {
  const parsed = note.parsed
  // The parser made no values (no query string): changed when the query holds any now, in
  // whichever object (fastify-qs makes a new, empty one for every request without a query).
  if (parsed === undefined) return holdsValues(query)
  if (query !== note.query) return true
  if (query === null || typeof query !== 'object') return false
  // The parser's object given another prototype (`Object.setPrototypeOf(query, { lang })`).
  if (Object.getPrototypeOf(query) !== note.queryPrototype) return true
  // Names `Object.keys` does not list too (`Object.defineProperty(query, 'lang', { value })`,
  // a Symbol key).
  const names = Reflect.ownKeys(query)
  let count = 0
  for (const name in parsed) {
    count++
    const was = parsed[name]
    const now = (query as Record<string, unknown>)[name]
    if (was === now) continue
    if (!Array.isArray(was) || !Array.isArray(now) || was.length !== now.length) return true
    for (let i = 0; i < was.length; i++) if (was[i] !== now[i]) return true
  }
  return count !== names.length
}

/**
 * Whether a query holds a value a handler can read: a property of its own (listed by
 * `Object.keys` or not, Symbol keys too), an enumerable one it inherits, or maybe one a Proxy or
 * a prototype other than a plain object's answers. Anything but an object (or `null`,
 * `undefined`) counts as one.
 */
function holdsValues(query: unknown): boolean {
  if (query === null || query === undefined) return false
  if (typeof query !== 'object') return true
  // A Proxy, or an object of a class or other prototype, may answer a name it does not hold.
  if (types.isProxy(query)) return true
  const prototype = Object.getPrototypeOf(query)
  if (prototype !== Object.prototype && prototype !== null) return true
  if (Reflect.ownKeys(query).length > 0) return true
  for (const _ in query) return true
  return false
}

/**
 * The part of a Fastify request's key that names its host beyond the one Fastify resolved: see
 * {@link hostKeyPart}, the rule every adapter shares, with the lines as the request arrived
 * ({@link fastifyArrivedLines}: under `inject()` too).
 */
export function fastifyHostKeyPart(
  resolved: string | undefined,
  raw: Parameters<typeof hostKeyPart>[1],
  read?: Record<string, unknown>,
): string | undefined {
  return hostKeyPart(resolved, raw, read, fastifyArrivedLines(raw))
}

/**
 * Why a request must bypass the cache because its target was rewritten before the cache
 * (`rewritten-url`): by the server's listener before Fastify (`serverFactory`), by `rewriteUrl`
 * before routing, or by a hook (`request.raw.url = …`) after. A request whose target was not
 * noted bypasses too: what it was sent as cannot be told; so does one that a server of the app's
 * own handed to Fastify (`fastify.routing(req, res)`, `fastify.server.emit('request', req, res)`),
 * which may have rewritten it first.
 * The key names the target as sent: a request routed or handled as another one must not be
 * stored under it. `undefined` when the request is handled as it was sent.
 */
export function fastifyRewrite(raw: unknown): string | undefined {
  const note = fastifyTarget(raw)
  if (note === undefined || note.unseen === true) return 'rewritten-url'
  return note.sent === note.routed && (raw as RawRequest).url === note.routed ? undefined : 'rewritten-url'
}

/**
 * Marks the headers of a refresh's `inject()` copy with the connection of `socket` (TLS, the
 * server and local address it came through), which the noting hook gives the copy before any hook
 * runs. Returns what forgets the mark, and what closes the copy's response (see
 * {@link injectRefresh}).
 */
export function lendFastifyConnection(
  headers: Record<string, unknown>,
  socket: Connection | null | undefined,
  refreshHeader?: string,
): { forget(): void; close(): void; finished(): void } {
  const id = randomUUID()
  const connection: Connection = {}
  if (socket?.encrypted === true) connection.encrypted = true
  if (socket?.server !== undefined) connection.server = socket.server
  if (socket?.localAddress !== undefined) connection.localAddress = socket.localAddress
  if (socket?.localPort !== undefined) connection.localPort = socket.localPort
  const copy: Copy = refreshHeader === undefined ? { connection } : { connection, refreshHeader }
  copies.set(id, copy)
  headers[CONNECTION_HEADER] = id
  return {
    forget: () => copies.delete(id),
    close: () => closeCopy(copy),
    finished: () => closeRequest(copy),
  }
}

/**
 * Ends a copy's response that has not ended, as a connection closing under it would: `close` on
 * the response and on the request (light-my-request's request ignores `destroy()` once its body
 * was read, so its `close` is emitted here).
 */
function closeCopy(copy: Copy): void {
  const response = copy.response
  if (response === undefined) {
    copy.over = true
    return
  }
  if (response.destroyed === true) return
  hangUp(response)
  response.destroy()
  if (copy.request !== undefined) copy.request[ABANDONED] = true
  // As Node marks the request of a client that hangs up: Fastify runs `onRequestAbort` on it.
  if (copy.request !== undefined && copy.closed !== true) copy.request.aborted = true
  closeRequest(copy)
}

/**
 * Makes a copy's response take what the handler writes late as a response whose connection
 * closed does: nothing is sent, `end()` marks it ended (Fastify sends no second reply) and
 * `finish` never fires. light-my-request's `end()` would emit `finish` on a destroyed response:
 * Fastify would run `onResponse` after `onRequestAbort`, and a gauge of requests in flight would
 * end at -1.
 */
function hangUp(response: CopyResponse): void {
  response.write = (...args: unknown[]) => {
    const callback = args.find((arg) => typeof arg === 'function') as ((error: Error) => void) | undefined
    if (callback !== undefined) process.nextTick(callback, closedError())
    return false
  }
  response.end = function (this: CopyResponse) {
    this.finished = true
    return this
  }
}

function closedError(): Error {
  return Object.assign(new Error('Cannot call write after a stream was destroyed'), {
    code: 'ERR_STREAM_DESTROYED',
  })
}

/** Emits `close` on a copy's request, once: as Node does on a request once its response ended. */
function closeRequest(copy: Copy): void {
  if (copy.request === undefined || copy.closed === true) return
  copy.closed = true
  copy.request.emit('close')
}

/**
 * Refreshes a stale entry with Fastify's `inject()`: a copy of `req` (the headers as sent, no
 * conditional ones) from the client's address over the client's protocol (TLS too, see
 * {@link lendFastifyConnection}), so that Fastify resolves it as the request it refreshes
 * (`trustProxy` by address, a hook admitting a proxy). The copy carries `header` naming its entry
 * in `refreshes`, which the cache takes out when it sees the copy; one still there when `inject()`
 * ends was answered by a hook before the cache ran: a failed refresh, counted and emitted. Only
 * when nothing but Fastify's routing can have touched the request at its server (see
 * `refreshRefusal`: a `serverFactory` listener or one added to `app.server` may set what the app
 * reads): otherwise the refresh is not run, and fails at once.
 */
export function injectRefresh(
  instance: { inject(options: object): Promise<{ statusCode: number }> },
  req: IncomingMessage,
  url: string,
  refresh: Refresh,
  refreshes: Map<string, Refresh>,
  header: string,
): (() => void) | undefined {
  const refused = refreshRefusal(
    (req.socket as { server?: unknown } | null)?.server,
    (instance as { routing?: unknown }).routing,
  )
  if (refused !== undefined) {
    refresh.fail(new Error(`the refresh of ${url} was not run: ${refused}`))
    return undefined
  }
  const id = randomUUID()
  refreshes.set(id, refresh)
  const lines = arrivalOf(req)?.lines
  if (lines !== undefined) refreshedLines.set(refresh, lines)
  const headers: Record<string, string | string[] | undefined> = refreshRequestHeaders(req)
  headers[header] = id
  // Told `undefined`, light-my-request adds no `user-agent: lightMyRequest` of its own.
  if (headers['user-agent'] === undefined) headers['user-agent'] = undefined
  const socket = req.socket as (typeof req.socket & { encrypted?: boolean }) | null
  const copy = lendFastifyConnection(headers, socket, header)
  instance
    .inject({
      method: 'GET',
      url,
      headers,
      ...(socket?.remoteAddress === undefined ? {} : { remoteAddress: socket.remoteAddress }),
    })
    .then(
      (response) => {
        if (refreshes.has(id))
          refresh.fail(
            new Error(`the refresh of ${url} was answered ${response.statusCode} before the cache ran`),
          )
      },
      (error: unknown) => refresh.fail(error),
    )
    .finally(() => {
      refreshes.delete(id)
      copy.forget()
      // `inject()` settles once the copy's response finished (or was destroyed).
      copy.finished()
    })
  // A refresh over (abandoned after `revalidateTimeout` too) ends its copy's response, as a
  // closed connection would: `close` fires on `reply.raw`, what a layer counting requests in
  // flight waits for. One already ended is left as it is.
  return copy.close
}

/**
 * The lines the server noted as the request a refresh copies arrived ({@link Arrival.lines}):
 * `inject()` makes a request no server emitted, and the copy is keyed on the credentials the
 * client sent as the request it refreshes was (a hook may strip them from `rawHeaders` again).
 */
const refreshedLines = new WeakMap<Refresh, readonly string[]>()

/** The lines noted as the request `refresh` copies arrived, for its copy's `arrivedLines`. */
export function refreshArrivedLines(refresh: Refresh): readonly string[] | undefined {
  return refreshedLines.get(refresh)
}

/**
 * Whether the app parses query strings with a parser of its own (`routerOptions.querystringParser`,
 * or the older top-level option), read from the options Fastify 5 keeps on the instance. Options
 * that cannot be found count as a parser of its own.
 */
export function fastifyParsesQueriesItself(instance: unknown): boolean {
  const options = fastifyInstanceOptions(instance) as
    | { querystringParser?: unknown; routerOptions?: { querystringParser?: unknown } }
    | undefined
  if (options === undefined) return true
  const parser = options.routerOptions?.querystringParser ?? options.querystringParser
  return typeof parser === 'function'
}

/** A property Fastify keeps under a symbol of this description, on the instance or its prototypes. */
function internal(instance: unknown, description: string): unknown {
  if (instance === null || typeof instance !== 'object') return undefined
  for (let at: object | null = instance; at !== null; at = Object.getPrototypeOf(at)) {
    const symbol = Object.getOwnPropertySymbols(at).find((s) => s.description === description)
    if (symbol !== undefined) return (instance as Record<symbol, unknown>)[symbol]
  }
  return undefined
}

/** Fastify's symbol for the headers a reply holds until it writes the head (`kReplyHeaders`). */
let replyHeadersSymbol: symbol | undefined

/**
 * From now on, notes (lower case) the name of every header set on or deleted from a Fastify
 * reply's headers (`reply.header`, `reply.headers`, `reply.type`, `reply.removeHeader`, the
 * `Content-Type` that `send` adds): the headers the handler and the hooks after the cache set,
 * whatever their value. For {@link recordNodeResponse}'s `touched`: Fastify copies every header of
 * its reply to the raw response with `setHeader` when it sends a stream, so the raw response's
 * calls do not tell whose a header is. Costs one `Proxy` per recorded miss. Empty, and never
 * filled, on a reply whose headers cannot be found (the headers are then told by their value).
 */
export function trackFastifyReplyHeaders(reply: object): Set<string> {
  const names = new Set<string>()
  const target = reply as Record<symbol, unknown>
  if (replyHeadersSymbol === undefined)
    replyHeadersSymbol = Object.getOwnPropertySymbols(reply).find(
      (s) => s.description === 'fastify.reply.headers',
    )
  const symbol = replyHeadersSymbol
  const headers = symbol === undefined ? undefined : target[symbol]
  if (symbol === undefined || headers === null || typeof headers !== 'object') return names
  target[symbol] = new Proxy(headers as Record<string, unknown>, {
    set(object, name, value) {
      if (typeof name === 'string') names.add(name.toLowerCase())
      return Reflect.set(object, name, value)
    },
    deleteProperty(object, name) {
      if (typeof name === 'string') names.add(name.toLowerCase())
      return Reflect.deleteProperty(object, name)
    },
  })
  return names
}
