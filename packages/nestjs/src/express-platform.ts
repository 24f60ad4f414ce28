import type { IncomingMessage } from 'node:http'
import { expressQueryParserBypass, expressQueryReplaced, expressRoutedAsSent } from '@cache/http'

/**
 * `req.url` of each request as Nest's Express application received it, before any middleware ran
 * (Express copies it to `originalUrl`, which middleware may rewrite as well).
 */
const sentUrls = new WeakMap<IncomingMessage, string>()
/** The Express applications whose entry is watched. */
const watched = new WeakSet<object>()

/** Where the request a background refresh copies came from: its copy resolves as it did. */
export interface RefreshOrigin {
  remoteAddress: string | undefined
  remotePort: number | undefined
  remoteFamily: string | undefined
}

/**
 * The origins of the loopback copies under way, by the id their refresh header carries (a random
 * id only this process knows): set by the refresh, read as the copy enters the application.
 */
export const refreshOrigins = new Map<string, RefreshOrigin>()

/**
 * Watches the entry of Nest's Express application (`app.handle`, which the Node server's listener
 * calls for every request), so that the target each request was sent with is known whatever
 * middleware later does to `req.url` and `req.originalUrl`. A background refresh's loopback copy
 * is given the address of the request it refreshes there, before Express or any middleware reads
 * it, so that `trust proxy`, `req.ip` and guards resolve it as that request. Done once per
 * application; anything else than an Express application is left alone.
 */
export function watchExpressApp(app: unknown, header: string): void {
  if (typeof app !== 'function' || watched.has(app)) return
  const target = app as unknown as { handle?: unknown; set?: unknown }
  const handle = target.handle
  if (typeof handle !== 'function' || typeof target.set !== 'function' || !Object.hasOwn(target, 'handle'))
    return
  watched.add(target)
  target.handle = function (this: unknown, req: IncomingMessage, ...rest: unknown[]) {
    // The application entered first (Express sets `originalUrl` from `url` as its router starts).
    if (
      req !== null &&
      typeof req === 'object' &&
      (req as { originalUrl?: unknown }).originalUrl === undefined
    ) {
      const url = req.url
      if (typeof url === 'string') sentUrls.set(req, url)
      const id = req.headers?.[header]
      if (typeof id === 'string') {
        const origin = refreshOrigins.get(id)
        if (origin !== undefined) {
          refreshOrigins.delete(id)
          asFrom(req, origin)
        }
      }
    }
    return (handle as (...args: unknown[]) => unknown).call(this, req, ...rest)
  }
}

/** The copy's own socket (one per copy) reports the address of the request it refreshes. */
function asFrom(req: IncomingMessage, origin: RefreshOrigin): void {
  const socket = req.socket as object | null
  if (socket === null) return
  for (const [name, value] of Object.entries(origin))
    if (value !== undefined) Object.defineProperty(socket, name, { value, configurable: true })
}

/**
 * Why a request on Nest's Express platform is not cached by the URL it was sent with, if so:
 * `rewritten-url` when middleware rewrote `req.url` (or it and `req.originalUrl` together) so
 * that Express routed another target than the one sent, `querystring-parser` under a query
 * parser of the application's own. `@cache/http`'s rules, shared with `@cache/express`.
 */
export function expressBypass(req: IncomingMessage & { app?: unknown }): string | undefined {
  if (!expressRoutedAsSent(req as never, sentUrls.get(req))) return 'rewritten-url'
  // Read as the request is looked up, before the handler (which may change `req.query` as it likes).
  if (expressQueryReplaced(req as never)) return 'querystring-parser'
  return expressQueryParserBypass(req as never)
}
