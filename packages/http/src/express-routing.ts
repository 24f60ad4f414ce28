import { parse as parseSimple } from 'node:querystring'
import { protohostOf } from './request-key.js'

/** What Express's router reads of a request to route it: the fields it sets and rewrites. */
export interface ExpressRoutedRequest {
  /** The target as Express's first router started (middleware may rewrite it). */
  originalUrl?: string
  /** The target the current router routes, without the mount path of the routers around it. */
  url?: string
  /** The mount path of the routers around the current one. */
  baseUrl?: string
}

/**
 * Whether Express routes `req` on the target it was sent with: `sent` is `req.url` as Express's
 * first router of the request started, before any middleware ran (`undefined` when the adapter
 * did not observe that start: `originalUrl` stands for it). `originalUrl` must be it, and
 * `baseUrl` + `url` must lead back to it. Mounting strips the mount path from `url` (`/admin?x` is
 * routed as `/?x` under `baseUrl` `/admin`); middleware that rewrites `req.url` (an internal
 * rewrite, a history-API fallback, a query parameter added), or `req.url` and `req.originalUrl`
 * together (a locale prefix stripped), makes the request another one than the target sent. The
 * one rule of `@cache/express` and of `@cache/nestjs` on Nest's Express platform.
 */
export function expressRoutedAsSent(req: ExpressRoutedRequest, sent: string | undefined): boolean {
  const original = req.originalUrl
  const url = req.url
  // Outside Express (no `originalUrl`) the key is `url` itself.
  if (original === undefined || url === undefined) return true
  // Middleware that rewrites `originalUrl` too (hiding a locale prefix from logs) still routes
  // another request than the one sent: the target as the first router started must be it.
  if (sent !== undefined && sent !== original) return false
  const base = req.baseUrl ?? ''
  // An absolute-form target (`GET http://host/path`): Express keeps `http://host` in front of `url`.
  const protohost = protohostOf(original)
  if (!url.startsWith(protohost)) return false
  const routed = url.slice(protohost.length)
  const path = original.slice(protohost.length)
  if (!path.startsWith(base)) return false
  const rest = path.slice(base.length)
  // Express adds the leading slash a mount path left out (`/admin` → `/`, `/admin?x` → `/?x`).
  return routed === rest || (protohost === '' && (rest === '' || rest[0] === '?') && routed === `/${rest}`)
}

/** The query parsers Express compiles itself, known by function; each is checked once. */
const ownParsers = new WeakMap<Function, boolean>()

/**
 * `querystring-parser` when Express hands the handler a `req.query` made by a parser of the
 * application's own (`app.set('query parser', fn)`, such as `qs` with `comma` or `allowDots`) and
 * the request has a query: such a parser may give two spellings of a query (`?ids=1,2` and
 * `?ids=1&ids=2`) the same `req.query`, so one entry per spelling could not all be reached by
 * invalidating one of them. Express's own parsers (`'simple'`, `'extended'`, or none) leave the
 * request alone: the key's spellings are theirs. The rule of `@cache/express` and of
 * `@cache/nestjs` on Nest's Express platform.
 */
export function expressQueryParserBypass(req: {
  url?: string
  app?: { get?(name: string): unknown }
}): string | undefined {
  const url = req.url
  if (url === undefined || !url.includes('?')) return undefined
  const app = req.app
  // Outside Express: no parser of the application's.
  if (typeof app?.get !== 'function') return undefined
  const parser = app.get('query parser fn')
  if (parser === undefined || parser === null || parser === false) return undefined
  if (typeof parser !== 'function') return 'querystring-parser'
  let own = ownParsers.get(parser)
  if (own === undefined) {
    own = isExpressParser(parser)
    ownParsers.set(parser, own)
  }
  return own ? undefined : 'querystring-parser'
}

/**
 * Express's `'simple'` parser is Node's `querystring.parse`; its `'extended'` one is a function
 * of its own (`parseExtendedQueryString`: `qs.parse(str, { allowPrototypes: true })`, Express 4
 * adding an `arrayLimit`), known by its name and source.
 */
function isExpressParser(parser: Function): boolean {
  if (parser === parseSimple) return true
  const source = Function.prototype.toString.call(parser).replace(/\s+/g, '')
  // Express 4's parser of `false`: an empty object whatever the query.
  if (parser.name === 'newObject') return /^functionnewObject\(\)\{return\{\};?\}$/.test(source)
  if (parser.name !== 'parseExtendedQueryString') return false
  return /^functionparseExtendedQueryString\(str\)\{returnqs\.parse\(str,\{allowPrototypes:true(?:,arrayLimit:\d+)?\}\);?\}$/.test(
    source,
  )
}
