import type { IncomingMessage } from 'node:http'

/**
 * What ran between the cache passing a request on and its response, as Express dispatched it.
 *
 * A stored response may only be replayed to requests that pass every middleware the original
 * request passed. Whatever runs after the cache is skipped by a hit, so the cache must know
 * exactly what ran there: it observes Express's own dispatch, `Layer.prototype.handle_request`
 * (Express 4) or `handleRequest` (the `router` package of Express 5), wrapped once per copy of
 * Express on the first request a cache handles. For a request the cache is not watching, the
 * wrapper is one property read and a call.
 *
 * Routing structure is not counted: a route's dispatch, a mounted router's or sub-app's entry,
 * Express 4's built-in `query` and `expressInit`, and cache middleware itself. Every other function
 * is: middleware, route handlers, and `app.param` callbacks (counted whenever the app registered
 * one for a parameter of the layer being dispatched).
 */

/** Where the cache sits: as middleware (the app answers after it), or around the handler itself. */
export type CachePosition = 'middleware' | 'handler'

/** The part of Express's `Layer` that dispatch reads. */
interface Layer {
  handle: unknown
  route?: unknown
}
type Next = (error?: unknown) => void
type Dispatch = (this: Layer, req: IncomingMessage, res: unknown, next: Next) => unknown
type DispatchError = (this: Layer, error: unknown, req: IncomingMessage, res: unknown, next: Next) => unknown
type App = Record<string, any>

const WATCHES = Symbol('@cache/express dispatch watches')
type Watched = IncomingMessage & { [WATCHES]?: DispatchWatch[] }

/** The functions that `cacheResponse()` returns as middleware: transparent to other caches. */
const cacheMiddleware = new WeakSet<Function>()
/** Layer prototypes already wrapped (one per copy of Express 4 / of `router`). */
const wrappedLayers = new WeakSet<object>()
/** Apps whose Express was looked at; `true` when its dispatch is observed. */
const observedApps = new WeakMap<object, boolean>()
/** `Router.prototype.handle` of each copy seen: identifies a mounted router as structure. */
const routerHandles = new WeakSet<Function>()
/** Source of Express's own `query`, `expressInit` and `mounted_app` functions, per copy seen. */
const internalSources = new Set<string>()
const INTERNAL_NAMES = new Set(['query', 'expressInit', 'mounted_app'])

/**
 * One cache's view of one request's dispatch. Counts the app's functions that ran after the
 * cache, whether the one that answered passed the request on, and whether an error went by.
 */
export class DispatchWatch {
  private functions = 0
  private passedOn = false
  private failed = false
  private opaque = false
  /** Called whenever the verdict may have changed. */
  onChange: () => void = () => {}

  constructor(
    readonly position: CachePosition,
    /** Whether Express's dispatch is observed for this request (false outside Express). */
    readonly observed: boolean,
    private readonly skipped: ReadonlySet<Function>,
  ) {}

  /**
   * Why the response must not be stored, from what ran after the cache, or `undefined`:
   * `handler-error` when an error went through `next(error)`, an error handler or a throw;
   * `next` when the handler passed the request on; `middleware-after-cache` when any other
   * function ran between the cache and the handler, or when that cannot be known.
   */
  verdict(): string | undefined {
    if (this.failed) return 'handler-error'
    if (this.position === 'handler') {
      if (this.passedOn) return 'next'
      return this.functions > 0 ? 'middleware-after-cache' : undefined
    }
    // As middleware, exactly one function may run after the cache: the handler that answers.
    if (!this.observed || this.opaque || this.functions !== 1) return 'middleware-after-cache'
    return this.passedOn ? 'next' : undefined
  }

  /** The handler (or an error) failed. */
  fail(): void {
    this.failed = true
    this.onChange()
  }

  /** `next` for a handler the cache wraps: records that it passed on, or failed. */
  handlerNext(next: Next): Next {
    return (error?: unknown) => {
      if (isError(error)) this.failed = true
      else this.passedOn = true
      this.onChange()
      return next(error)
    }
  }

  entered(fn: Function, opaque: boolean): void {
    if (this.skipped.has(fn)) return
    this.functions++
    if (opaque) this.opaque = true
    this.onChange()
  }

  left(fn: Function, error: unknown): void {
    if (isError(error)) this.failed = true
    else if (!this.skipped.has(fn)) this.passedOn = true
    this.onChange()
  }

  /** Param callbacks ran: they are the app's functions too. */
  ranParamCallbacks(): void {
    this.functions++
    this.onChange()
  }
}

/** Marks a function as cache middleware (transparent to the dispatch of other caches). */
export function markCacheMiddleware(fn: Function): void {
  cacheMiddleware.add(fn)
}

/** Starts watching `req`'s dispatch for `watch`: called as the cache passes the request on. */
export function watchDispatch(req: IncomingMessage, watch: DispatchWatch): void {
  const watched = req as Watched
  ;(watched[WATCHES] ??= []).push(watch)
}

/** Stops watching: called once the response is settled. */
export function unwatchDispatch(req: IncomingMessage, watch: DispatchWatch): void {
  const watched = req as Watched
  const list = watched[WATCHES]
  if (list === undefined) return
  const i = list.indexOf(watch)
  if (i !== -1) list.splice(i, 1)
  if (list.length === 0) delete watched[WATCHES]
}

/**
 * Makes sure the dispatch of `req`'s app is observed; `false` when it cannot be (not an Express
 * request, or an Express whose routing this package does not recognise).
 */
export function observeDispatch(req: IncomingMessage): boolean {
  const app = (req as { app?: App }).app
  if (app === undefined || app === null) return false
  const known = observedApps.get(app)
  if (known !== undefined) return known
  const observed = wrapDispatchOf(app)
  observedApps.set(app, observed)
  return observed
}

/** Wraps the layer dispatch of `app`'s copy of Express (once), and learns its routing structure. */
function wrapDispatchOf(app: App): boolean {
  const router = routerOf(app)
  const stack = router?.stack
  if (
    router === undefined ||
    !Array.isArray(stack) ||
    stack.length === 0 ||
    typeof router.handle !== 'function'
  )
    return false
  const layer = Object.getPrototypeOf(stack[0]) as Record<string, unknown> | null
  if (layer === null) return false
  const request = typeof layer.handleRequest === 'function' ? 'handleRequest' : 'handle_request'
  const error = request === 'handleRequest' ? 'handleError' : 'handle_error'
  if (typeof layer[request] !== 'function' || typeof layer[error] !== 'function') return false
  if (!wrappedLayers.has(layer)) {
    wrap(layer, request, error)
    wrappedLayers.add(layer)
  }
  routerHandles.add(router.handle)
  // Express 4 starts every app's router with its `query` and `expressInit` functions.
  for (const first of stack.slice(0, 2)) {
    const handle = (first as Layer).handle
    if (typeof handle === 'function' && (handle.name === 'query' || handle.name === 'expressInit'))
      internalSources.add(Function.prototype.toString.call(handle))
  }
  const mounted = mountedAppSource(app.use)
  if (mounted !== undefined) internalSources.add(mounted)
  return true
}

function wrap(layer: Record<string, unknown>, request: string, error: string): void {
  const handleRequest = layer[request] as Dispatch
  const handleError = layer[error] as DispatchError
  layer[request] = function observedRequest(this: Layer, req: IncomingMessage, res: unknown, next: Next) {
    const watches = (req as Watched | undefined)?.[WATCHES]
    if (watches === undefined) return handleRequest.call(this, req, res, next)
    return handleRequest.call(this, req, res, record(this, req, watches, next))
  }
  layer[error] = function observedError(
    this: Layer,
    e: unknown,
    req: IncomingMessage,
    res: unknown,
    next: Next,
  ) {
    const watches = (req as Watched | undefined)?.[WATCHES]
    if (watches !== undefined) for (const watch of watches.slice()) watch.fail()
    return handleError.call(this, e, req, res, next)
  }
}

/** Records the layer `req` is dispatched to, and returns the `next` it gets. */
function record(layer: Layer, req: IncomingMessage, watches: DispatchWatch[], next: Next): Next {
  const fn = layer.handle
  // Express skips error handlers (four parameters) without calling them.
  if (typeof fn !== 'function' || fn.length > 3) return next
  const watching = watches.slice()
  if (isStructure(layer, fn)) {
    if (paramCallbacksMayRun(req)) for (const watch of watching) watch.ranParamCallbacks()
    return (error?: unknown) => {
      if (isError(error)) for (const watch of watching) watch.fail()
      return next(error)
    }
  }
  const opaque = isOpaque(fn)
  for (const watch of watching) watch.entered(fn, opaque)
  return (error?: unknown) => {
    for (const watch of watching) watch.left(fn, error)
    return next(error)
  }
}

/** Routing structure: no function of the app runs in it (other than param callbacks). */
function isStructure(layer: Layer, fn: Function): boolean {
  if (layer.route !== undefined && layer.route !== null) return true
  if (cacheMiddleware.has(fn)) return true
  const candidate = fn as { stack?: unknown; handle?: unknown }
  if (
    Array.isArray(candidate.stack) &&
    typeof candidate.handle === 'function' &&
    routerHandles.has(candidate.handle)
  )
    return true
  return INTERNAL_NAMES.has(fn.name) && internalSources.has(Function.prototype.toString.call(fn))
}

/**
 * A function that is itself a router or an app this package cannot see into (another copy of
 * Express or of `router`): what runs inside it is unknown.
 */
function isOpaque(fn: Function): boolean {
  const candidate = fn as { stack?: unknown; handle?: unknown }
  return Array.isArray(candidate.stack) || typeof candidate.handle === 'function'
}

/**
 * Whether the app registered a param callback (`app.param`, `router.param`) for a parameter of
 * the layer being dispatched: Express runs those just before it. Any router of the app counts.
 */
function paramCallbacksMayRun(req: IncomingMessage): boolean {
  const params = (req as { params?: Record<string, unknown> }).params
  if (params === undefined || params === null) return false
  const names = Object.keys(params)
  if (names.length === 0) return false
  let app = (req as { app?: App }).app
  const seen = new Set<unknown>()
  const routers: App[] = []
  const visit = (router: App | undefined) => {
    if (router === undefined || router === null || seen.has(router)) return
    seen.add(router)
    routers.push(router)
    for (const layer of Array.isArray(router.stack) ? router.stack : []) {
      const handle = (layer as Layer).handle as App | undefined
      if (typeof handle === 'function' && Array.isArray((handle as App).stack)) visit(handle)
    }
  }
  for (; app !== undefined && app !== null; app = app.parent) visit(routerOf(app))
  return routers.some((router) => names.some((name) => (router.params?.[name]?.length ?? 0) > 0))
}

function routerOf(app: App): App | undefined {
  if (app._router !== undefined) return app._router
  try {
    return app.router
  } catch {
    // Express 4 throws from `app.router` (removed in 4.0); it has `_router` once it routes.
    return undefined
  }
}

/**
 * The source of the function Express's `app.use` mounts a sub-app with (`mounted_app`), taken by
 * calling `use` on a stand-in app: Express's own code, whatever its version.
 */
function mountedAppSource(use: unknown): string | undefined {
  if (typeof use !== 'function') return undefined
  let mounted: unknown
  const router = {
    use(_path: unknown, fn: unknown) {
      mounted = fn
    },
  }
  const parent = { lazyrouter() {}, _router: router, router }
  const child = Object.assign(() => {}, { handle() {}, set() {}, emit() {} })
  try {
    use.call(parent, child)
  } catch {
    return undefined
  }
  return typeof mounted === 'function' && mounted.name === 'mounted_app'
    ? Function.prototype.toString.call(mounted)
    : undefined
}

/** `next('route')` and `next('router')` are routing, not errors. */
function isError(error: unknown): boolean {
  return Boolean(error) && error !== 'route' && error !== 'router'
}
