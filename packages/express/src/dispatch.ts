import { types } from 'node:util'
import type { IncomingMessage } from 'node:http'
import { HANDLER_ERROR } from '@cache/http'

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
 *
 * A router of a copy of Express the cache has not wrapped (a plugin's own Express, reached through
 * a plain function) dispatches out of sight, but every Express router announces itself: it sets
 * `req.next` to its own `next` as it starts, and passes that `next` to every layer it dispatches.
 * While a request is watched, `req.next` is an accessor that sees each value set: a value set by
 * a wrapped router's `handle` is known, one a wrapped layer dispatch receives as its `next` is
 * proven, and any other is a router the cache cannot see into, which ran after the cache.
 * `req.route` is read too: a route whose layers are not of a wrapped copy ran out of sight.
 * A copy of the request (`{ ...req }`) carries no accessor: copying is seen instead, by a symbol
 * property every such copy reads, and an app of any copy announces the request it is given in
 * `res.req`.
 *
 * A stored response's request stays watched: a `next` called once the response ended (the
 * handler's, or the router's as `req.next`) dispatches the request again, which the wrapped layers
 * and routers report, and its entry is deleted.
 */

/** Where the cache sits: as middleware (the app answers after it), or around the handler itself. */
export type CachePosition = 'middleware' | 'handler'

/** The part of Express's `Layer` that dispatch reads. */
export interface Layer {
  handle: unknown
  route?: unknown
}

/** A router a request is in, as dispatch entered it: innermost first, through `parent`. */
export interface RouterFrame {
  router: { stack?: unknown }
  /** The layer of the parent router that dispatched into this one (`undefined` at the top). */
  mount: Layer | undefined
  parent: RouterFrame | undefined
  /**
   * Whether this router was entered the way Express mounts one: by the layer of its parent that
   * holds it (`router.use(path, router)`, or the `mounted_app` function `app.use(path, subApp)`
   * adds), or, at the top, as the first router of the request. `false` for a router or app
   * called by a plain function (`(req, res, next) => pick(req)(req, res, next)`): which one ran is
   * a closure's choice, and no description of the app can tell two made by one factory apart.
   */
  mounted: boolean
  /** `req.app` as this router's layers were dispatched: the app the request is in, once it began there. */
  app?: unknown
}

/**
 * The request target as the first router of `req` started, before any middleware ran (what
 * Express then copies to `originalUrl`, which middleware may rewrite as well): `undefined` when
 * that start was not observed (the first request a copy of Express dispatched before this package
 * wrapped it, or an app entered with `originalUrl` already set).
 */
export function sentUrl(req: IncomingMessage): string | undefined {
  return states.get(req)?.sent
}

/**
 * Where Express dispatched `req` last: the layer (the cache's own, or the route function that
 * runs it) and the chain of routers around it. `undefined` when its dispatch started before this
 * package observed its copy of Express (the first request a cache of the app handled).
 */
export function dispatchPosition(req: IncomingMessage): { layer: Layer; frame: RouterFrame } | undefined {
  const state = states.get(req)
  if (state === undefined) return undefined
  // The state itself: read at once by the caller, it saves an object per cached request.
  return state.frame === undefined || state.layer === undefined
    ? undefined
    : (state as { layer: Layer; frame: RouterFrame })
}

/** The list of the caches `req` passed, kept in its dispatch state (one record per request for both). */
export function cachesPassed<T>(req: IncomingMessage): T[] | undefined {
  return stateOf(req as Watched).passed as T[] | undefined
}

/** Sets the list of {@link cachesPassed}. */
export function setCachesPassed<T>(req: IncomingMessage, list: T[]): void {
  stateOf(req as Watched).passed = list
}
type Next = (error?: unknown) => void
type Dispatch = (this: Layer, req: IncomingMessage, res: unknown, next: Next) => unknown
type DispatchError = (this: Layer, error: unknown, req: IncomingMessage, res: unknown, next: Next) => unknown
type App = Record<string, any>

/**
 * What this file knows of one request's dispatch, in one object per request: every layer
 * Express dispatches reads it, and one shape keeps that read cheap.
 */
interface DispatchState {
  /** The layer Express dispatched `req` to last: the one that called the cache, while it runs. */
  layer: Layer | undefined
  /** The router `req` is in, and the layer of the router around it that mounted it. */
  frame: RouterFrame | undefined
  /** The caches watching the dispatch, while a response is recorded. */
  watches: DispatchWatch[] | undefined
  /** The values of `req.next`, innermost router last, while the request is watched. */
  nextValues: unknown[] | undefined
  /**
   * `req.url` as the first router of the request started (Express sets `originalUrl` from it
   * there), before any middleware could rewrite it; `undefined` when that start was not observed.
   */
  sent: string | undefined
  /** The caches the request passed, outermost first (see `response-cache.ts`). */
  passed: unknown[] | undefined
  /** The response whose `req` is traced while the request is watched (see {@link traceResponse}). */
  response: object | undefined
}
/**
 * The dispatch state of each request, by request: a property of the request's own would make
 * Express 5's request objects slower to extend for every request of the app.
 */
const states = new WeakMap<object, DispatchState>()
/**
 * The dispatch state of each response whose request a cache watches. A handler after the cache
 * may dispatch another request object for the same response (`app.handle(Object.create(req), res,
 * next)`, a copy of `req`, a sub-app's `handle`): Express 5 gives that request a prototype of its
 * own before its router starts, so nothing of `req` is left on it. Whatever it is dispatched to
 * answers the watched response: it shares the watched request's state, and runs after the cache.
 */
const responses = new WeakMap<object, DispatchState>()
type Watched = IncomingMessage & {
  next?: unknown
  route?: { stack?: unknown }
}

/** The state of `req`, or of the watched request whose response `res` is (see {@link responses}). */
function stateFor(req: object, res: unknown): DispatchState | undefined {
  const state = states.get(req)
  if (state !== undefined || typeof res !== 'object' || res === null) return state
  const shared = responses.get(res)
  if (shared === undefined || shared.watches === undefined) return undefined
  states.set(req, shared)
  return shared
}

function stateOf(req: Watched, res?: unknown): DispatchState {
  let state = stateFor(req, res)
  if (state === undefined) {
    state = {
      layer: undefined,
      frame: undefined,
      watches: undefined,
      nextValues: undefined,
      sent: undefined,
      passed: undefined,
      response: undefined,
    }
    states.set(req, state)
  }
  return state
}

/** The functions that `cacheResponse()` returns as middleware: transparent to other caches. */
const cacheMiddleware = new WeakSet<Function>()
/** Layer prototypes already wrapped (one per copy of Express 4 / of `router`). */
const wrappedLayers = new WeakSet<object>()
/** Router prototypes whose `handle` is wrapped (one per copy). */
const wrappedRouters = new WeakSet<object>()
/**
 * The watched request a wrapped router's `handle` is starting for: the `req.next` it sets first
 * is that router's own. Dispatch is synchronous up to that assignment.
 */
let entering: IncomingMessage | undefined
/** The `next` functions this file hands to layers: Express 4's `expressInit` sets `req.next` to one. */
const ownNexts = new WeakSet<Function>()
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
  private hidden = false
  /** A dispatch the cache cannot see took the response (a copy of the request, another app). */
  private unseen = false
  /** Promises returned by functions after the cache, not settled yet. */
  private readonly pending = new Set<PromiseLike<unknown>>()
  /** What waits for {@link pending} to empty. */
  private readonly waiting: (() => void)[] = []
  /** Values of `req.next` set after the cache started that no wrapped router or layer accounts for. */
  private readonly unproven = new Set<unknown>()
  /** `req.route` when the cache started. */
  private readonly route: unknown
  /** Called whenever the verdict may have changed. */
  onChange: () => void = () => {}

  constructor(
    readonly position: CachePosition,
    /** Whether Express's dispatch is observed for this request (false outside Express). */
    readonly observed: boolean,
    private readonly skipped: ReadonlySet<Function>,
    private readonly req: IncomingMessage,
    /** The response: once it ended, any dispatch of the request passed it on. */
    private readonly res: { writableEnded?: boolean } = {},
  ) {
    this.route = (req as Watched).route
  }

  /**
   * Why the response must not be stored, from what ran after the cache, or `undefined`:
   * `handler-error` when an error went through `next(error)`, an error handler or a throw;
   * `next` when the handler passed the request on; `middleware-after-cache` when any other
   * function ran between the cache and the handler, or when that cannot be known (a router or
   * route of a copy of Express the cache cannot see into ran after it); `hidden-middleware` when
   * a function after the cache runs middleware of its own (a NestJS route).
   */
  verdict(): string | undefined {
    if (this.failed) return HANDLER_ERROR
    if (this.unseen || this.unproven.size > 0 || this.unobservedRoute()) return 'middleware-after-cache'
    if (this.hidden) return 'hidden-middleware'
    if (this.position === 'handler') {
      if (this.passedOn) return 'next'
      return this.functions > 0 ? 'middleware-after-cache' : undefined
    }
    // As middleware, exactly one function may run after the cache: the handler that answers.
    if (!this.observed || this.opaque || this.functions !== 1) return 'middleware-after-cache'
    return this.passedOn ? 'next' : undefined
  }

  /**
   * A promise a function after the cache returned (an `async` handler's), that Express 5 hands to
   * `next(error)` should it reject: the response is decided on once it settled, even when the
   * handler sent the whole response before failing.
   */
  track(promise: PromiseLike<unknown>): void {
    this.pending.add(promise)
    const settled = () => {
      this.pending.delete(promise)
      if (this.pending.size === 0) for (const waiting of this.waiting.splice(0)) waiting()
    }
    // Attached after Express's own handler (it attaches its own as the function returns): its
    // `next(error)` has run by the time this one does.
    queueMicrotask(() => void promise.then(settled, settled))
  }

  /** Calls `then` once every promise tracked so far (and any tracked meanwhile) settled. */
  whenSettled(then: () => void): void {
    if (this.pending.size === 0) then()
    else this.waiting.push(then)
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

  entered(fn: Function, opaque: boolean, hidden: boolean): void {
    if (this.skipped.has(fn)) return
    this.functions++
    if (opaque) this.opaque = true
    if (hidden) this.hidden = true
    this.onChange()
  }

  left(fn: Function, error: unknown): void {
    if (isError(error)) this.failed = true
    // A listed function passing the request on changes nothing: the handler it leads to has not
    // run yet, and a verdict read now (no function after the cache) would release the requests
    // waiting for this response before it is made.
    else if (this.skipped.has(fn)) return
    else this.passedOn = true
    this.onChange()
  }

  /**
   * Express dispatched the request again: a layer, an error, or a router that let it go (its
   * `done`). Once the response ended, only a `next` could have done that: whoever called it (the
   * handler's own, `req.next`, `res.req.next`, or the one `res.sendFile` kept), the request was
   * passed on, to a later route or to the app's final handler.
   */
  dispatched(error?: unknown): void {
    if (isError(error)) this.failed = true
    else if (this.res.writableEnded === true) this.passedOn = true
    else return
    this.onChange()
  }

  /**
   * The request was handed to a dispatch the cache cannot see while it made the response: copied
   * property by property (`{ ...req }`, `Object.assign({}, req)`), or made the request of the
   * response by an app of another copy of Express (`res.req`). What the copy was given to may be
   * a router of another copy of Express, which runs its middleware out of sight.
   */
  dispatchedUnseen(): void {
    if (this.res.writableEnded === true) return
    this.unseen = true
    this.onChange()
  }

  /** Param callbacks ran: they are the app's functions too. */
  ranParamCallbacks(): void {
    this.functions++
    this.onChange()
  }

  /** `req.next` was set to a value no wrapped router set: a router out of sight, until proven. */
  nextSet(value: unknown): void {
    this.unproven.add(value)
    this.onChange()
  }

  /** A wrapped layer was dispatched with `next`: the router it belongs to is observed. */
  nextProven(next: unknown): void {
    if (this.unproven.delete(next)) this.onChange()
  }

  /** A route other than the one the cache started in, whose layers are of a copy never wrapped. */
  private unobservedRoute(): boolean {
    const route = (this.req as Watched).route
    if (route === this.route || route === undefined || route === null) return false
    const first: unknown = Array.isArray(route.stack) ? route.stack[0] : undefined
    return typeof first !== 'object' || first === null || !wrappedLayers.has(Object.getPrototypeOf(first))
  }
}

/** Marks a function as cache middleware (transparent to the dispatch of other caches). */
export function markCacheMiddleware(fn: Function): void {
  cacheMiddleware.add(fn)
}

/** Starts watching `req`'s dispatch for `watch`: called as the cache passes the request on. */
export function watchDispatch(req: IncomingMessage, watch: DispatchWatch): void {
  const watched = req as Watched
  const state = stateOf(watched)
  ;(state.watches ??= []).push(watch)
  const res = (watched as { res?: unknown }).res
  if (typeof res === 'object' && res !== null) responses.set(res, state)
  if (state.nextValues === undefined) {
    traceNext(watched, state)
    traceCopies(watched, state)
    if (typeof res === 'object' && res !== null) traceResponse(watched, res, state)
  }
}

/** Stops watching: called once the response is settled. */
export function unwatchDispatch(req: IncomingMessage, watch: DispatchWatch): void {
  const watched = req as Watched
  const state = states.get(watched)
  const list = state?.watches
  if (state === undefined || list === undefined) return
  const i = list.indexOf(watch)
  if (i !== -1) list.splice(i, 1)
  if (list.length === 0) {
    state.watches = undefined
    untraceNext(watched, state)
    delete (watched as { [COPIED]?: unknown })[COPIED]
    untraceResponse(state)
  }
}

/** Makes `req.next` an accessor that sees every value routers set (see the top of this file). */
function traceNext(req: Watched, state: DispatchState): void {
  const values: unknown[] = [req.next]
  state.nextValues = values
  Object.defineProperty(req, 'next', {
    configurable: true,
    enumerable: true,
    get: () => values[values.length - 1],
    set: (value: unknown) => {
      const known = entering === req
      if (known) entering = undefined
      // A router that is done restores the value it found: back to it.
      const i = values.lastIndexOf(value)
      if (i !== -1) {
        values.length = i + 1
        return
      }
      values.push(value)
      if (!known && !ownNexts.has(value as Function))
        for (const watch of state.watches ?? []) watch.nextSet(value)
    },
  })
}

function untraceNext(req: Watched, state: DispatchState): void {
  const values = state.nextValues
  if (values === undefined) return
  state.nextValues = undefined
  Object.defineProperty(req, 'next', {
    configurable: true,
    enumerable: true,
    writable: true,
    value: values[values.length - 1],
  })
}

/** The property of a watched request that copying it reads (see {@link traceCopies}). */
const COPIED = Symbol('@cache/express copied')

/**
 * Makes copying `req` property by property (`{ ...req, url }`, `Object.assign({}, req)`) seen: a
 * copy is a request object that no `req.next` accessor and no prototype ties to `req`, and a
 * router of another copy of Express dispatches it out of sight. Both forms read every own
 * enumerable property, symbols included; nothing else reads this one (`Object.keys`,
 * `JSON.stringify` and `util.inspect` do not).
 */
function traceCopies(req: Watched, state: DispatchState): void {
  Object.defineProperty(req, COPIED, {
    configurable: true,
    enumerable: true,
    get: () => {
      for (const watch of state.watches?.slice() ?? []) watch.dispatchedUnseen()
      return undefined
    },
    // `Object.assign(Object.create(req), req)` sets it on a copy that inherits it: nothing to keep.
    set: () => {},
  })
}

/**
 * Makes `res.req` an accessor while `req` is watched: every Express app sets it to the request it
 * dispatches as it starts (Express 4's `expressInit`, Express 5's `app.handle`). Any request
 * object but `req` itself means an app was handed another request for the watched response: of
 * another copy of Express, whatever request object it was given (one built anew, a copy).
 */
function traceResponse(req: Watched, res: object, state: DispatchState): void {
  const descriptor = Object.getOwnPropertyDescriptor(res, 'req')
  if (descriptor !== undefined && (!descriptor.configurable || !('value' in descriptor))) return
  let current: unknown = descriptor?.value
  state.response = res
  Object.defineProperty(res, 'req', {
    configurable: true,
    enumerable: true,
    get: () => current,
    set(this: object, value: unknown) {
      // An object made from the response (`Object.create(res)`) keeps its own.
      if (this === res) current = value
      else Object.defineProperty(this, 'req', { value, writable: true, configurable: true, enumerable: true })
      if (value !== req) for (const watch of state.watches?.slice() ?? []) watch.dispatchedUnseen()
    },
  })
}

function untraceResponse(state: DispatchState): void {
  const res = state.response
  if (res === undefined) return
  state.response = undefined
  Object.defineProperty(res, 'req', {
    configurable: true,
    enumerable: true,
    writable: true,
    value: (res as { req?: unknown }).req,
  })
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
  const routerProto = ownerOf(router, 'handle')
  if (routerProto !== undefined && !wrappedRouters.has(routerProto)) {
    wrapRouter(routerProto)
    wrappedRouters.add(routerProto)
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
    let watches: DispatchWatch[] | undefined
    if (req !== undefined && req !== null) {
      const state = stateOf(req as Watched, res)
      state.layer = this
      const frame = state.frame
      if (frame !== undefined) frame.app = (req as { app?: unknown }).app
      watches = state.watches
    }
    if (watches === undefined) return handleRequest.call(this, req, res, next)
    const recorded = record(this, req, watches, next)
    // Express 5 catches the rejection of a returned promise: the watches see that promise too.
    // Express 4 ignores it, and so do the watches: whether it is handled is the app's (a patch
    // such as express-async-errors hands it to `next`), and unhandled it must stay unhandled.
    const layer = request === 'handleRequest' && recorded !== next ? tracking(this, watches.slice()) : this
    return handleRequest.call(layer, req, res, recorded)
  }
  layer[error] = function observedError(
    this: Layer,
    e: unknown,
    req: IncomingMessage,
    res: unknown,
    next: Next,
  ) {
    const watches = (req === undefined || req === null ? undefined : stateFor(req, res))?.watches
    if (watches !== undefined)
      for (const watch of watches.slice()) {
        watch.nextProven(next)
        watch.fail()
      }
    return handleError.call(this, e, req, res, next)
  }
}

/** Marks the `req.next` each wrapped router sets as its own: that router is observed. */
function wrapRouter(proto: Record<string, unknown>): void {
  const handle = proto.handle as (this: unknown, req: IncomingMessage, ...rest: unknown[]) => unknown
  // `(req, res, done)` is what every Express router is called with: spelled out, a request costs
  // no argument arrays; any other call keeps every argument it was given.
  proto.handle = function observedHandle(this: unknown, req: IncomingMessage, res: unknown, done: unknown) {
    // biome-ignore lint/complexity/noArguments: a rest parameter would cost every request an array.
    if (arguments.length > 3) {
      // biome-ignore lint/complexity/noArguments: only for a call with more arguments than Express passes.
      const rest = Array.prototype.slice.call(arguments, 1)
      rest[1] = enter(req, this, rest[1], res)
      return dispatchRouter(this, handle, req, rest)
    }
    const out = enter(req, this, done, res)
    if ((req === undefined || req === null ? undefined : states.get(req))?.watches === undefined)
      return handle.call(this, req, res, out)
    return dispatchRouter(this, handle, req, [res, out])
  }
}

/**
 * Records that `req` enters `router` (mounted by the layer just dispatched in the one around it)
 * and returns the `done` the router gets: it puts the request back where it was as it leaves.
 */
function enter(req: IncomingMessage, router: unknown, done: unknown, res: unknown): unknown {
  const watched = req as Watched | undefined
  if (watched === undefined || watched === null) return done
  const state = stateOf(watched, res)
  const parent = state.frame
  const mount = parent === undefined ? undefined : state.layer
  // The first router of the request: Express sets `originalUrl` from `url` as it starts.
  const top = parent === undefined && (watched as { originalUrl?: unknown }).originalUrl === undefined
  if (top) state.sent = watched.url
  state.frame = {
    router: router as RouterFrame['router'],
    mount,
    parent,
    // At the top: no router ran before this one (each sets `originalUrl` as it starts).
    mounted: parent === undefined ? top : mount !== undefined && mounts(mount.handle, router),
    // Set as its layers are dispatched; declared here so every frame has one shape.
    app: undefined,
  }
  if (typeof done !== 'function') return done
  return function (this: unknown, ...args: unknown[]) {
    state.frame = parent
    // The router let the request go: after the response ended, a late `next` did it.
    const watches = state.watches
    if (watches !== undefined) for (const watch of watches.slice()) watch.dispatched(args[0])
    return done.apply(this, args)
  }
}

/** Runs a router's own `handle`, marking the `req.next` it sets first as its own when `req` is watched. */
function dispatchRouter(
  router: unknown,
  handle: (this: unknown, req: IncomingMessage, ...rest: unknown[]) => unknown,
  req: IncomingMessage,
  rest: unknown[],
): unknown {
  if ((req === undefined || req === null ? undefined : states.get(req))?.watches === undefined)
    return handle.call(router, req, ...rest)
  const previous = entering
  entering = req
  try {
    return handle.call(router, req, ...rest)
  } finally {
    entering = previous
  }
}

/** The object in `value`'s prototype chain that holds `name` itself. */
function ownerOf(value: object, name: string): Record<string, unknown> | undefined {
  for (let o: object | null = Object.getPrototypeOf(value); o !== null; o = Object.getPrototypeOf(o)) {
    if (o === Function.prototype || o === Object.prototype) return undefined
    if (Object.hasOwn(o, name))
      return typeof (o as Record<string, unknown>)[name] === 'function'
        ? (o as Record<string, unknown>)
        : undefined
  }
  return undefined
}

/** Records the layer `req` is dispatched to, and returns the `next` it gets. */
function record(layer: Layer, req: IncomingMessage, watches: DispatchWatch[], next: Next): Next {
  for (const watch of watches.slice()) {
    watch.nextProven(next)
    watch.dispatched()
  }
  const fn = layer.handle
  // Express skips error handlers (four parameters) without calling them.
  if (typeof fn !== 'function' || fn.length > 3) return next
  const watching = watches.slice()
  if (isStructure(layer, fn)) {
    if (paramCallbacksMayRun(req)) for (const watch of watching) watch.ranParamCallbacks()
    return own((error?: unknown) => {
      if (isError(error)) for (const watch of watching) watch.fail()
      return next(error)
    })
  }
  const opaque = isOpaque(fn)
  const hidden = runsHiddenMiddleware(fn)
  for (const watch of watching) watch.entered(fn, opaque, hidden)
  return own((error?: unknown) => {
    for (const watch of watching) watch.left(fn, error)
    return next(error)
  })
}

/**
 * `layer` with a `handle` that hands each promise it returns to `watches`, for one dispatch: the
 * same function otherwise (same arity, which Express reads, and `this`).
 */
function tracking(layer: Layer, watches: DispatchWatch[]): Layer {
  const fn = layer.handle as (this: unknown, ...args: unknown[]) => unknown
  const handle = function (this: unknown, ...args: unknown[]) {
    const returned = fn.apply(this, args)
    if (!isThenable(returned)) return returned
    // Another thenable (Bluebird, a query builder) is handed on as a native promise, its `then`
    // called once, as Express 5 alone would: calling it again could run a query twice, or throw.
    const promise = types.isPromise(returned) ? returned : Promise.resolve(returned)
    for (const watch of watches) watch.track(promise)
    return promise
  }
  Object.defineProperty(handle, 'length', { value: fn.length })
  Object.defineProperty(handle, 'name', { value: fn.name })
  return Object.create(layer, {
    handle: { value: handle, writable: true, configurable: true, enumerable: true },
  })
}

/** Whether a value has a `then` to call: a promise, or another thenable. */
export function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as PromiseLike<unknown> | null | undefined)?.then === 'function'
}

function own(next: Next): Next {
  ownNexts.add(next)
  return next
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
 * A route function that runs middleware of its own, out of the dispatch's sight: the function
 * NestJS registers with Express for a controller method runs that method's guards, interceptors
 * and pipes inside it. Nest copies the method's metadata onto it, its route `path` and `method`
 * among them (reflect-metadata, which Nest loads).
 */
function runsHiddenMiddleware(fn: Function): boolean {
  const reflect = Reflect as { getOwnMetadata?: (key: string, target: object) => unknown }
  return (
    typeof reflect.getOwnMetadata === 'function' &&
    reflect.getOwnMetadata('method', fn) !== undefined &&
    reflect.getOwnMetadata('path', fn) !== undefined
  )
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

export function routerOf(app: App): App | undefined {
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

/**
 * Whether a layer's function is how Express mounts `router`: the router itself, an app whose
 * router it is (`router.use(subApp)`), or the `mounted_app` function `app.use(subApp)` adds.
 */
function mounts(handle: unknown, router: unknown): boolean {
  if (handle === router) return true
  if (typeof handle !== 'function') return false
  if (typeof (handle as App).handle === 'function' && routerOf(handle as App) === router) return true
  return isMountedApp(handle)
}

/** The function Express's `app.use(path, subApp)` mounts a sub-app with, of a copy seen. */
export function isMountedApp(fn: unknown): boolean {
  return (
    typeof fn === 'function' &&
    fn.name === 'mounted_app' &&
    internalSources.has(Function.prototype.toString.call(fn))
  )
}

/** `next('route')` and `next('router')` are routing, not errors. */
function isError(error: unknown): boolean {
  return Boolean(error) && error !== 'route' && error !== 'router'
}
