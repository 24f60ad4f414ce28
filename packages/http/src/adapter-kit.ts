import { sourceFingerprint } from '@cache/core/backend'

/*
 * Pieces that more than one adapter needs and that are not rules of the cache itself: the reason
 * a handler's failure gives, how a function is named in a site, where Fastify keeps an instance's
 * options, and how a Nest handler's failure is seen.
 */

/**
 * Why a response is not stored when the handler failed (a throw, a rejection, an error passed on,
 * an error handler or exception filter answering it): whatever answers the error, even a 2xx, is
 * that failure's answer, not the handler's.
 */
export const HANDLER_ERROR = 'handler-error'
export type HandlerErrorReason = typeof HANDLER_ERROR

/** `name#fingerprint` of each function described so far. */
const described = new WeakMap<Function, string>()

/**
 * A function as a site names it: `name#<fingerprint of its source>`, so two deployments of
 * different code never share entries, while replicas running the same code do. Computed once per
 * function.
 */
export function describeFunction(fn: Function): string {
  let text = described.get(fn)
  if (text === undefined) {
    text = `${fn.name}#${sourceFingerprint(fn)}`
    described.set(fn, text)
  }
  return text
}

/**
 * The options a Fastify instance was created with, which Fastify 5 keeps under its
 * `fastify.options` symbol (on the root instance, and through the prototype chain on the
 * encapsulated instance a plugin gets), or `undefined` when they cannot be found.
 */
export function fastifyInstanceOptions(instance: unknown): Record<string, unknown> | undefined {
  if (instance === null || typeof instance !== 'object') return undefined
  for (let at: object | null = instance; at !== null; at = Object.getPrototypeOf(at)) {
    const symbol = Object.getOwnPropertySymbols(at).find((s) => s.description === 'fastify.options')
    if (symbol === undefined) continue
    const options = (instance as Record<symbol, unknown>)[symbol]
    return options !== null && typeof options === 'object' ? (options as Record<string, unknown>) : undefined
  }
  return undefined
}

/** The part of an Observable (rxjs's, Nest's `CallHandler.handle()`) that {@link onHandlerError} uses. */
interface ObservableLike {
  subscribe(observer: {
    next(value: unknown): void
    error(error: unknown): void
    complete(): void
  }): { unsubscribe(): void } | undefined
}

/**
 * The observable of a Nest handler's result (`next.handle()`, which Nest subscribes to later),
 * calling `failed` when it fails: a throw, a rejection or a pipe's refusal. Whatever answers the
 * error then (an exception filter, an outer interceptor's `catchError`), even with a 2xx, is that
 * failure's answer and must not be stored ({@link HANDLER_ERROR}). With `letGo`, also when it is
 * let go before it completes: an interceptor outside the cache failed on the result (a
 * `ClassSerializerInterceptor` whose transform throws), and Nest sends what the exception filters
 * answer instead. An interop observable, which Nest's rxjs reads as its own, so that no adapter
 * depends on rxjs for it. Anything that is not an observable is returned as it is.
 */
export function onHandlerError(
  handled: unknown,
  failed: () => void,
  options: { letGo?: boolean } = {},
): unknown {
  const source = handled as ObservableLike | null
  if (typeof source?.subscribe !== 'function') return handled
  const observable = {
    subscribe(observer: { next(value: unknown): void; error(error: unknown): void; complete(): void }) {
      let settled = false
      const subscription = source.subscribe({
        next: (value) => observer.next(value),
        error: (error) => {
          settled = true
          failed()
          observer.error(error)
        },
        complete: () => {
          settled = true
          observer.complete()
        },
      })
      if (!options.letGo) return subscription
      return {
        unsubscribe() {
          if (!settled) failed()
          settled = true
          subscription?.unsubscribe()
        },
      }
    },
  }
  // rxjs reads `Symbol.observable` where it is defined when rxjs loads, else `'@@observable'`.
  const interop: Record<PropertyKey, () => unknown> = { '@@observable': () => observable }
  const symbol = (Symbol as unknown as { observable?: symbol }).observable
  if (symbol !== undefined) interop[symbol] = () => observable
  return interop
}
