/*
 * The target each request arrives with at a Node server (HTTP/1 or HTTP/2 compatibility API), noted
 * at the server's `request` event before any other listener can rewrite `req.url`: a server of the
 * app's own, Express in front, a second listener. The adapters whose framework is handed Node's
 * request by whatever ran first (Fastify's `serverFactory`, Hono's node listener) compare it with
 * the target the framework routed: a request whose target was changed before the cache bypasses.
 */

import { frontOf } from './express-routing.js'

/** The target a request arrived with at the server's `request` event, and that server. */
const ARRIVED = Symbol('@cache/http.arrived')

/** What was noted of a request as it arrived. */
export interface Arrival {
  /** `req.url` as the server emitted the request, before any listener ran. */
  url: string
  /** The server whose `request` event noted it. */
  server: object
}

interface Emitter {
  prependListener(event: string, listener: (...args: never[]) => unknown): unknown
  removeListener(event: string, listener: (...args: never[]) => unknown): unknown
  listeners(event: string): Function[]
}

/** The noting listener of each server that notes arrivals. */
const noters = new WeakMap<object, (req: { url?: string; [ARRIVED]?: Arrival }) => void>()
/** Every noting listener, to be told from the app's own listeners. */
const noterFunctions = new WeakSet<Function>()

/** Whether `listener` is the listener {@link noteArrivals} put on a server (not an app's). */
export function isArrivalNoter(listener: unknown): boolean {
  return typeof listener === 'function' && noterFunctions.has(listener)
}

/**
 * Notes the target each request arrives with at `server`'s `request` event, before every other
 * listener (put first; once per server). Call it on the server right after making it
 * (`noteArrivals(serve(…))`): requests that arrived before cannot be told from rewritten ones.
 * Returns `server`; something that is not an event emitter is left alone.
 */
export function noteArrivals<Server>(server: Server): Server {
  const emitter = asEmitter(server)
  if (emitter === undefined || noters.has(emitter)) return server
  const noter = (req: { url?: string; [ARRIVED]?: Arrival }) => {
    if (req === null || typeof req !== 'object' || req[ARRIVED] !== undefined) return
    if (!isFirst(emitter, noter)) {
      // A listener prepended since ran before this one and may have rewritten `req.url`: this
      // request is not noted (it bypasses), and the noting listener is first again for the next.
      emitter.removeListener('request', noter)
      emitter.prependListener('request', noter)
      return
    }
    req[ARRIVED] = { url: req.url ?? '/', server: emitter }
  }
  noters.set(emitter, noter)
  noterFunctions.add(noter)
  emitter.prependListener('request', noter)
  return server
}

/**
 * Whether `noter` is what `emitter` calls first for a request: its first `request` listener, or
 * the first of those a front put before them calls in turn (Nest's front door, which rewrites
 * nothing).
 */
function isFirst(emitter: Emitter, noter: Function): boolean {
  const first = emitter.listeners('request')[0]
  if (first === noter) return true
  return typeof first === 'function' && frontOf(first)?.[0] === noter
}

/**
 * Whether `server` notes arrivals; one that does not starts to, for the requests to come
 * (`false`): requests that arrived before cannot be told from rewritten ones.
 */
export function notesArrivals(server: unknown): boolean {
  const emitter = asEmitter(server)
  if (emitter === undefined) return false
  if (noters.has(emitter)) return true
  noteArrivals(emitter)
  return false
}

/** What the server that emitted `req` noted of it as it arrived; `undefined` when none did. */
export function arrivalOf(req: unknown): Arrival | undefined {
  return req !== null && typeof req === 'object' ? (req as { [ARRIVED]?: Arrival })[ARRIVED] : undefined
}

function asEmitter(server: unknown): Emitter | undefined {
  const emitter = server as Partial<Emitter> | null
  if (emitter === null || typeof emitter !== 'object') return undefined
  if (
    typeof emitter.prependListener !== 'function' ||
    typeof emitter.removeListener !== 'function' ||
    typeof emitter.listeners !== 'function'
  )
    return undefined
  return emitter as Emitter
}
