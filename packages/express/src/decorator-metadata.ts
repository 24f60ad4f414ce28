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
      const identity = nestIdentity(context.getClass?.(), context.getHandler?.())
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
