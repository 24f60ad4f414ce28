import { IncomingMessage, ServerResponse } from 'node:http'
import { onHandlerError } from '@cache/http'
import type { DispatchWatch } from './dispatch.js'
import type { ResponseCache } from './response-cache.js'
import { describeFunction } from './site.js'

/** `Reflect` with the reflect-metadata API, present when the app loaded `reflect-metadata` (NestJS does). */
interface ReflectMetadata {
  getOwnMetadataKeys(target: object): unknown[]
  getOwnMetadata(key: unknown, target: object): unknown
  defineMetadata(key: unknown, value: unknown, target: object): void
}

function reflectMetadata(): ReflectMetadata | undefined {
  const api = Reflect as unknown as Partial<ReflectMetadata>
  return typeof api.getOwnMetadataKeys === 'function' && typeof api.defineMetadata === 'function'
    ? (api as ReflectMetadata)
    : undefined
}

/** Properties every function has of its own: never copied from one function to another. */
const FUNCTION_OWN = new Set<PropertyKey>(['length', 'name', 'prototype', 'arguments', 'caller'])

/**
 * Gives `wrapper` everything other decorators attached to `method` before it was wrapped: every
 * reflect-metadata key (NestJS's route path and method, guards, interceptors, pipes, …) and every
 * own property of the function. Decorators applied after the wrap attach to `wrapper` itself, so
 * the order in which decorators are listed does not matter.
 */
export function keepMetadata(method: Function, wrapper: Function): void {
  const metadata = reflectMetadata()
  if (metadata !== undefined) {
    for (const key of metadata.getOwnMetadataKeys(method)) {
      metadata.defineMetadata(key, metadata.getOwnMetadata(key, method), wrapper)
    }
  }
  for (const key of Reflect.ownKeys(method)) {
    if (FUNCTION_OWN.has(key) || Object.hasOwn(wrapper, key)) continue
    Object.defineProperty(wrapper, key, Object.getOwnPropertyDescriptor(method, key)!)
  }
}

/** NestJS's metadata key for the interceptors of a handler (`@UseInterceptors`). */
const NEST_INTERCEPTORS = '__interceptors__'

/** The shapes of NestJS's `ExecutionContext` and `CallHandler` this package uses. */
interface ExecutionContextLike {
  switchToHttp?(): { getRequest(): unknown; getResponse(): unknown }
  getClass?(): unknown
  getHandler?(): unknown
}
interface CallHandlerLike {
  handle(): unknown
}

/**
 * An interceptor instance for NestJS (an object with `intercept`, which Nest accepts as it is): on
 * Nest's Express platform it sees the real `req`/`res`, after guards and before pipes and the
 * handler, so it caches handlers that return a value as well as those that write with `@Res()`.
 */
export function nestInterceptor(engine: ResponseCache) {
  return {
    intercept(context: ExecutionContextLike, next: CallHandlerLike): unknown {
      const http = context.switchToHttp?.()
      const req = http?.getRequest()
      const res = http?.getResponse()
      if (!(req instanceof IncomingMessage) || !(res instanceof ServerResponse)) return next.handle()
      let handled: unknown
      let ran = false
      const owner = context.getClass?.()
      const method = context.getHandler?.()
      // Once a handler is found chosen by a request header, its responses stay private.
      if (!engine.settings.hiddenSelection && nestChoosesByRequest(req, owner, method))
        engine.settings.hiddenSelection = true
      const identity = nestIdentity(owner, method)
      const result = engine.handle(
        req,
        res,
        (watch) => {
          ran = true
          if (watch === undefined) {
            handled = next.handle()
            return handled
          }
          // A failure of the handler, or of its result on the way into the response, makes the
          // response unstorable, whatever answers the error.
          failWhenSendingThrows(res, watch)
          handled = onHandlerError(next.handle(), () => watch.fail(), { letGo: true })
          return handled
        },
        'handler',
        undefined,
        identity,
      )
      const outcome = () => (ran ? handled : answeredFromCache(res))
      return typeof (result as Promise<unknown> | undefined)?.then === 'function'
        ? (result as Promise<unknown>).then(outcome)
        : outcome()
    },
  }
}

/** NestJS's metadata key for `@Version()` and `@Controller({ version })`. */
const NEST_VERSION = '__version__'

/**
 * The names of the route functions Nest's Express adapter puts before a versioned handler when
 * its versioning picks the handler of a URL by the request (a header, `Accept`, a custom
 * extractor), and before a `VERSION_NEUTRAL` one. URI versioning puts none (the version is in the
 * path). Nest's own names, the same since Nest 8; a bundle that minifies Nest loses them.
 */
const CHOSEN_BY_REQUEST = new Set([
  'handlerForHeaderVersioning',
  'handlerForMediaTypeVersioning',
  'handlerForCustomVersioning',
])
const NOT_CHOSEN_BY_REQUEST = 'handlerForNoVersioning'

type AppVersioning = 'by-request' | 'neutral' | 'unknown'
const appVersioning = new WeakMap<object, AppVersioning>()

/**
 * Whether Nest picks `method` of `owner` among the handlers of its URL by request data no `Vary`
 * names (header, media-type or custom versioning): `cacheControl` then sends `private`, as
 * `@cache/nestjs` does, for every handler of such an application (a handler without a version
 * answers the URL when no version is asked for). Read from the routes of the request's Express
 * application once. When none of Nest's version filters is recognised there (no versioning, URI
 * versioning, or Nest minified), a handler or controller with a version counts as chosen by the
 * request unless a segment of its route's path ends with that version (`/v1/…`: URI versioning).
 */
function nestChoosesByRequest(req: IncomingMessage, owner: unknown, method: unknown): boolean {
  const app = (req as { app?: unknown }).app
  // An Express application is a function.
  const found = typeof app === 'function' ? versioningOf(app) : 'unknown'
  if (found !== 'unknown') return found === 'by-request'
  const metadata = reflectMetadata()
  const own = typeof method === 'function' ? metadata?.getOwnMetadata(NEST_VERSION, method) : undefined
  const of = typeof owner === 'function' ? metadata?.getOwnMetadata(NEST_VERSION, owner) : undefined
  if (own === undefined && of === undefined) return false
  const path = (req as { route?: { path?: unknown } }).route?.path
  if (typeof path !== 'string') return true
  // Read once per route path of a handler (a handler of URI versioning gets here on every request).
  let paths = versionInPath.get(method as Function)
  if (paths === undefined) {
    paths = new Map()
    if (typeof method === 'function') versionInPath.set(method, paths)
  }
  let inPath = paths.get(path)
  if (inPath === undefined) {
    const versions = [own, of].flat().filter((one): one is string => typeof one === 'string')
    inPath = path.split('/').some((segment) => versions.some((version) => segment.endsWith(version)))
    paths.set(path, inPath)
  }
  return !inPath
}

/** Per handler and route path: whether a segment of the path ends with the handler's version. */
const versionInPath = new WeakMap<Function, Map<string, boolean>>()

function versioningOf(app: object): AppVersioning {
  let found = appVersioning.get(app)
  if (found === undefined) {
    found = 'unknown'
    const seen = { byRequest: false, neutral: false }
    routeFunctions(routerStack(app), seen, 0)
    if (seen.byRequest) found = 'by-request'
    else if (seen.neutral) found = 'neutral'
    appVersioning.set(app, found)
  }
  return found
}

/** The layers of an Express application's router (Express 4: `_router`; 5: `router`). */
function routerStack(app: object): unknown[] {
  const express4 = (app as { _router?: { stack?: unknown } })._router
  if (express4 !== undefined) return Array.isArray(express4.stack) ? express4.stack : []
  try {
    const router = (app as { router?: { stack?: unknown } }).router
    return Array.isArray(router?.stack) ? router.stack : []
  } catch {
    return []
  }
}

/** Notes Nest's versioning route functions among `layers` (routes, and routers mounted there). */
function routeFunctions(
  layers: unknown[],
  seen: { byRequest: boolean; neutral: boolean },
  depth: number,
): void {
  for (const layer of layers as { route?: { stack?: unknown }; handle?: { stack?: unknown } }[]) {
    const route = layer?.route?.stack
    if (Array.isArray(route))
      for (const { handle } of route as { handle?: { name?: unknown } }[]) {
        const name = handle?.name
        if (typeof name !== 'string') continue
        if (CHOSEN_BY_REQUEST.has(name)) seen.byRequest = true
        else if (name === NOT_CHOSEN_BY_REQUEST) seen.neutral = true
      }
    const mounted = layer?.handle?.stack
    if (depth < 4 && Array.isArray(mounted)) routeFunctions(mounted, seen, depth + 1)
  }
}

/** What Nest calls to send a handler's result on Express's response, which serialize it. */
const SERIALIZING_SENDS = ['json', 'jsonp', 'send'] as const

/**
 * A result Express cannot serialize (a `BigInt`, a circular object, a `toJSON` or `json replacer`
 * that throws) makes `res.json` throw after the handler succeeded: the exception filters answer
 * it, so the response is not the handler's. Only for the response of a miss being recorded.
 */
function failWhenSendingThrows(res: ServerResponse, watch: DispatchWatch): void {
  const target = res as unknown as Record<string, unknown>
  for (const name of SERIALIZING_SENDS) {
    const original = target[name]
    if (typeof original !== 'function') continue
    target[name] = function (this: unknown, ...args: unknown[]) {
      try {
        return (original as (...a: unknown[]) => unknown).apply(this, args)
      } catch (error) {
        watch.fail()
        throw error
      }
    }
  }
}

/** NestJS's metadata key for the guards of a handler or controller (`@UseGuards`). */
const NEST_GUARDS = '__guards__'
const identities = new WeakMap<Function, string>()

/**
 * A Nest handler's part of the site: the controller's name, the method, and the guards on the
 * method and the controller (each as `name#fingerprint` of its class or function), so two handlers
 * of one URL never share entries, nor two deployments whose guards differ in code. Global guards
 * and middleware are not in the route's metadata (see the README).
 */
function nestIdentity(owner: unknown, method: unknown): string {
  if (typeof method !== 'function') return `${typeof owner === 'function' ? owner.name : '?'}.?`
  const known = identities.get(method)
  if (known !== undefined) return known
  const metadata = reflectMetadata()
  const guards = [method, owner].flatMap((target) => {
    const list = typeof target === 'function' ? metadata?.getOwnMetadata(NEST_GUARDS, target) : undefined
    return Array.isArray(list) ? list : []
  })
  const described = guards.map((guard) => {
    const fn = typeof guard === 'function' ? guard : (guard as { constructor?: unknown } | null)?.constructor
    return typeof fn === 'function' ? describeFunction(fn) : '?'
  })
  const identity = `${typeof owner === 'function' ? owner.name : '?'}.${describeFunction(method)}${described.length > 0 ? ` guards ${described.join(',')}` : ''}`
  identities.set(method, identity)
  return identity
}

/**
 * After a replay, Nest still hands the handler's result (`undefined` here) to the response: make
 * that a no-op for this one response, which is already complete.
 */
function answeredFromCache(res: ServerResponse): unknown[] {
  const done = function (this: ServerResponse) {
    return this
  }
  const target = res as unknown as Record<string, unknown>
  for (const method of ['status', 'send', 'json', 'jsonp', 'render', 'redirect', 'sendFile', 'end']) {
    target[method] = done
  }
  // An observable input that emits `undefined` once, without this package depending on rxjs.
  return [undefined]
}

/** Adds `interceptor` to the NestJS interceptors of `method`, after those already there. */
export function useInterceptor(method: Function, interceptor: object): void {
  const metadata = reflectMetadata()
  if (metadata === undefined) return
  const existing = metadata.getOwnMetadata(NEST_INTERCEPTORS, method)
  metadata.defineMetadata(
    NEST_INTERCEPTORS,
    Array.isArray(existing) ? [...existing, interceptor] : [interceptor],
    method,
  )
}
