/**
 * The routes a Fastify instance's router holds, with the names of their constraints: every route,
 * whoever declared it (a Nest handler, `@RouteConstraints`, an `onRoute` hook that added a
 * constraint, a route declared on the instance itself), as final as the router has it. Read from
 * `printRoutes({ commonPrefix: false })`, Fastify's only public listing of the router, which
 * writes a route's constraints as JSON after its methods, and from an `onRoute` hook installed as
 * early as Nest lets the module run (the listing drops some routes: a constrained wildcard beside
 * a catch-all prints as `*`).
 */

import { METHODS } from 'node:http'
import { fastifyInstanceOptions } from '@cache/http'

/** A route as the router holds it: methods, URL pattern, names of its constraints. */
export interface FastifyRoute {
  methods: string[]
  url: string
  /** `undefined` when the printed constraints could not be read (treated as unknown ones). */
  constraints: string[] | undefined
}

interface PrintsRoutes {
  printRoutes(options: { commonPrefix: boolean; method?: string }): string
  supportedMethods?: unknown
}

/** One unit of the tree's indentation, then a node's connector. */
const INDENT = /^(?:│ {3}| {4})/u
const CONNECTOR = /^[├└]── /u
/** `<url> (<METHOD>)` then optional ` {…constraints}`. */
const ROUTE = /^(.*?) \(([A-Z0-9_-]+(?:, [A-Z0-9_-]+)*)\)(?: (\{.*\}))?$/
/** A route's line that {@link ROUTE} does not read (its constraints printed as `undefined`: a strategy named `toJSON`). */
const ROUTE_LIKE = / \([A-Z0-9_-]+(?:, [A-Z0-9_-]+)*\)(?: |$)/

/**
 * Every route of `instance`, or `undefined` when it cannot list them. Listed method by method:
 * find-my-way's listing of all methods at once rebuilds the routes on its built-in strategies,
 * which refuse some of Nest's own (a handler of several versions), and merges routes that print
 * alike.
 */
function fastifyRoutes(instance: unknown): FastifyRoute[] | undefined {
  const printing = instance as Partial<PrintsRoutes> | null
  if (typeof printing?.printRoutes !== 'function') return undefined
  const supported = printing.supportedMethods
  const methods = Array.isArray(supported) && supported.length > 0 ? supported.map(String) : METHODS
  const routes: FastifyRoute[] = []
  for (const method of methods) {
    let text: string
    try {
      text = printing.printRoutes({ commonPrefix: false, method })
    } catch {
      return undefined
    }
    const listed = readListing(instance, text)
    if (listed === undefined) return undefined
    routes.push(...listed)
  }
  return routes
}

/** The routes of one method's listing, or `undefined` when it cannot be read. */
function readListing(instance: unknown, text: string): FastifyRoute[] | undefined {
  const routes: FastifyRoute[] = []
  /** Each listed route's method, URL and constraints as printed, and how many print as each. */
  const shapes: string[] = []
  const printed = new Map<string, number>()
  // Without a common prefix, a node's key is its path below the nearest node above it that is a route.
  const paths: string[] = []
  for (const line of text.split('\n')) {
    let rest = line
    let depth = 0
    for (let unit = INDENT.exec(rest); unit !== null; unit = INDENT.exec(rest)) {
      rest = rest.slice(unit[0].length)
      depth++
    }
    const connector = CONNECTOR.exec(rest)
    // A node's line after its connector; another route of the same node is indented one unit deeper.
    if (connector !== null) rest = rest.slice(connector[0].length)
    else depth--
    if (depth < 0 || rest === '') continue
    const route = ROUTE.exec(rest)
    if (route === null && ROUTE_LIKE.test(rest)) return undefined
    const key = route === null ? rest : route[1]!
    if (connector !== null) paths[depth] = (depth === 0 ? '' : (paths[depth - 1] ?? '')) + key
    if (route === null) continue
    const methods = route[2]!.split(', ')
    const url = paths[depth] ?? key
    routes.push({ methods, url, constraints: constraintNames(instance, methods, url, route[3]) })
    const shape = `${route[2]} ${url} ${route[3] ?? ''}`
    shapes.push(shape)
    printed.set(shape, (printed.get(shape) ?? 0) + 1)
  }
  // Fastify refuses a second route of one method, URL and constraints: two that print alike differ
  // by constraints JSON dropped (a predicate beside Nest's `version`), which hasRoute cannot tell
  // apart when one of them has exactly the printed ones.
  for (let i = 0; i < routes.length; i++)
    if (printed.get(shapes[i]!)! > 1 && routes[i]!.constraints?.length !== 0)
      routes[i]!.constraints = undefined
  // A listing with lines but no route read from them: a format this reading does not know.
  const trimmed = text.trim()
  return routes.length === 0 && trimmed !== '' && trimmed !== '(empty tree)' ? undefined : routes
}

/**
 * The names of a listed route's constraints, `undefined` when they are not all known. JSON drops a
 * constraint whose value is a function or a Symbol: `{}` alone, or `{"version":"1"}` for a route
 * that also has a predicate. So the router is asked whether it holds a route of exactly the printed
 * constraints (find-my-way compares them whole); when it does not, some are missing.
 */
function constraintNames(
  instance: unknown,
  methods: readonly string[],
  url: string,
  json: string | undefined,
): string[] | undefined {
  if (json === undefined) return []
  let parsed: unknown
  try {
    parsed = JSON.parse(json)
  } catch {
    return undefined
  }
  if (parsed === null || typeof parsed !== 'object' || Object.keys(parsed).length === 0) return undefined
  const router = instance as Partial<HasRoute>
  if (typeof router.hasRoute !== 'function') return undefined
  for (const method of methods) {
    try {
      if (!router.hasRoute({ method, url, constraints: parsed as Record<string, unknown> })) return undefined
    } catch {
      return undefined
    }
  }
  return Object.keys(parsed)
}

interface HasRoute {
  hasRoute(route: { method: string; url: string; constraints: Record<string, unknown> }): boolean
}

/** A route Fastify was given after {@link watchFastifyRoutes}: its options object, final once Fastify is ready. */
interface RouteOptionsSeen {
  method?: string | string[]
  url?: string
  constraints?: unknown
}

/** What {@link watchFastifyRoutes} learned of an instance. */
interface Watched {
  routes: RouteOptionsSeen[]
  /** A `host` strategy of the application's own was added (before or after the watch began). */
  customHost: boolean
  /**
   * A wildcard route was declared before the watch began: the listing names every wildcard node
   * `*`, so a constrained one beside another (`/page/*` beside `/*`) is lost there.
   */
  wildcardUnseen: boolean
}

const watched = new WeakMap<object, Watched>()

interface FastifyWatchable {
  addHook(name: 'onRoute', hook: (route: RouteOptionsSeen) => void): unknown
  hasConstraintStrategy?(name: string): boolean
  addConstraintStrategy?(strategy: { name?: unknown }): unknown
}

/**
 * Starts knowing every route of `instance` as Fastify gets it: an `onRoute` hook keeps each
 * route's options (read later: a hook registered after this one may still add a constraint to the
 * same object), which also finds the routes the listing of {@link fastifyRoutes} drops (a
 * constrained wildcard beside a catch-all). Whether `host` is find-my-way's built-in strategy is
 * settled now, before Nest registers its routes: a `host` strategy is known to exist when one was
 * added or a route uses the built-in one, so with no route using `host` yet it is the
 * application's own; with such a route (declared on the instance before Nest's) it cannot be told,
 * and is taken as the application's. A `host` strategy added later is noted as it is added. Run once per
 * instance, as early as Nest lets a provider run (before `app.init()` registers routes).
 */
export function watchFastifyRoutes(instance: unknown): void {
  const fastify = instance as Partial<FastifyWatchable> | null
  if (fastify === null || typeof fastify !== 'object' || typeof fastify.addHook !== 'function') return
  if (watched.has(fastify)) return
  const before = fastifyRoutes(fastify)
  const state: Watched = {
    routes: [],
    customHost: false,
    wildcardUnseen: before === undefined || before.some((route) => route.url.includes('*')),
  }
  try {
    fastify.addHook('onRoute', (route) => void state.routes.push(route))
  } catch {
    // Started already: the routes are final, and only the listing knows them.
    return
  }
  watched.set(fastify, state)
  // Yes with a route using `host` declared before Nest's too: that cannot be told from a strategy
  // of the application's, and is taken as one (private, no front).
  if (fastify.hasConstraintStrategy?.('host') === true) state.customHost = true
  const add = fastify.addConstraintStrategy
  if (typeof add === 'function')
    fastify.addConstraintStrategy = function (this: unknown, strategy) {
      if (strategy?.name === 'host') state.customHost = true
      return add.call(this, strategy)
    }
}

/** A route whose handler Fastify chooses by the request besides its URL, and the constraint that does. */
export interface ChoosingRoute {
  route: string
  constraint: string
}

/**
 * The first route of `instance` Fastify chooses by something of the request besides its URL and
 * find-my-way's built-in host: a constraint of another name (`except` aside), or `host` when the
 * application's host strategy is its own. From the listing and the routes seen by
 * {@link watchFastifyRoutes}; `'unreadable'` when the listing cannot be read.
 *
 * @param except a constraint name the caller keys on itself (the front: `version` under Nest's
 *   header or media-type versioning).
 */
export function fastifyChoosingRoute(
  instance: object,
  except?: string,
): ChoosingRoute | 'unreadable' | undefined {
  const listed = fastifyRoutes(instance)
  if (listed === undefined) return 'unreadable'
  const state = watched.get(instance)
  // Wildcard routes the watch did not see (declared before it, or no watch): the listing may have
  // lost a constrained one.
  if ((state?.wildcardUnseen ?? true) && listed.some((route) => route.url.includes('*'))) return 'unreadable'
  const routes: FastifyRoute[] = [...listed]
  for (const seen of state?.routes ?? [])
    routes.push({
      methods: Array.isArray(seen.method) ? seen.method.map(String) : [String(seen.method)],
      url: String(seen.url),
      constraints:
        seen.constraints === undefined || seen.constraints === null
          ? []
          : typeof seen.constraints === 'object'
            ? Object.keys(seen.constraints)
            : undefined,
    })
  const customHost = hostIsCustom(instance, state, routes)
  for (const route of routes) {
    const constraint =
      route.constraints === undefined
        ? 'that cannot be read'
        : route.constraints.find((name) => name !== except && (name !== 'host' || customHost))
    if (constraint !== undefined) return { route: `${route.methods.join(',')} ${route.url}`, constraint }
  }
  return undefined
}

/**
 * Whether `host` is a strategy of the application's own: given in Fastify's options, or as
 * {@link watchFastifyRoutes} noted it; unwatched, whenever a route uses `host` (it may be).
 */
function hostIsCustom(instance: object, state: Watched | undefined, routes: FastifyRoute[]): boolean {
  const options = fastifyInstanceOptions(instance)
  const router = options?.routerOptions as { constraints?: Record<string, unknown> } | undefined
  const given = options?.constraints as Record<string, unknown> | undefined
  if (given?.host !== undefined || router?.constraints?.host !== undefined) return true
  if (state !== undefined) return state.customHost
  return routes.some((route) => route.constraints?.includes('host') === true)
}

/**
 * Whether any route of `instance` is chosen by the request besides its URL and host (see
 * {@link fastifyChoosingRoute}): then every cached handler of the application is `private` under
 * `cacheControl`, whichever route a request took (routes are matched case-insensitively, by
 * parameters or wildcards, so a page may be one of them without its route saying so). Read once
 * per instance, when its first cached request arrives (the routes are final by then).
 */
export function fastifyAppChosenByRequest(instance: object): boolean {
  let chosen = chosenByInstance.get(instance)
  if (chosen === undefined) {
    chosen = fastifyChoosingRoute(instance) !== undefined
    chosenByInstance.set(instance, chosen)
  }
  return chosen
}

const chosenByInstance = new WeakMap<object, boolean>()
