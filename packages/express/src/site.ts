import { createHash } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { sourceFingerprint } from '@cache/core'
import { dispatchPosition, type Layer, type RouterFrame, routerOf } from './dispatch.js'

/*
 * Where a cache sits in an app: its site. A stored response is replayed only at the site that
 * made it, because what a request passed on its way there is part of the answer. A guard that
 * turns a request away with `next('route')` or `next('router')` sends it on to another route for
 * the same URL; that route's cache must never answer it with what the guarded route stored.
 *
 * A site names, from the app down: for each router level on the dispatch path the layer that
 * mounted the next router (its index in its router's stack, its path pattern and function), then
 * either the cache's own layer or the route that runs it (index, path, methods, and every
 * function of the route's stack, each as `name#<fingerprint of its source>`, plus the position in
 * it). Processes running the same code compute the same site; two different routes never share
 * one. The site is hashed into a short component of every key (`@<12 hex>`); the per-URL
 * invalidation scope does not hold it, so invalidation reaches every site.
 */

type Router = { stack?: unknown }
type Route = { path?: unknown; methods?: Record<string, unknown>; stack?: Layer[] }

/** Functions known under another identity: a handler wrapper stands for the handler it wraps. */
const identities = new WeakMap<Function, string>()
/** `name#fingerprint` of each function described so far. */
const described = new WeakMap<Function, string>()
/** Each layer's description in the router that holds it, checked against the stack on every use. */
const layerTexts = new WeakMap<Layer, { router: Router; index: number; text: string }>()
/** Each route's description (without the cache's position in it), checked against its stack. */
const routeTexts = new WeakMap<Route, { router: Router; index: number; size: number; text: string }>()
/** Site descriptions and their hash: a bounded memo (an app has a bounded number of sites). */
const hashes = new Map<string, string>()
const MAX_HASHES = 10_000
/** Hashes of sites seen in this process: `invalidate(url)` deletes the entry of each. */
const seen = new Set<string>()
const MAX_SEEN = 1_000

/** Gives a handler wrapper the identity of the handler it wraps. */
export function identifyAs(wrapper: Function, handler: Function): string {
  const identity = describeFunction(handler)
  identities.set(wrapper, identity)
  return identity
}

/** The identity of a function as a site describes it. */
export function describeFunction(fn: Function): string {
  const known = identities.get(fn) ?? described.get(fn)
  if (known !== undefined) return known
  const text = `${fn.name}#${sourceFingerprint(fn)}`
  described.set(fn, text)
  return text
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
): string | undefined {
  const app = (req as { app?: unknown }).app
  // Outside Express there is no routing to tell apart: the handler is the place.
  if (app === undefined || app === null) return hashSite(`direct|${identity ?? ''}`)
  const tracked = trackedLevels(req)
  const levels = tracked === undefined ? searchedLevels(req, app as Record<string, any>, anchor) : tracked
  if (levels === undefined || levels === null) return undefined
  return hashSite(`${levels}|${identity ?? ''}`)
}

/** Hashes of the sites seen in this process, for deleting the entries of an invalidated URL. */
export function seenSites(): readonly string[] {
  return [...seen]
}

function hashSite(description: string): string {
  let hash = hashes.get(description)
  if (hash === undefined) {
    hash = createHash('sha256').update(description).digest('hex').slice(0, 12)
    if (hashes.size >= MAX_HASHES) hashes.clear()
    hashes.set(description, hash)
  }
  if (seen.size < MAX_SEEN) seen.add(hash)
  return hash
}

/**
 * The site from the dispatch this package observed for `req`: `undefined` when it was not
 * observed, `null` when the layer that called the cache is not in the router it was dispatched in.
 */
function trackedLevels(req: IncomingMessage): string | null | undefined {
  const position = dispatchPosition(req)
  if (position === undefined) return undefined
  const { layer, frame } = position
  const route = (req as { route?: Route }).route
  const inner =
    route !== undefined && route !== null && Array.isArray(route.stack) && route.stack.includes(layer)
      ? describeRoute(frame.router, route, layer)
      : describeLayer(frame.router, layer)
  if (inner === undefined) return null
  const parts = [inner]
  for (let f: RouterFrame | undefined = frame; f?.parent !== undefined; f = f.parent) {
    const mount = f.mount === undefined ? undefined : describeLayer(f.parent.router, f.mount)
    if (mount === undefined) return null
    parts.push(mount)
  }
  return parts.reverse().join('/')
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
): string | undefined {
  if (app.parent !== undefined) return undefined
  const root = routerOf(app) as Router | undefined
  const route = (req as { route?: Route }).route
  const found: string[] = []
  const visited = new Set<unknown>()
  const visit = (router: Router, outer: string[]) => {
    if (visited.has(router) || !Array.isArray(router.stack) || found.length > 1) return
    visited.add(router)
    for (const layer of router.stack as Layer[]) {
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
        for (const l of inner) found.push([...outer, describeRoute(router, route, l)].join('/'))
      } else if (anchor !== undefined && layer.handle === anchor) {
        found.push([...outer, describeLayer(router, layer)].join('/'))
      } else if (
        typeof handle === 'function' &&
        Array.isArray(handle.stack) &&
        typeof handle.handle === 'function'
      ) {
        visit(handle as Router, [...outer, describeLayer(router, layer) ?? '?'])
      }
    }
  }
  if (root !== undefined) visit(root, [])
  return found.length === 1 ? found[0] : undefined
}

/** `index:pattern:function` of a layer in its router, or `undefined` when it is not there. */
function describeLayer(router: Router, layer: Layer): string | undefined {
  const stack = router.stack as Layer[] | undefined
  if (!Array.isArray(stack)) return undefined
  const known = layerTexts.get(layer)
  if (known !== undefined && known.router === router && stack[known.index] === layer) return known.text
  const index = stack.indexOf(layer)
  if (index === -1) return undefined
  const handle = layer.handle
  const text = `${index}:${pathPattern(layer)}:${typeof handle === 'function' ? describeFunction(handle) : '?'}`
  layerTexts.set(layer, { router, index, text })
  return text
}

/** A route in its router (index, path, methods, every function) and the cache's place in it. */
function describeRoute(router: Router, route: Route, inner: Layer): string | undefined {
  const stack = router.stack as Layer[] | undefined
  const own = route.stack ?? []
  if (!Array.isArray(stack)) return undefined
  let known = routeTexts.get(route)
  if (
    known === undefined ||
    known.router !== router ||
    known.size !== own.length ||
    (stack[known.index] as Layer | undefined)?.route !== route
  ) {
    const index = stack.findIndex((l) => l.route === route)
    if (index === -1) return undefined
    const methods = Object.keys(route.methods ?? {})
      .filter((m) => route.methods?.[m])
      .sort()
      .join(',')
    const functions = own
      .map((l) => {
        const method = (l as { method?: unknown }).method
        return `${typeof method === 'string' ? method : '*'} ${typeof l.handle === 'function' ? describeFunction(l.handle) : '?'}`
      })
      .join(',')
    known = {
      router,
      index,
      size: own.length,
      text: `${index}:route ${JSON.stringify(route.path)} ${methods} [${functions}]`,
    }
    routeTexts.set(route, known)
  }
  return `${known.text}@${own.indexOf(inner)}`
}

/** The path a layer matches: Express 5 keeps it as given (`rawPath`), Express 4 as a RegExp. */
function pathPattern(layer: Layer): string {
  const raw = (layer as { rawPath?: unknown }).rawPath
  if (raw !== undefined) return JSON.stringify(raw, (_k, v) => (v instanceof RegExp ? String(v) : v))
  const regexp = (layer as { regexp?: unknown }).regexp
  return regexp instanceof RegExp ? String(regexp) : ''
}
