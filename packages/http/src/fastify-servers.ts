import { processLogger } from '@cache/core/backend'
import { frontOf } from './express-routing.js'

/*
 * Fastify apps (and Nest apps on platform-fastify) sharing one Node server: a `serverFactory`
 * returning the same `http.Server` to several apps, whose listener picks an app per request (by
 * host, region, role). Apps made by one factory describe alike (same routes, same handlers' code,
 * same address): only their closures differ, so where an entry is made cannot tell them apart, and
 * no order of making them is the same in every replica. The rule: two or more apps on one server
 * bypass (`detail=site`, warned once per server) unless each has a `keyPrefix` of its own that is
 * no other's and does not start another's (nor is started by one); their entries are then made
 * under their prefixes. An app noted once its server already serves caches only if the server
 * calls its routing alone (or the Nest front of it).
 */

/** What is known of one app on a server. */
interface NotedApp {
  /** The root instance (whose `routing` the server calls when it calls this app alone). */
  root: { routing?: unknown }
  /** The `keyPrefix`es of the app's cached routes. */
  prefixes: Set<string>
  /** Where the prefixes come from: the plugin's `onRoute` hook (known once the app started), or a declaration. */
  source: 'routes' | 'declared' | 'none'
  /** Noted once the server already listened: the other apps on it may never be known. */
  late: boolean
}

interface ServerApps {
  apps: Map<object, NotedApp>
  warned: boolean
}

const servers = new WeakMap<object, ServerApps>()

/** The root instance of a Fastify instance or of one of its encapsulated contexts, and its server. */
function rootOf(instance: unknown): { root: object; server: object } | undefined {
  if (instance === null || typeof instance !== 'object') return undefined
  const server = (instance as { server?: unknown }).server
  if (server === null || typeof server !== 'object') return undefined
  // Encapsulated contexts inherit from the root instance, which holds `server` itself.
  let root: object = instance
  while (!Object.hasOwn(root, 'server')) {
    const parent = Object.getPrototypeOf(root) as object | null
    if (parent === null) break
    root = parent
  }
  return { root, server }
}

/**
 * Notes `instance`'s app on its server (once per app): as the cache is installed, from the
 * plugin's registration or Nest's module and interceptor, or as its first request is looked up
 * when nothing did before (late).
 */
export function noteFastifyApp(instance: unknown): void {
  appOf(instance)
}

function appOf(instance: unknown): { app: NotedApp; apps: ServerApps; server: object } | undefined {
  const found = rootOf(instance)
  if (found === undefined) return undefined
  const { root, server } = found
  let apps = servers.get(server)
  if (apps === undefined) {
    apps = { apps: new Map(), warned: false }
    servers.set(server, apps)
  }
  let app = apps.apps.get(root)
  if (app === undefined) {
    app = {
      root: root as NotedApp['root'],
      prefixes: new Set(),
      source: 'none',
      late: (server as { listening?: unknown }).listening === true,
    }
    apps.apps.set(root, app)
  }
  return { app, apps, server }
}

/**
 * Notes a `keyPrefix` of a cached route of `instance`'s app (`@cache/fastify`'s `onRoute` hook):
 * the app's prefixes are known once it started (every route is made by then).
 */
export function noteFastifyAppPrefix(instance: unknown, keyPrefix: string): void {
  const found = appOf(instance)
  if (found === undefined) return
  if (found.app.source === 'none') found.app.source = 'routes'
  found.app.prefixes.add(keyPrefix)
}

/**
 * Declares every `keyPrefix` of `instance`'s app's cached handlers at once (Nest, from the
 * handlers' `@CacheResponse` options, before any request): known from now on.
 */
export function declareFastifyAppPrefixes(instance: unknown, keyPrefixes: Iterable<string>): void {
  const found = appOf(instance)
  if (found === undefined) return
  found.app.source = 'declared'
  for (const prefix of keyPrefixes) found.app.prefixes.add(prefix)
}

/** Whether two or more apps were noted on `server`: a front before them cannot tell whose a request is. */
export function fastifyServerShared(server: unknown): boolean {
  if (server === null || typeof server !== 'object') return false
  return (servers.get(server)?.apps.size ?? 0) > 1
}

/**
 * `'site'` when a request of `instance`'s app, cached under `keyPrefix`, must bypass because of
 * the apps it shares its server with (see the rule above), else `undefined`.
 */
export function fastifySharedServerBypass(instance: unknown, keyPrefix: string): 'site' | undefined {
  const found = appOf(instance)
  if (found === undefined) return undefined
  const { app, apps } = found
  if (app.late && !fastifyServerCallsAlone(instance)) return 'site'
  if (apps.apps.size < 2) return undefined
  if (prefixesApart(apps, app, keyPrefix)) return undefined
  if (!apps.warned) {
    apps.warned = true
    processLogger().warn(
      `@cache/http: ${apps.apps.size} Fastify apps share one server (a serverFactory returning the same server): made by the same code they cannot be told apart, so their responses are not cached (Cache-Status detail=site). Give each app a keyPrefix of its own (none the start of another) to cache them. Logged once per server`,
    )
  }
  return 'site'
}

/** Whether every app on the server has known prefixes, none equal to nor the start of another app's. */
function prefixesApart(apps: ServerApps, app: NotedApp, keyPrefix: string): boolean {
  const all = [...apps.apps.values()]
  for (const one of all) if (!prefixesKnown(one)) return false
  for (let i = 0; i < all.length; i++) {
    const mine = all[i] === app ? new Set([...all[i]!.prefixes, keyPrefix]) : all[i]!.prefixes
    for (let j = 0; j < all.length; j++) {
      if (i === j) continue
      for (const a of mine)
        for (const b of all[j]!.prefixes) if (a.startsWith(b) || b.startsWith(a)) return false
    }
  }
  return true
}

function prefixesKnown(app: NotedApp): boolean {
  if (app.source === 'declared') return true
  // The plugin's routes are all made once Fastify started the app.
  return app.source === 'routes' && fastifyState(app.root)?.started === true
}

/** Fastify's state of an instance (`started` once every plugin loaded). */
function fastifyState(instance: object): { started?: boolean } | undefined {
  for (let at: object | null = instance; at !== null; at = Object.getPrototypeOf(at)) {
    const symbol = Object.getOwnPropertySymbols(at).find((s) => s.description === 'fastify.state')
    if (symbol !== undefined) return (instance as Record<symbol, { started?: boolean }>)[symbol]
  }
  return undefined
}

/**
 * Whether `instance`'s server calls its app's routing alone: its only `request` listener is the
 * app's `routing`, or a front whose only app is that routing.
 */
export function fastifyServerCallsAlone(instance: unknown): boolean {
  const found = rootOf(instance)
  if (found === undefined) return false
  const routing = (found.root as { routing?: unknown }).routing
  const server = found.server as { listeners?: (event: string) => Function[] }
  if (typeof routing !== 'function' || typeof server.listeners !== 'function') return false
  const listeners = server.listeners('request')
  if (listeners.length !== 1) return false
  const only = listeners[0]
  if (only === routing) return true
  const apps = typeof only === 'function' ? frontOf(only) : undefined
  return apps?.length === 1 && apps[0] === routing
}
