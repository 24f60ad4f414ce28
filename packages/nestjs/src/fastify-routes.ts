/**
 * The routes a Fastify instance's router holds, with the names of their constraints: every route,
 * whoever declared it (a Nest handler, `@RouteConstraints`, an `onRoute` hook that added a
 * constraint, a route declared on the instance itself), as final as the router has it. Read from
 * `printRoutes({ commonPrefix: false })`, Fastify's only public listing of the router, which
 * writes a route's constraints as JSON after its methods.
 */

/** A route as the router holds it: methods, URL pattern, names of its constraints. */
export interface FastifyRoute {
  methods: string[]
  url: string
  /** `undefined` when the printed constraints could not be read (treated as unknown ones). */
  constraints: string[] | undefined
}

interface PrintsRoutes {
  printRoutes(options: { commonPrefix: boolean }): string
}

/** One unit of the tree's indentation, then a node's connector. */
const INDENT = /^(?:│ {3}| {4})/u
const CONNECTOR = /^[├└]── /u
/** `<url> (<METHODS>)` then optional ` {…constraints}`. */
const ROUTE = /^(.*?) \(([A-Z0-9_-]+(?:, [A-Z0-9_-]+)*)\)(?: (\{.*\}))?$/

/** Every route of `instance`, or `undefined` when it cannot list them. */
export function fastifyRoutes(instance: unknown): FastifyRoute[] | undefined {
  const printing = instance as Partial<PrintsRoutes> | null
  if (typeof printing?.printRoutes !== 'function') return undefined
  let text: string
  try {
    text = printing.printRoutes({ commonPrefix: false })
  } catch {
    return undefined
  }
  const routes: FastifyRoute[] = []
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
    const key = route === null ? rest : route[1]!
    if (connector !== null) paths[depth] = (depth === 0 ? '' : (paths[depth - 1] ?? '')) + key
    if (route === null) continue
    routes.push({
      methods: route[2]!.split(', '),
      url: paths[depth] ?? key,
      constraints: constraintNames(route[3]),
    })
  }
  // A listing with lines but no route read from them: a format this reading does not know.
  return routes.length === 0 && text.trim() !== '' ? undefined : routes
}

function constraintNames(json: string | undefined): string[] | undefined {
  if (json === undefined) return []
  try {
    const parsed: unknown = JSON.parse(json)
    return parsed !== null && typeof parsed === 'object' ? Object.keys(parsed) : undefined
  } catch {
    return undefined
  }
}

/**
 * The routes (`METHOD url`, without a trailing slash) whose handler Fastify chooses by something of
 * the request other than its host and URL: those with such a constraint, and every other route of
 * their method and URL (chosen when that header is absent or names none of them). Read once per
 * instance, when its first cached request arrives (the routes are final by then).
 */
export function fastifyRoutesChosenByRequest(instance: object): ReadonlySet<string> {
  let chosen = chosenByInstance.get(instance)
  if (chosen === undefined) {
    const found = new Set<string>()
    const routes = fastifyRoutes(instance)
    // Routes that cannot be listed: any of them may be chosen by the request.
    if (routes === undefined) found.add(EVERY_ROUTE)
    for (const route of routes ?? [])
      if (route.constraints === undefined || route.constraints.some((name) => name !== 'host'))
        for (const method of route.methods) found.add(routeName(method, route.url))
    chosen = found
    chosenByInstance.set(instance, chosen)
  }
  return chosen
}

const chosenByInstance = new WeakMap<object, ReadonlySet<string>>()

/** In {@link fastifyRoutesChosenByRequest}'s answer: the router's routes could not be read. */
export const EVERY_ROUTE = '*'

/**
 * How {@link fastifyRoutesChosenByRequest} names a route: without a trailing slash, its parameters
 * unnamed (the listing writes a node's names together, `:id|:slug`), a wildcard route as any
 * (the listing loses a wildcard's static prefix). Coarser than the router, never finer: at worst a
 * route is `private` for a constraint on a similar one.
 */
export function routeName(method: string, url: string): string {
  if (url.endsWith('*')) return `${method} *`
  const bare = url.length > 1 && url.endsWith('/') ? url.slice(0, -1) : url
  return `${method} ${bare.replace(PARAMETERS, ':')}`
}

const PARAMETERS = /:[^/]*/g
