import { createHash } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { describeFunction as describeCode, isServerListener, listeningAt, noteFrontOf } from '@cache/http'
import { dispatchPosition, isMountedApp, type Layer, type RouterFrame, routerOf } from './dispatch.js'

/*
 * Where a cache sits in an app: its site. A stored response is replayed only at the site that
 * made it, because what a request passed on its way there is part of the answer. A guard that
 * turns a request away with `next('route')` or `next('router')` sends it on to another route for
 * the same URL; that route's cache must never answer it with what the guarded route stored.
 *
 * A site names, from the app down: for each router level on the dispatch path every layer of
 * that router up to the one the request went on through (each layer's path pattern and function,
 * a route's path, methods and every function of its stack, each function as
 * `name#<fingerprint of its source>`), the router's param callbacks, and the position in the
 * innermost route. What ran before the cache is in it: a guard in `app.use`, in a router, in an
 * earlier route for the same path or in `app.param` is part of the place. Processes running the
 * same code compute the same site; two different routes never share one. The site is hashed into
 * a short component of every key (`@<12 hex>`); the per-URL invalidation scope does not hold it,
 * so invalidation reaches every site.
 *
 * Where the server listens is part of it too (its bound address and port, or Unix socket path):
 * two servers in one process (an admin API and a public one, say) never share entries, whatever
 * `Host` a client sends, and replicas of a service that all listen at `0.0.0.0:3000` share them.
 *
 * What no description of code can tell apart is configuration: two apps of one factory whose
 * guards differ by a closure's value. On one port in one process the ambiguity check below
 * bypasses them; processes listening on one port need distinct `keyPrefix`es (the README says so).
 */

type Router = { stack?: unknown }
type Route = { path?: unknown; methods?: Record<string, unknown>; stack?: Layer[] }

/** Functions known under another identity: a handler wrapper stands for the handler it wraps. */
const identities = new WeakMap<Function, string>()
/**
 * Per router: what its stack held when it was last described, and for each index the hash of the
 * descriptions of every layer before it. Checked against the stack (layers, their functions, the
 * functions of their routes) on every use: stacks change at runtime.
 */
const prefixes = new WeakMap<Router, { layers: Layer[]; functions: unknown[][]; hashes: string[] }>()
/** Site descriptions and their hash: a bounded memo (an app has a bounded number of sites). */
const hashes = new Map<string, string>()
const MAX_HASHES = 10_000

/** Gives a handler wrapper the identity of the handler it wraps. */
export function identifyAs(wrapper: Function, handler: Function): string {
  const identity = describeFunction(handler)
  identities.set(wrapper, identity)
  return identity
}

/** The identity of a function as a site describes it (a wrapper as the handler it wraps). */
export function describeFunction(fn: Function): string {
  return identities.get(fn) ?? describeCode(fn)
}

/**
 * The site of a cache handling `req`: a short hash, or `undefined` when it cannot be told where
 * the cache is (the request must then bypass it). `anchor`: the function Express calls for the
 * cache (the middleware, or the wrapped handler); `identity`: the handler the cache runs for, when
 * it knows (a wrapper, a NestJS method).
 */
export function siteOf(
  req: IncomingMessage,
  anchor: Function | undefined,
  identity?: string,
  receiver?: unknown,
): string | undefined {
  const app = (req as { app?: unknown }).app
  // Where the server listens: two servers of one process never share a site.
  const listening = listeningAt(req.socket)
  // Outside Express there is no routing to tell apart: the handler is the place.
  if (app === undefined || app === null) return hashSite('direct', identity ?? '', listening)
  const tracked = trackedLevels(req)
  const found = tracked === undefined ? searchedLevels(req, app as Record<string, any>, anchor) : tracked
  if (found === undefined || found === null) return undefined
  const site = hashSite(found.levels, identity ?? '', listening)
  return isAmbiguous(found, site, anchor, receiver, req) ? undefined : site
}

/** A site's description, and what it describes: the cache's route or router. */
interface Found {
  levels: string
  owner: object
}

/**
 * The route (or router) and cache function first seen at each site in this process, and the
 * server that request came through. Held weakly: an app that is gone no longer owns its sites.
 */
const owners = new Map<
  string,
  {
    owner: WeakRef<object>
    anchor: WeakRef<Function> | undefined
    receiver: WeakRef<object> | undefined
    server: WeakRef<object> | undefined
  }
>()
/** Sites two different routes (or cache functions) turned out to share while both were served. */
const ambiguous = new Set<string>()

/**
 * Whether two different routes or routers (or two cache functions at one place) were seen with
 * the same site in this process, in one app or in two apps of one factory each on its own
 * server: their entries would answer for each other (a client of one server can send the other's
 * `Host`), so the site bypasses for good. A route whose server has closed (or whose app is gone)
 * hands its sites on: that is a later deployment, as in another process. This is a second line
 * behind the description, for what it cannot see.
 */
function isAmbiguous(
  found: Found,
  site: string,
  anchor: Function | undefined,
  receiver: unknown,
  req: IncomingMessage,
): boolean {
  if (ambiguous.has(site)) return true
  const first = owners.get(site)
  const instance = typeof receiver === 'object' && receiver !== null ? receiver : undefined
  if (first !== undefined) {
    const owner = first.owner.deref()
    if (owner === found.owner && first.anchor?.deref() === anchor && first.receiver?.deref() === instance)
      return false
    const server = first.server?.deref() as { listening?: unknown } | undefined
    const gone =
      owner === undefined ||
      (first.anchor !== undefined && first.anchor.deref() === undefined) ||
      (first.receiver !== undefined && first.receiver.deref() === undefined) ||
      (first.server !== undefined && (server === undefined || server.listening === false))
    if (!gone) {
      ambiguous.add(site)
      return true
    }
  } else if (owners.size >= MAX_HASHES) return false
  const server = (req.socket as { server?: object } | null)?.server
  owners.set(site, {
    owner: new WeakRef(found.owner),
    anchor: anchor === undefined ? undefined : new WeakRef(anchor),
    receiver: instance === undefined ? undefined : new WeakRef(instance),
    server: server === undefined ? undefined : new WeakRef(server),
  })
  return false
}

/**
 * The hash of a site's description, `levels|identity|listening`. A request of a site describes
 * it with the very strings the last one did (each part is memoized where it is made), so the
 * last hash of each `levels` is found without building the description again.
 */
function hashSite(levels: string, identity: string, listening: string): string {
  const last = lastHashes.get(levels)
  if (last !== undefined && last.identity === identity && last.listening === listening) return last.hash
  const hash = hashDescription(`${levels}|${identity}|${listening}`)
  if (lastHashes.size >= MAX_HASHES) lastHashes.clear()
  lastHashes.set(levels, { identity, listening, hash })
  return hash
}
const lastHashes = new Map<string, { identity: string; listening: string; hash: string }>()

function hashDescription(description: string): string {
  let hash = hashes.get(description)
  if (hash === undefined) {
    hash = digest(description).slice(0, 12)
    if (hashes.size >= MAX_HASHES) hashes.clear()
    hashes.set(description, hash)
  }
  return hash
}

/**
 * The site from the dispatch this package observed for `req`: `undefined` when it was not
 * observed, `null` when the layer that called the cache is not in the router it was dispatched in.
 */
function trackedLevels(req: IncomingMessage): Found | null | undefined {
  const position = dispatchPosition(req)
  if (position === undefined) return undefined
  const { layer, frame } = position
  const route = (req as { route?: Route }).route
  const inRoute =
    route !== undefined && route !== null && Array.isArray(route.stack) && route.stack.includes(layer)
  const inner = inRoute ? describeRoute(frame.router, route, layer) : describeLayer(frame.router, layer)
  if (inner === undefined) return null
  const parts = [inner]
  for (let f: RouterFrame | undefined = frame; f !== undefined; f = f.parent) {
    // A router entered by a plain function, not by the layer that mounts it: its place in the app
    // is a closure's choice, and the site cannot be told.
    if (!f.mounted) return null
    // At the top: the app the server calls itself. A listener of another function may pick an
    // app per request, and apps of one factory describe alike.
    if (f.parent === undefined) {
      if (!isServerListener(req, f.app)) return null
      break
    }
    if (f.mount === undefined || !entersMountedApp(f)) return null
    const mount = describeLayer(f.parent.router, f.mount)
    if (mount === undefined) return null
    parts.push(mount)
  }
  const levels = parts.length === 1 ? inner : parts.reverse().join('/')
  return { levels, owner: inRoute ? (route as object) : frame.router }
}

/**
 * The site of a request whose dispatch was not observed (the first one an app's cache saw): the
 * only place in the app's routers where the cache (or the route Express is in) sits, or
 * `undefined` when there is not exactly one (or the app is mounted in another one).
 */
function searchedLevels(
  req: IncomingMessage,
  app: Record<string, any>,
  anchor: Function | undefined,
): Found | undefined {
  // Only an app the server calls itself: one a plain function picked (an app not mounted anywhere,
  // entered from another app's middleware) has the same description as any other its factory made.
  if (app.parent !== undefined || !isServerListener(req, app)) return undefined
  const root = routerOf(app) as Router | undefined
  if (root === undefined) return undefined
  const route = (req as { route?: Route }).route
  const found: { levels: string; owner: object; inRouter: boolean }[] = []
  // Every mount of a router is searched: a router mounted twice holds the cache at two places,
  // and this request could have come through either. Only the routers being searched are skipped
  // (a router that holds itself); a search longer than the budget cannot tell the site.
  const searching = new Set<unknown>()
  let budget = MAX_SEARCHED_LAYERS
  const visit = (router: Router, outer: string[]) => {
    if (searching.has(router) || !Array.isArray(router.stack) || found.length > 1 || budget < 0) return
    searching.add(router)
    for (const layer of router.stack as Layer[]) {
      if (--budget < 0 || found.length > 1) break
      const handle = layer.handle as (Function & { stack?: unknown; handle?: unknown }) | undefined
      if (layer.route !== undefined && layer.route !== null) {
        if (layer.route !== route || route === undefined) continue
        // Express dispatches the layers of the request's method only (`app.all` adds one per method).
        const method = req.method?.toLowerCase()
        const stack = (Array.isArray(route.stack) ? route.stack : []).filter((l) => {
          const own = (l as { method?: unknown }).method
          return own === undefined || own === method || (method === 'head' && own === 'get')
        })
        const inner =
          anchor !== undefined ? stack.filter((l) => l.handle === anchor) : stack.length === 1 ? stack : []
        for (const l of inner)
          found.push({
            levels: [...outer, describeRoute(router, route, l)].join('/'),
            owner: route,
            inRouter: outer.length > 0,
          })
      } else if (anchor !== undefined && layer.handle === anchor) {
        found.push({
          levels: [...outer, describeLayer(router, layer)].join('/'),
          owner: router,
          inRouter: outer.length > 0,
        })
      } else if (
        typeof handle === 'function' &&
        Array.isArray(handle.stack) &&
        typeof handle.handle === 'function'
      ) {
        visit(handle as Router, [...outer, describeLayer(router, layer) ?? '?'])
      }
    }
    searching.delete(router)
  }
  visit(root, [])
  const [only] = found
  if (found.length !== 1 || only === undefined || budget < 0) return undefined
  // Inside a router: nothing tells whether the request came through its mount or through a
  // function that calls the router itself (`isAdmin(req) ? router(req, res, next) : next()`), which
  // has no site. Only a place in the app's own stack is taken.
  return only.inRouter ? undefined : only
}
/** How many layers the search for an unobserved request's site reads at most. */
const MAX_SEARCHED_LAYERS = 100_000

/**
 * Whether the router a frame entered through Express's `mounted_app` function is the one of the
 * app that was mounted there: the app the request is in (set as its dispatch began) has the
 * mounting app as its `parent`. A mounted app whose `handle` was replaced to pick an app per
 * request enters an app nobody mounted.
 */
function entersMountedApp(frame: RouterFrame): boolean {
  const mount = frame.mount
  if (mount === undefined || !isMountedApp(mount.handle)) return true
  const app = frame.app as Record<string, any> | undefined
  const parent = frame.parent?.app
  return (
    app !== undefined &&
    app !== null &&
    parent !== undefined &&
    app.parent === parent &&
    routerOf(app) === frame.router &&
    mountsAt(mount, app.mountpath)
  )
}

/**
 * Whether a layer's path is the one an app was mounted at (`app.mountpath`): the layer Express
 * added for it, not another mount of the same parent. Express 5 keeps the path as given; Express
 * 4 only its RegExp, which a layer of the same class built for that path reproduces.
 */
function mountsAt(layer: Layer, mountpath: unknown): boolean {
  const raw = (layer as { rawPath?: unknown }).rawPath
  if (raw !== undefined) {
    const given = Array.isArray(mountpath) ? mountpath.flat(Number.POSITIVE_INFINITY) : mountpath
    return pathText(raw) === pathText(given)
  }
  const regexp = (layer as { regexp?: unknown }).regexp
  if (!(regexp instanceof RegExp)) return false
  const Made = (layer as object).constructor as new (path: unknown, options: object, fn: Function) => Layer
  try {
    const probe = new Made(
      mountpath,
      { sensitive: !regexp.flags.includes('i'), strict: false, end: false },
      () => {},
    )
    const made = (probe as { regexp?: unknown }).regexp
    return made instanceof RegExp && made.source === regexp.source && made.flags === regexp.flags
  } catch {
    return false
  }
}

function pathText(path: unknown): string {
  return JSON.stringify(path, (_k, v) => (v instanceof RegExp ? String(v) : v)) ?? ''
}

/** Records that `listener` calls `app` for every request it passes on (`cache.front(app)`). */
export function frontOf(listener: Function, app: unknown): void {
  noteFrontOf(listener, [app])
}

/**
 * A layer's place in its router: its index, every layer before it (what a request passed on its
 * way there, the content of routers included), the router's param callbacks, and the layer itself
 * (its path pattern and function). `undefined` when the layer is not in the router.
 */
function describeLayer(router: Router, layer: Layer): string | undefined {
  const stack = router.stack as Layer[] | undefined
  if (!Array.isArray(stack)) return undefined
  const index = stack.indexOf(layer)
  if (index === -1) return undefined
  return joined(layer, index, before(router, index), paramsOf(router), ownText(layer))
}

/**
 * The last text each layer's place was described with, and its parts: the same parts (the
 * memoized strings `before` and `ownText` return) give back the same string, whose hash V8 keeps.
 */
const places = new WeakMap<
  Layer,
  { index: number; before: string; params: string; own: string; text: string }
>()

function joined(layer: Layer, index: number, prior: string, params: string, own: string): string {
  const last = places.get(layer)
  if (
    last !== undefined &&
    last.index === index &&
    last.before === prior &&
    last.params === params &&
    last.own === own
  )
    return last.text
  const text = `${index}:${prior}:${params}:${own}`
  places.set(layer, { index, before: prior, params, own, text })
  return text
}

/** Each layer's own description (not deep), checked against its functions on every use. */
const ownTexts = new WeakMap<Layer, { functions: unknown[]; text: string }>()

function ownText(layer: Layer): string {
  const known = ownTexts.get(layer)
  if (known !== undefined && same(layer, known.functions, false)) return known.text
  const text = layerText(layer, false)
  ownTexts.set(layer, { functions: functionsOf(layer, false), text })
  return text
}

/** A route in its router (its place, path, methods, every function) and the cache's place in it. */
function describeRoute(router: Router, route: Route, inner: Layer): string | undefined {
  const stack = router.stack as Layer[] | undefined
  if (!Array.isArray(stack)) return undefined
  const layer = stack.find((l) => l.route === route)
  const place = layer === undefined ? undefined : describeLayer(router, layer)
  if (place === undefined) return undefined
  const at = (route.stack ?? []).indexOf(inner)
  const last = inRoutes.get(inner)
  if (last !== undefined && last.place === place && last.at === at) return last.text
  const text = `${place}@${at}`
  inRoutes.set(inner, { place, at, text })
  return text
}
/** The last description of each route layer's place (see {@link joined}). */
const inRoutes = new WeakMap<Layer, { place: string; at: number; text: string }>()

/** How deep `before` is in routers inside routers: a router that holds itself ends there. */
let depth = 0
const MAX_DEPTH = 32

/**
 * The hash of every layer of `router` before `index`, in order; a router among them with all it
 * holds. Checked against the stack on every call (each layer, its function, its route's
 * functions, a router's content), and described again from where it changed.
 */
function before(router: Router, index: number): string {
  const stack = router.stack as Layer[]
  let memo = prefixes.get(router)
  if (memo === undefined) {
    memo = { layers: [], functions: [], hashes: [''] }
    prefixes.set(router, memo)
  }
  if (depth >= MAX_DEPTH) return '?'
  depth++
  try {
    const checked = Math.min(index, memo.layers.length)
    let valid = 0
    while (
      valid < checked &&
      memo.layers[valid] === stack[valid] &&
      same(stack[valid]!, memo.functions[valid]!, true)
    )
      valid++
    if (valid < memo.layers.length && valid < checked) {
      memo.layers.length = valid
      memo.functions.length = valid
      memo.hashes.length = valid + 1
    }
    for (let i = memo.layers.length; i < index; i++) {
      const layer = stack[i]!
      memo.layers.push(layer)
      memo.functions.push(functionsOf(layer, true))
      memo.hashes.push(digest(`${memo.hashes[i]}\n${layerText(layer, true)}`))
    }
    return memo.hashes[index]!
  } finally {
    depth--
  }
}

/** A router as a layer's function: its content is part of what a request passes through it. */
function routerIn(layer: Layer): Router | undefined {
  const handle = layer.handle
  if (typeof handle !== 'function') return undefined
  const router = handle as Function & { stack?: unknown; handle?: unknown }
  return Array.isArray(router.stack) && typeof router.handle === 'function' ? router : undefined
}

/**
 * What a layer's description depends on: its function, its route's methods and functions, and
 * with `deep` a router's content.
 */
function functionsOf(layer: Layer, deep: boolean): unknown[] {
  const out: unknown[] = [layer.handle]
  const own = (layer.route as Route | undefined)?.stack
  if (Array.isArray(own)) for (const l of own) out.push((l as { method?: unknown }).method, l.handle)
  const router = deep ? routerIn(layer) : undefined
  if (router !== undefined) out.push(before(router, (router.stack as Layer[]).length))
  return out
}

function same(layer: Layer, functions: unknown[], deep: boolean): boolean {
  if (layer.handle !== functions[0]) return false
  const own = (layer.route as Route | undefined)?.stack
  let n = 1
  if (Array.isArray(own)) {
    for (const l of own) {
      if ((l as { method?: unknown }).method !== functions[n] || l.handle !== functions[n + 1]) return false
      n += 2
    }
  }
  const router = deep ? routerIn(layer) : undefined
  if (router !== undefined) {
    if (before(router, (router.stack as Layer[]).length) !== functions[n]) return false
    n++
  }
  return n === functions.length
}

/**
 * A layer as text: its path pattern and function, or a route's path, methods and functions; with
 * `deep`, a router's content too (for a layer the request went through and left).
 */
function layerText(layer: Layer, deep: boolean): string {
  const route = layer.route as Route | undefined
  if (route !== undefined && route !== null) {
    const methods = Object.keys(route.methods ?? {})
      .filter((m) => route.methods?.[m])
      .sort()
      .join(',')
    const functions = (route.stack ?? [])
      .map((l) => {
        const method = (l as { method?: unknown }).method
        return `${typeof method === 'string' ? method : '*'} ${typeof l.handle === 'function' ? describeFunction(l.handle) : '?'}`
      })
      .join(',')
    return `route ${JSON.stringify(route.path)} ${methods} [${functions}]`
  }
  const handle = layer.handle
  const text = `${pathPattern(layer)}:${typeof handle === 'function' ? describeFunction(handle) : '?'}`
  const router = deep ? routerIn(layer) : undefined
  return router === undefined
    ? text
    : `${text}[${paramsOf(router)}|${before(router, (router.stack as Layer[]).length)}]`
}

/** A router's param callbacks (`app.param`, `router.param`): they run before the layers they match. */
function paramsOf(router: Router): string {
  const params = (router as { params?: Record<string, unknown> }).params
  if (params === undefined || params === null || typeof params !== 'object') return ''
  const names = Object.keys(params)
  if (names.length === 0) return ''
  return names
    .sort()
    .map((name) => {
      const fns = params[name]
      const list = Array.isArray(fns) ? fns : [fns]
      return `${name}=${list.map((fn) => (typeof fn === 'function' ? describeFunction(fn) : '?')).join(',')}`
    })
    .join(';')
}

function digest(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 16)
}

/** The path a layer matches: Express 5 keeps it as given (`rawPath`), Express 4 as a RegExp. */
function pathPattern(layer: Layer): string {
  const raw = (layer as { rawPath?: unknown }).rawPath
  if (raw !== undefined) return pathText(raw)
  const regexp = (layer as { regexp?: unknown }).regexp
  return regexp instanceof RegExp ? String(regexp) : ''
}
