import { isMountedApp, routerOf } from './dispatch.js'

/*
 * Whether a HEAD request may be answered from the GET entry by a cache that sits before the
 * routes (`app.use(cacheResponse())`): Express routes HEAD to the first route of the path that
 * handles GET or HEAD, and that route runs its GET handlers only when it has no HEAD handler of
 * its own. An app with `app.head('/doc', …)` before `app.get('/doc', …)` answers HEAD with the
 * former: replaying the GET entry would answer what the app never does.
 */

/** The part of Express's `Route` read here. */
interface RouteLike {
  methods?: Record<string, boolean | undefined>
  /** The route's handlers, each on a layer of its own. */
  stack?: readonly LayerLike[]
}

/** The part of Express's `Layer` read here (Express 4's, or `router` 2's under Express 5). */
interface LayerLike {
  handle?: unknown
  route?: RouteLike | null
  /** Express 4. */
  regexp?: RegExp & { fast_slash?: boolean; fast_star?: boolean }
  /** Express 5: `match` returns the match and leaves the layer alone. */
  matchers?: unknown[]
  match?: (path: string) => { path: string } | false
}

/** How many layers one HEAD request reads at most; past it, the app answers. */
const MAX_READ_LAYERS = 10_000

/**
 * `true` when Express would route the HEAD request `req` to a route with a HEAD handler of its
 * own (a route before any that handles its path's GET), or when that cannot be told (a routing
 * table larger than {@link MAX_READ_LAYERS}): the app answers it, not the GET entry. Read from
 * the top-level app with the path the client sent; routers mounted with `use` are read; a router or app used as a route handler
 * (`app.get(path, router)`) is not, and HEAD requests it gets go to the app; a sub-app
 * mounted on the path (`app.use('/x', subApp)`) is not, and its HEAD requests go to the app. Costs a walk of the routing table on each HEAD
 * request that reaches such a cache, none on GET.
 */
export function headRoutedApart(app: unknown, originalUrl: string): boolean {
  const router = routerOf(app as never) as { stack?: unknown } | undefined
  if (router === undefined || !Array.isArray(router.stack)) return false
  const query = originalUrl.indexOf('?')
  const path = query === -1 ? originalUrl : originalUrl.slice(0, query)
  const budget = { left: MAX_READ_LAYERS }
  return routeOf(router.stack as LayerLike[], path, budget, 0) === 'head'
}

/**
 * Which handlers the first route of `stack` (and of the routers it mounts) that handles a HEAD
 * of `path` runs: `'head'` its own, `'get'` the GET ones, `undefined` when none does.
 */
function routeOf(
  stack: readonly LayerLike[],
  path: string,
  budget: { left: number },
  depth: number,
): 'head' | 'get' | undefined {
  if (depth > 32) return 'head'
  for (const layer of stack) {
    if (--budget.left < 0) return 'head'
    const route = layer.route
    const matched = matchedPath(layer, path)
    if (matched === undefined) continue
    if (route !== undefined && route !== null) {
      const methods = route.methods ?? {}
      if (methods.head === true) return 'head'
      if (methods.get === true || methods._all === true) return handsOn(route) ? 'head' : 'get'
      continue
    }
    // A sub-app mounted with `app.use(path, subApp)`: its routes are not read, so it answers.
    if (isMountedApp(layer.handle)) return 'head'
    // A router mounted with `use`: its layers, on the rest of the path.
    const handle = layer.handle as ((...args: unknown[]) => unknown) & { stack?: unknown; handle?: unknown }
    if (typeof handle === 'function' && Array.isArray(handle.stack) && typeof handle.handle === 'function') {
      let rest = path.slice(matched.length)
      if (!rest.startsWith('/')) rest = `/${rest}`
      const inner = routeOf(handle.stack as LayerLike[], rest, budget, depth + 1)
      if (inner !== undefined) return inner
    }
  }
  return undefined
}

/**
 * Whether one of `route`'s handlers is a router or an app (`app.get('/b', router)`): it routes
 * HEAD by its own table, which is not read here, so the app answers.
 */
function handsOn(route: RouteLike): boolean {
  const stack = route.stack
  if (!Array.isArray(stack)) return false
  for (const layer of stack) {
    const handle = layer.handle as ((...args: unknown[]) => unknown) & { stack?: unknown; handle?: unknown }
    if (typeof handle === 'function' && (Array.isArray(handle.stack) || typeof handle.handle === 'function'))
      return true
  }
  return false
}

/** The part of `path` the layer matches (`''` for `use('/')`), or `undefined`. */
function matchedPath(layer: LayerLike, path: string): string | undefined {
  if (Array.isArray(layer.matchers) && typeof layer.match === 'function') {
    const match = layer.match(path)
    return match === false ? undefined : match.path
  }
  const regexp = layer.regexp
  if (regexp === undefined) return undefined
  if (regexp.fast_slash) return ''
  if (regexp.fast_star) return path
  const match = regexp.exec(path)
  return match === null ? undefined : match[0]
}
