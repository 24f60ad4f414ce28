import type { IncomingMessage } from 'node:http'
import {
  expressArrivedAsRouted,
  expressQueryParserBypass,
  expressQueryReplaced,
  expressRoutedAsSent,
  isServerListener,
} from '@cache/http'

/**
 * `req.url` of each request as Nest's Express application received it, before any middleware ran
 * (Express copies it to `originalUrl`, which middleware may rewrite as well).
 */
const sentUrls = new WeakMap<IncomingMessage, string>()
/** The Express applications whose entry is watched. */
const watched = new WeakSet<object>()

/**
 * Watches the entry of Nest's Express application (`app.handle`, which the Node server's listener
 * calls for every request), so that the target each request was sent with is known whatever
 * middleware later does to `req.url` and `req.originalUrl`. Done once per application; anything
 * else than an Express application is left alone.
 */
export function watchExpressApp(app: unknown): void {
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
    }
    return (handle as (...args: unknown[]) => unknown).call(this, req, ...rest)
  }
}

/**
 * Why a request on Nest's Express platform is not cached by the URL it was sent with, if so:
 * `rewritten-url` when middleware rewrote `req.url` (or it and `req.originalUrl` together), or a
 * listener of the server did before Express (or the server did not note the request as it
 * arrived: see `noteArrivals`), so that Express routed another target than the one sent, `querystring-parser` under a query
 * parser of the application's own. `@cache/http`'s rules, shared with `@cache/express`.
 */
export function expressBypass(req: IncomingMessage & { app?: unknown }): string | undefined {
  // An app a function of the server picks per request (two apps of one module on one server,
  // by region or role) has no place of its own: its entries would answer for the other's.
  if (!isServerListener(req, req.app)) return 'site'
  // Rewritten by middleware, or before Express (the server's own `checkContinue` listener calling
  // the application, a `request` listener put first): the server noted the target as it arrived.
  if (!expressRoutedAsSent(req as never, sentUrls.get(req)) || !expressArrivedAsRouted(req as never))
    return 'rewritten-url'
  // Read as the request is looked up, before the handler (which may change `req.query` as it likes).
  if (expressQueryReplaced(req as never)) return 'querystring-parser'
  return expressQueryParserBypass(req as never)
}

/** The target a request was sent with, as the application received it. */
export function sentUrlOf(req: IncomingMessage & { originalUrl?: string }): string {
  return sentUrls.get(req) ?? req.originalUrl ?? req.url ?? '/'
}
