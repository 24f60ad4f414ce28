import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { fastifyInstanceOptions } from './adapter-kit.js'
import type { Refresh } from './view.js'
import { refreshRequestHeaders } from './node.js'

/*
 * What the Fastify adapters (`@cache/fastify`, `@cache/nestjs` on platform-fastify) need to know
 * of a request that Fastify does not keep: the target the client sent and the one Fastify routed,
 * as they were before any hook ran, and the connection a background refresh stands for.
 */

/** A request's target as noted before its first `onRequest` hook. */
export interface FastifyTargetNote {
  /** The target as the client sent it: before `rewriteUrl` (Fastify keeps it in `raw.originalUrl`). */
  sent: string
  /** The target Fastify routed the request by (after `rewriteUrl`). */
  routed: string
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
const connections = new Map<string, Connection>()

type RawRequest = {
  url?: string
  originalUrl?: unknown
  headers: Record<string, unknown>
  socket?: Connection | null
  [NOTE]?: FastifyTargetNote
}

/**
 * The first `onRequest` hook of every route of an instance that {@link noteFastifyTargets} was
 * given: notes the target as sent and as routed, before any hook of the app can rewrite
 * `request.raw.url`; and gives a refresh's copy the connection of the request it refreshes.
 */
function noteTarget(request: { raw: RawRequest }, _reply: unknown, done: () => void): void {
  const raw = request.raw
  if (raw[NOTE] === undefined) {
    const routed = raw.url ?? '/'
    raw[NOTE] = { sent: typeof raw.originalUrl === 'string' ? raw.originalUrl : routed, routed }
  }
  const id = raw.headers[CONNECTION_HEADER]
  if (id !== undefined) {
    delete raw.headers[CONNECTION_HEADER]
    const connection = connections.get(String(id))
    // light-my-request's socket says nothing of TLS (Fastify reads `request.protocol` from it) nor
    // of the server and port the request came through (where a Nest handler's entries are made).
    if (connection !== undefined && raw.socket != null) Object.assign(raw.socket, connection)
  }
  done()
}

/**
 * Makes the noting hook the first `onRequest` hook of `instance` (and of the instances it
 * encapsulates from now on), before hooks the app added earlier: Fastify composes each route's
 * hooks from its instance's list when the app becomes ready. Returns `false` when Fastify's list
 * cannot be found; the hook is then added last, with `addHook`, and sees what earlier hooks left.
 */
export function noteFastifyTargets(instance: unknown): boolean {
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
  fastify?.addHook?.('onRequest', noteTarget)
  return false
}

/** What {@link noteFastifyTargets}'s hook noted of a request (`undefined`: it did not run). */
export function fastifyTarget(raw: unknown): FastifyTargetNote | undefined {
  return (raw as RawRequest | null)?.[NOTE]
}

/**
 * Why a request must bypass the cache because its target was rewritten before the cache
 * (`rewritten-url`): by `rewriteUrl` before routing, or by a hook (`request.raw.url = …`) after.
 * The key names the target as sent: a request routed or handled as another one must not be
 * stored under it. `undefined` when the request is handled as it was sent.
 */
export function fastifyRewrite(raw: unknown): string | undefined {
  const note = fastifyTarget(raw)
  if (note === undefined) return 'rewritten-url'
  return note.sent === note.routed && (raw as RawRequest).url === note.routed ? undefined : 'rewritten-url'
}

/**
 * Marks the headers of a refresh's `inject()` copy with the connection of `socket` (TLS, the
 * server and local address it came through), which the noting hook gives the copy before any hook
 * runs. Returns what forgets the mark.
 */
export function lendFastifyConnection(
  headers: Record<string, unknown>,
  socket: Connection | null | undefined,
): () => void {
  if (socket === null || socket === undefined) return () => {}
  const id = randomUUID()
  const connection: Connection = {}
  if (socket.encrypted === true) connection.encrypted = true
  if (socket.server !== undefined) connection.server = socket.server
  if (socket.localAddress !== undefined) connection.localAddress = socket.localAddress
  if (socket.localPort !== undefined) connection.localPort = socket.localPort
  connections.set(id, connection)
  headers[CONNECTION_HEADER] = id
  return () => connections.delete(id)
}

/**
 * Refreshes a stale entry with Fastify's `inject()`: a copy of `req` (the headers as sent, no
 * conditional ones) from the client's address over the client's protocol (TLS too, see
 * {@link lendFastifyConnection}), so that Fastify resolves it as the request it refreshes
 * (`trustProxy` by address, a hook admitting a proxy). The copy carries `header` naming its entry
 * in `refreshes`, which the cache takes out when it sees the copy; one still there when `inject()`
 * ends was answered by a hook before the cache ran: a failed refresh, counted and emitted.
 */
export function injectRefresh(
  instance: { inject(options: object): Promise<{ statusCode: number }> },
  req: IncomingMessage,
  url: string,
  refresh: Refresh,
  refreshes: Map<string, Refresh>,
  header: string,
): undefined {
  const id = randomUUID()
  refreshes.set(id, refresh)
  const headers: Record<string, string | string[] | undefined> = refreshRequestHeaders(req)
  headers[header] = id
  const socket = req.socket as (typeof req.socket & { encrypted?: boolean }) | null
  const forget = lendFastifyConnection(headers, socket)
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
      forget()
    })
  return undefined
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
