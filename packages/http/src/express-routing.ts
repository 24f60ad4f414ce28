import type { IncomingMessage } from 'node:http'
import { parse as parseSimple } from 'node:querystring'
import { arrivalOf, emitsUntouched, notesArrivals } from './arrivals.js'
import { hostKeyPart, protohostOf } from './request-key.js'

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

/**
 * Whether Express routes `req` on the target it arrived with at its server: the target the server
 * noted as it emitted the request, before any listener (see `noteArrivals`), must be the one
 * Express's first router started with (`originalUrl`). A layer before Express that rewrites
 * `req.url` (the app's own `checkContinue` or `checkExpectation` listener calling the app, a
 * `request` listener prepended to it, an `emit` wrapped on the server by an APM shim) hands
 * Express another request than the one sent, which neither `originalUrl` nor Express's own start
 * can show. A request its server did not note cannot be told from a rewritten one: `false` (one
 * that arrived before the cache first saw the server, and `noteArrivals` was not called; one a
 * server handed on to another; one passed on by an `emit` wrapped around the noting one). The
 * rule of `@cache/express` and of `@cache/nestjs` on Nest's Express platform, as of the Hono and
 * Fastify adapters.
 */
export function expressArrivedAsRouted(req: IncomingMessage & ExpressRoutedRequest): boolean {
  const server = (req.socket as { server?: unknown } | null)?.server
  // Checked first: a server seen for the first time starts noting for the requests to come.
  if (!notesArrivals(server)) return false
  const arrived = arrivalOf(req)
  return arrived !== undefined && arrived.server === server && arrived.url === (req.originalUrl ?? req.url)
}

/** The query parsers Express compiles itself, known by function, with their kind; each is checked once. */
const ownParsers = new WeakMap<Function, ParserKind>()

/** `'own'`: a parser of the application's own; the others are Express's. */
type ParserKind = 'none' | 'simple' | 'extended' | 'own'

/** An Express application as the query rules read it. */
interface QueryApp {
  get?(name: string): unknown
  /** The application it is mounted in (Express sets it on `app.use(path, subApp)`). */
  parent?: unknown
}

/** The request fields the query rules read. */
export interface ExpressQueryRequest {
  url?: string
  originalUrl?: string
  app?: QueryApp
  query?: unknown
}

/**
 * `querystring-parser` when the `req.query` Express hands the handler is made by a parser of the
 * application's own (`app.set('query parser', fn)`, such as `qs` with `comma` or `allowDots`) and
 * the request has a query: such a parser may give two spellings of a query (`?ids=1,2` and
 * `?ids=1&ids=2`) the same `req.query`, so one entry per spelling could not all be reached by
 * invalidating one of them. Express 5 parses with the parser of the application that reads
 * `req.query`; Express 4 parses once, in the first application of the request, and a mounted one
 * keeps that result: every application of the mount chain must then have one of Express's parsers.
 * Under Express's `'extended'` parser (`qs`), a query with a parameter name that `qs` reads
 * otherwise than it is spelled (`[page]` is `page`, `a[b]x` is `a[b]`, deeper than five levels,
 * `x=1]=2` is `x=1]`, a `__proto__` name is dropped) bypasses too: the key's spellings are only
 * those of names `qs` reads as written. Express's own parsers (`'simple'`, `'extended'`, or none)
 * otherwise leave the request alone. The rule of
 * `@cache/express` and of `@cache/nestjs` on Nest's Express platform.
 */
export function expressQueryParserBypass(req: ExpressQueryRequest): string | undefined {
  const url = req.url
  if (url === undefined || !url.includes('?')) return undefined
  const app = req.app
  // Outside Express: no parser of the application's.
  if (typeof app?.get !== 'function') return undefined
  const query = queryOf(req.originalUrl ?? url)
  for (const reader of parsingApps(req, app)) {
    const kind = parserKind(reader.get?.('query parser fn'))
    if (kind === 'own') return 'querystring-parser'
    if (kind === 'extended' && !qsReadsAsSpelled(query)) return 'querystring-parser'
  }
  return undefined
}

/**
 * Whether middleware before the cache replaced or changed `req.query` (an `hpp`-style "last value
 * wins", coercion to numbers, defaults added): it is then not what Express's parser makes of the
 * query, so spellings of the query the key tells apart may be one `req.query` to the handler. Told
 * by parsing the query again with the parser that made `req.query` and comparing as JSON (Express 4 keeps
 * the parsed object on the request; Express 5 parses on each read, so only a `req.query` defined
 * by middleware is compared). Under a parser of the application's own nothing is compared
 * (`expressQueryParserBypass` decides). To be asked before the handler runs: a handler may change
 * `req.query` as it likes.
 */
export function expressQueryReplaced(req: ExpressQueryRequest): boolean {
  const app = req.app
  if (typeof app?.get !== 'function') return false
  const own = Object.getOwnPropertyDescriptor(req, 'query')
  if (own === undefined) return false
  if (!('value' in own)) return true
  const reader = parsesOnRead(req) ? app : rootOf(app)
  const parser = reader.get?.('query parser fn')
  const kind = parserKind(parser)
  if (kind === 'own') return false
  const target = req.originalUrl ?? req.url ?? ''
  const q = target.indexOf('?')
  try {
    const parsed =
      kind === 'none' ? {} : (parser as (text: string | null) => unknown)(q === -1 ? null : queryOf(target))
    // As JSON: Node's `querystring` makes objects without a prototype, which a copy (`{ ...query }`)
    // does not keep; a value's type, a key's order and every value still count.
    return JSON.stringify(own.value) !== JSON.stringify(parsed)
  } catch {
    return true
  }
}

/** The query of a target as Express's `parseurl` reads it: after the `?`, before a `#`. */
function queryOf(target: string): string {
  const q = target.indexOf('?')
  if (q === -1) return ''
  const hash = target.indexOf('#', q)
  return target.slice(q + 1, hash === -1 ? undefined : hash)
}

/**
 * The applications whose parser may have made `req.query`: on Express 5 (a `query` getter),
 * the one reading it; on Express 4, the first one the request entered, found through the mount
 * chain (every application of it, since an application mounted twice names only its last parent).
 */
function parsingApps(req: object, app: QueryApp): QueryApp[] {
  if (parsesOnRead(req)) return [app]
  const apps: QueryApp[] = []
  for (let current: QueryApp | undefined = app; current !== undefined && !apps.includes(current); ) {
    apps.push(current)
    const parent = current.parent as QueryApp | undefined
    current = typeof parent?.get === 'function' ? parent : undefined
  }
  return apps
}

function rootOf(app: QueryApp): QueryApp {
  const apps = parsingApps({}, app)
  return apps[apps.length - 1]!
}

/** Request prototypes, by whether they read `req.query` through a getter (Express 5). */
const getterPrototypes = new WeakMap<object, boolean>()

/** Whether Express parses `req.query` as it is read (Express 5), rather than once (Express 4). */
function parsesOnRead(req: object): boolean {
  const prototype = Object.getPrototypeOf(req) as object | null
  if (prototype === null) return false
  let known = getterPrototypes.get(prototype)
  if (known === undefined) {
    known = false
    for (let p: object | null = prototype; p !== null; p = Object.getPrototypeOf(p)) {
      const descriptor = Object.getOwnPropertyDescriptor(p, 'query')
      if (descriptor !== undefined) {
        known = descriptor.get !== undefined
        break
      }
    }
    getterPrototypes.set(prototype, known)
  }
  return known
}

function parserKind(parser: unknown): ParserKind {
  if (parser === undefined || parser === null || parser === false) return 'none'
  if (typeof parser !== 'function') return 'own'
  let kind = ownParsers.get(parser)
  if (kind === undefined) {
    kind = expressParserKind(parser)
    ownParsers.set(parser, kind)
  }
  return kind
}

/**
 * Express's `'simple'` parser is Node's `querystring.parse`; its `'extended'` one is a function
 * of its own (`parseExtendedQueryString`: `qs.parse(str, { allowPrototypes: true })`, Express 4
 * adding an `arrayLimit`), known by its name and source.
 */
function expressParserKind(parser: Function): ParserKind {
  if (parser === parseSimple) return 'simple'
  const source = Function.prototype.toString.call(parser).replace(/\s+/g, '')
  // Express 4's parser of `false`: an empty object whatever the query.
  if (parser.name === 'newObject')
    return /^functionnewObject\(\)\{return\{\};?\}$/.test(source) ? 'none' : 'own'
  if (parser.name !== 'parseExtendedQueryString') return 'own'
  return /^functionparseExtendedQueryString\(str\)\{returnqs\.parse\(str,\{allowPrototypes:true(?:,arrayLimit:\d+)?\}\);?\}$/.test(
    source,
  )
    ? 'extended'
    : 'own'
}

/**
 * A parameter name `qs` reads as it is spelled: a plain name, then up to five `[…]` groups
 * holding no bracket, nothing between or after them. `qs` reads other spellings as one of these
 * (`[page]` as `page`, `a[b]x` as `a[b]`, `a[b]…[g]` past its depth otherwise).
 */
const QS_AS_SPELLED = /^[^[\]]+(?:\[[^[\]]*\]){0,5}$/

/** A name part `qs` drops with its value: `__proto__`, as the name or inside a bracket group. */
const QS_DROPPED = /(?:^|\[)__proto__(?:[[\]]|$)/

/**
 * Whether `qs` reads every parameter of `query` as spelled (see {@link QS_AS_SPELLED}): its name
 * is what comes before the first `=`, unless a `]=` comes later (`x=1]=2` is the name `x=1]`),
 * and no part of it is one `qs` drops (`__proto__`, so `?__proto__=1` is read as no query).
 */
function qsReadsAsSpelled(query: string): boolean {
  if (!/[[\]%]|__proto__/.test(query)) return true
  for (const param of query.split('&')) {
    const eq = param.indexOf('=')
    const bracketEq = param.indexOf(']=')
    if (bracketEq !== -1 && bracketEq + 1 !== eq) return false
    let name = (eq === -1 ? param : param.slice(0, eq)).replaceAll('+', ' ')
    if (name.includes('%')) {
      try {
        name = decodeURIComponent(name)
      } catch {
        // `qs` keeps a name that does not decode as sent.
      }
    }
    if (/[[\]]/.test(name) && !QS_AS_SPELLED.test(name)) return false
    if (name.includes('__proto__') && QS_DROPPED.test(name)) return false
  }
  return true
}

/**
 * Whether a front listener (`cache.front(app)` of `@cache/express`, the front door of
 * `@cache/nestjs`), which keys a request on its `req.url` and `Host` before the app runs, may
 * answer it: its server noted it as it arrived with that target (see `noteArrivals`; a server seen
 * for the first time starts noting), and its `Host` header is the line the client sent. A target
 * or `Host` a listener before the front rewrote (one prepended, the server's own `checkContinue`
 * listener, an `emit` wrapped by an APM shim) would be answered with the entry of another request.
 */
export function frontSeesAsSent(req: IncomingMessage): boolean {
  const server = (req.socket as { server?: unknown } | null)?.server
  if (!notesArrivals(server)) return false
  const arrived = arrivalOf(req)
  if (arrived === undefined || arrived.server !== server || arrived.url !== req.url) return false
  return hostKeyPart(req.headers.host, req) === undefined
}

/** Listeners that call apps for every request they do not answer themselves (a cache's front). */
const fronts = new WeakMap<Function, readonly unknown[]>()

/** Records that the server listener `listener` calls `apps` for every request it passes on. */
export function noteFrontOf(listener: Function, apps: readonly unknown[]): void {
  fronts.set(listener, apps)
}

/** The apps a front listener calls (see {@link noteFrontOf}), or `undefined` for another listener. */
export function frontOf(listener: Function): readonly unknown[] | undefined {
  return fronts.get(listener)
}

/**
 * Why a background refresh must not hand a copy of a request that `server` emitted to `app`
 * directly, or `undefined` when nothing but the app can have touched the request at the server:
 * every `request` listener is the app (or a cache's front of it alone: `cache.front(app)`, Nest's
 * front door), the server emits through {@link noteArrivals}'s `emit` alone, around Node's own
 * (see `emitsUntouched`), and no `checkContinue` or `checkExpectation` listener but the app. A
 * listener before the app (one marking `req.publicView`), an `emit` wrapper or a `checkContinue`
 * listener may have set what the app reads of the request: a copy that skips them resolves as
 * another request, and its response would be stored under the entry of the one it stands for.
 */
export function refreshRefusal(server: unknown, app: unknown): string | undefined {
  const emitter = server as ListeningServer | null | undefined
  if (app === undefined || app === null || typeof emitter?.listeners !== 'function')
    return 'the request did not come through a server the cache knows'
  const isApp = (listener: Function) => {
    if (listener === app) return true
    const apps = fronts.get(listener)
    return apps?.length === 1 && apps[0] === app
  }
  const listeners = emitter.listeners('request')
  if (listeners.length === 0 || !listeners.every(isApp))
    return "the server has a 'request' listener other than the app, which the copy would skip"
  for (const event of ['checkContinue', 'checkExpectation'])
    if (!emitter.listeners(event).every(isApp))
      return `the server has a '${event}' listener of its own, which the copy would skip`
  if (!emitsUntouched(server))
    return "the server's emit is not noteArrivals' wrapper of Node's own (an APM shim, or noteArrivals not called)"
  return undefined
}

/**
 * Whether `app` is what the request's server calls (`app.listen`, `createServer(app)`, a cache's
 * front of it), rather than an app a function of another one picked per request: two apps made by
 * one factory describe alike, and only their closures (a region, a role) differ, so a place in an
 * app the server does not call itself cannot be told. The rule of `@cache/express` and of
 * `@cache/nestjs` on Nest's Express platform.
 */
export function isServerListener(req: IncomingMessage, app: unknown): boolean {
  if (app === undefined || app === null) return false
  const server = (req.socket as { server?: ListeningServer } | null)?.server
  if (typeof server?.listeners !== 'function' || typeof server.listenerCount !== 'function') return false
  // A verdict per server and app, asked again when the server's listeners change.
  const count = server.listenerCount('request')
  let known = listenerVerdicts.get(server)
  if (known === undefined || known.count !== count) {
    known = { count, apps: new WeakMap() }
    listenerVerdicts.set(server, known)
  }
  let verdict = known.apps.get(app as object)
  if (verdict === undefined) {
    verdict = server
      .listeners('request')
      .some((listener) => listener === app || fronts.get(listener)?.includes(app) === true)
    known.apps.set(app as object, verdict)
  }
  return verdict
}

type ListeningServer = {
  listeners?: (event: string) => Function[]
  listenerCount?: (event: string) => number
}
const listenerVerdicts = new WeakMap<object, { count: number; apps: WeakMap<object, boolean> }>()
