/*
 * The target each request arrives with at a Node server (HTTP/1 or HTTP/2 compatibility API), noted
 * as the server emits it, before any listener can rewrite `req.url`: a server of the app's own,
 * Express in front, a listener prepended (or prepended once) later, an HTTP/2 `stream` listener
 * editing `:path`. The adapters whose framework is handed Node's request by whatever ran first
 * (Fastify's `serverFactory`, Hono's node listener) compare it with the target the framework
 * routed: a request whose target was changed before the cache bypasses.
 */

import { EventEmitter } from 'node:events'
import { IncomingMessage, Server } from 'node:http'
import { Http2ServerRequest } from 'node:http2'

/** What was noted of a request (or of an HTTP/2 stream) as it arrived. */
const ARRIVED = Symbol('@cache/http.arrived')

/** What was noted of a request as it arrived. */
export interface Arrival {
  /** `req.url` (over HTTP/2, the stream's `:path`) as the server emitted it, before any listener ran. */
  url: string
  /** Over HTTP/2, the stream's `:authority` as the server emitted it. */
  authority?: string
  /**
   * The header lines the cache decides with, as `rawHeaders` held them when the server emitted the
   * request (over HTTP/2, the stream's header lines as its `stream` event was emitted; name,
   * value, …; `undefined` when it had none): those that name the host and protocol
   * (`Host`, `X-Forwarded-Host`, `X-Forwarded-Proto`), the credentials (`Authorization`,
   * `Cookie`) and those that announce a body (`Content-Length`, `Transfer-Encoding`). A listener
   * or hook may rewrite or delete them in both `headers` and `rawHeaders` later (a domain alias,
   * an auth layer that strips the token it verified, a body parser).
   */
  lines?: readonly string[]
  /** The server that noted it. */
  server: object
}

type Emit = (this: unknown, event: string | symbol, ...args: unknown[]) => boolean
type Noted = { url?: string; stream?: unknown; [ARRIVED]?: Arrival }

/** The events that hand a request to the server's listeners (`checkContinue` may emit `request` later). */
const REQUEST_EVENTS = new Set<string | symbol>(['request', 'checkContinue', 'checkExpectation'])

/** The `emit` {@link noteArrivals} gave each server (`noted`), and the one it wraps (`inner`). */
const noting = new WeakMap<object, { noted: Emit; inner: Emit }>()

/**
 * Notes the target each request arrives with at `server`, as the server emits it (its `emit` is
 * wrapped; once per server): before every listener, whatever order they were added in. Call it on
 * the server right after making it (`noteArrivals(serve(…))`): requests that arrived before cannot
 * be told from rewritten ones. An `emit` someone wraps after this one runs first, and may rewrite:
 * the requests it passes on are not noted (they bypass). Returns `server`; something that is not an
 * event emitter is left alone.
 */
export function noteArrivals<Server>(server: Server): Server {
  const emitter = server as { emit?: unknown } | null
  if (emitter === null || typeof emitter !== 'object' || typeof emitter.emit !== 'function') return server
  if (noting.has(emitter)) return server
  const emit = emitter.emit as Emit
  const noted: Emit = function (this: unknown, event, ...args) {
    // Called through the server's own `emit`, not from a wrapper put around it since.
    if ((this as { emit?: unknown } | null)?.emit === noted) {
      if (REQUEST_EVENTS.has(event)) noteRequest(args[0] as Noted, emitter)
      else if (event === 'stream') noteStream(args[0] as Noted, args[1], args[3], emitter)
    }
    return emit.call(this, event, ...args)
  }
  noting.set(emitter, { noted, inner: emit })
  emitter.emit = noted
  return server
}

/**
 * Whether `server` notes arrivals; one that does not starts to, for the requests to come
 * (`false`): requests that arrived before cannot be told from rewritten ones.
 */
export function notesArrivals(server: unknown): boolean {
  if (server === null || typeof server !== 'object') return false
  if (noting.has(server)) return true
  noteArrivals(server)
  return false
}

/**
 * Whether `server` emits each request through {@link noteArrivals}'s `emit` alone, wrapping Node's
 * own `EventEmitter.prototype.emit`: no wrapper (an APM shim) around it or inside it, none on
 * `http.Server.prototype` (or another prototype of the server). Only then did nothing but the
 * server's listeners see a request before they did.
 */
export function emitsUntouched(server: unknown): boolean {
  if (server === null || typeof server !== 'object') return false
  const own = noting.get(server)
  if (own === undefined || (server as { emit?: unknown }).emit !== own.noted) return false
  const pristine = EventEmitter.prototype.emit
  return (
    own.inner === pristine && (Object.getPrototypeOf(server) as { emit?: unknown } | null)?.emit === pristine
  )
}

/** What the server that emitted `req` noted of it as it arrived; `undefined` when none did. */
export function arrivalOf(req: unknown): Arrival | undefined {
  return req !== null && typeof req === 'object' ? (req as Noted)[ARRIVED] : undefined
}

/**
 * Gives `copy` (a request the cache made to refresh `from`'s entry in process) what was noted of
 * `from` as it arrived, when the copy asks for that same target: the copy then passes the
 * adapter's check as the request it stands for did. Anything else is left unnoted.
 */
export function carryArrival(copy: object, from: unknown, url: string): void {
  const arrived = arrivalOf(from)
  if (arrived !== undefined && arrived.url === url) (copy as Noted)[ARRIVED] = arrived
}

/**
 * The prototypes of the requests Node builds itself. A server made with a request class of the
 * app's own (`createServer({ IncomingMessage: LocaleRequest }, app)`) may have rewritten its `url`
 * before `emit`: its requests are not noted (they bypass as `rewritten-url`), nor are requests
 * whose `url` is not a plain value (see {@link plainUrl}). Express changes a request's prototype
 * only after the server emitted it.
 */
const NODE_REQUESTS: ReadonlySet<unknown> = new Set([IncomingMessage.prototype, Http2ServerRequest.prototype])

/**
 * Whether `req.url` is the plain value Node's parser assigned: a request "class" that is a
 * factory returning a real IncomingMessage can give it a `url` accessor of its own (stripping a
 * locale prefix as the parser sets it), and the target read at `emit` is then already rewritten.
 */
function plainUrl(req: object): boolean {
  const own = Object.getOwnPropertyDescriptor(req, 'url')
  return own === undefined ? Object.getPrototypeOf(req) === Http2ServerRequest.prototype : 'value' in own
}

function noteRequest(req: Noted, server: object): void {
  if (req === null || typeof req !== 'object' || req[ARRIVED] !== undefined) return
  if (!NODE_REQUESTS.has(Object.getPrototypeOf(req)) || !plainUrl(req)) return
  const stream = req.stream
  if (stream === undefined) {
    if (!buildsNodeRequests(server) || !plainChain(req)) return
    const lines = notedLines((req as { rawHeaders?: unknown }).rawHeaders)
    req[ARRIVED] =
      lines === undefined ? { url: req.url ?? '/', server } : { url: req.url ?? '/', server, lines }
    return
  }
  // HTTP/2: the request is made from the stream's headers, which a `stream` listener may have
  // edited first; what the stream arrived with was noted as it was emitted.
  const arrived = arrivalOf(stream)
  if (arrived !== undefined && arrived.server === server) req[ARRIVED] = arrived
}

/** Node's symbol for a server's `IncomingMessage` option (`undefined` where Node has none). */
const requestClassKey = Object.getOwnPropertySymbols(new Server()).find(
  (key) => key.description === 'IncomingMessage',
)

/**
 * Whether `server` builds its requests with Node's own `IncomingMessage` (an HTTP/1 server made
 * without an `IncomingMessage` option): a request class or factory of the app's own can rewrite
 * the target while the parser sets it, in ways the request no longer shows by `emit` (a `url`
 * setter that replaces itself with a plain value).
 */
function buildsNodeRequests(server: object): boolean {
  if (requestClassKey === undefined) return true
  const made = (server as Record<symbol, unknown>)[requestClassKey]
  return made === undefined || made === IncomingMessage
}

/** The properties a request's prototypes must not turn into accessors (a setter rewriting what the parser assigns). */
const ASSIGNED = ['url', 'rawHeaders', 'method'] as const

/**
 * Whether nothing on `req`'s prototype chain intercepts what Node's parser assigns to it: a
 * setter on `IncomingMessage.prototype` (or above) rewrites every request's target before `emit`.
 * Node's own `headers` accessor on `IncomingMessage.prototype` is the one allowed.
 */
function plainChain(req: object): boolean {
  for (let proto = Object.getPrototypeOf(req); proto !== null; proto = Object.getPrototypeOf(proto))
    for (const name of ASSIGNED) if (Object.hasOwn(proto, name)) return false
  // Node's own `headers` accessor, read without making a descriptor (each request pays this).
  if ((req as { __lookupGetter__(name: string): unknown }).__lookupGetter__('headers') !== NODE_HEADERS_GET)
    return false
  const rawHeaders = Object.getOwnPropertyDescriptor(req, 'rawHeaders')
  return rawHeaders === undefined || 'value' in rawHeaders
}

const NODE_HEADERS_GET = Object.getOwnPropertyDescriptor(IncomingMessage.prototype, 'headers')?.get

/** The names of the header lines {@link Arrival.lines} keeps, lower-cased. */
const NOTED_LINES = new Set([
  'host',
  'x-forwarded-host',
  'x-forwarded-proto',
  'authorization',
  'cookie',
  'content-length',
  'transfer-encoding',
])
/**
 * Their lengths and first letters, as `length * 128 + letter`: a name of another length or first
 * letter (`Accept`, `Cache-Control`, `Sec-Fetch-Mode`) is passed over without lower-casing it.
 */
const NOTED_LINE_SHAPES = new Set([...NOTED_LINES].map((name) => lineShape(name)))

function lineShape(name: string): number {
  return name.length * 128 + (name.charCodeAt(0) | 0x20)
}

/**
 * The lines of `rawHeaders` (name, value, …) that {@link Arrival.lines} keeps; `undefined` when
 * there are none. Only those lines are copied (a few per request), not the whole list.
 */
export function notedLines(rawHeaders: unknown): string[] | undefined {
  if (!Array.isArray(rawHeaders)) return undefined
  let lines: string[] | undefined
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]
    if (
      typeof name === 'string' &&
      NOTED_LINE_SHAPES.has(lineShape(name)) &&
      NOTED_LINES.has(name.toLowerCase())
    )
      (lines ??= []).push(name, String(rawHeaders[i + 1]))
  }
  return lines
}

/**
 * Notes an HTTP/2 stream as the server emits it (`stream, headers, flags, rawHeaders`): its
 * `:path`, `:authority` and the header lines {@link Arrival.lines} keeps, as on HTTP/1. The
 * compatibility API's request holds the very `headers` object and `rawHeaders` list the stream
 * was emitted with: a layer that deletes a credential from them deletes it from what was sent.
 */
function noteStream(stream: Noted, headers: unknown, rawHeaders: unknown, server: object): void {
  if (stream === null || typeof stream !== 'object' || stream[ARRIVED] !== undefined) return
  const sent = headers as Record<string, unknown> | null
  const path = sent?.[':path']
  if (typeof path !== 'string') return
  const authority = sent?.[':authority']
  const lines = notedLines(Array.isArray(rawHeaders) ? rawHeaders : headerLines(sent))
  stream[ARRIVED] = {
    url: path,
    server,
    ...(typeof authority === 'string' ? { authority } : {}),
    ...(lines === undefined ? {} : { lines }),
  }
}

/** A stream's headers object as `[name, value, …]`, for a server that emits no raw list. */
function headerLines(headers: Record<string, unknown> | null): unknown[] | undefined {
  if (headers === null || typeof headers !== 'object') return undefined
  const lines: unknown[] = []
  for (const name of Object.keys(headers)) {
    const value = headers[name]
    if (Array.isArray(value)) for (const one of value) lines.push(name, one)
    else if (value !== undefined) lines.push(name, value)
  }
  return lines
}
