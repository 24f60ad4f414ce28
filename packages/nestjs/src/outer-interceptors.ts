import type { OutgoingHttpHeaders } from 'node:http'
import type { LookupResult } from '@cache/http'
import type { CallHandler } from '@nestjs/common'
import { tap } from 'rxjs'

/**
 * What an interceptor that runs outside the cache's does after the handler: a global one
 * (`APP_INTERCEPTOR`, `app.useGlobalInterceptors`), one on the controller when `@CacheResponse` is
 * on the method, one listed before `@CacheResponse`. On a hit the cache answers before the handler
 * would, so such an interceptor never sees a result to transform: what it added on the miss (a
 * request id in the body, an `X-Request-Id` header, a timestamp) would be replayed to every later
 * request. So a miss is recorded only if the response Nest sends is what the handler produced:
 * the same body (as JSON, or the same value) and no header set or changed between the handler's
 * result and Nest's sending of it. Otherwise it is sent, and not stored (`detail=outer-interceptor`).
 */
export const OUTER_INTERCEPTOR = 'outer-interceptor'

/** Where Nest sends a result: Express's response or Fastify's reply (and what an outer interceptor may call first). */
const SENDS = ['status', 'code', 'json', 'jsonp', 'send', 'render', 'view'] as const
const WITH_BODY = new Set<string>(['json', 'jsonp', 'send'])
const WITH_LOCALS = new Set<string>(['render', 'view'])

/** One request's watch over what runs outside the cache's interceptor, after its handler. */
export class OuterInterceptorWatch {
  private reason: string | undefined
  private produced = false
  private value: unknown
  private json: string | undefined
  private headers: OutgoingHttpHeaders = {}
  private headersChecked = false
  private bodyChecked = false

  /** @param response the platform's response: Express's `Response` or Fastify's `FastifyReply`. */
  constructor(private readonly response: any) {}

  /** For the lookup's `verdict`: why the response must not be stored, once seen. */
  readonly verdict = (): string | undefined => this.reason

  /** `next`, watched when the result is a miss whose response is recorded. */
  around(next: CallHandler, result: LookupResult): CallHandler {
    if (result.kind !== 'miss' || !result.recording) return next
    return { handle: () => next.handle().pipe(tap((value) => this.handlerProduced(value))) }
  }

  /** The handler's result, as it leaves the cache's interceptor (the last one, for a stream of them). */
  private handlerProduced(value: unknown): void {
    this.value = value
    this.json = jsonOf(value)
    this.headers = headersOf(this.response)
    if (this.produced) return
    this.produced = true
    const target = this.response as Record<string, unknown>
    for (const name of SENDS) {
      const original = target[name]
      if (typeof original !== 'function') continue
      const watch = this
      target[name] = function (this: unknown, ...args: unknown[]) {
        watch.sending(name, args)
        return (original as (...a: unknown[]) => unknown).apply(this, args)
      }
    }
  }

  /** Nest (or an outer interceptor) calls one of the sending methods, after the handler's result. */
  private sending(name: string, args: unknown[]): void {
    if (!this.headersChecked) {
      this.headersChecked = true
      if (!sameHeaders(this.headers, headersOf(this.response))) this.reason ??= OUTER_INTERCEPTOR
    }
    if (this.bodyChecked) return
    if (WITH_BODY.has(name)) {
      this.bodyChecked = true
      if (!sameBody(this.value, this.json, args[0])) this.reason ??= OUTER_INTERCEPTOR
    } else if (WITH_LOCALS.has(name)) {
      this.bodyChecked = true
      if (!sameBody(this.value, this.json, args[1])) this.reason ??= OUTER_INTERCEPTOR
    }
  }
}

function headersOf(response: any): OutgoingHttpHeaders {
  return typeof response?.getHeaders === 'function' ? { ...response.getHeaders() } : {}
}

function sameHeaders(before: OutgoingHttpHeaders, now: OutgoingHttpHeaders): boolean {
  const names = Object.keys(now).filter((name) => now[name] !== undefined)
  if (names.length !== Object.keys(before).filter((name) => before[name] !== undefined).length) return false
  return names.every((name) => before[name] !== undefined && String(before[name]) === String(now[name]))
}

/** The JSON text of a result that Nest would serialize; `undefined` for bytes, streams and files. */
function jsonOf(value: unknown): string | undefined {
  if (value === null || typeof value !== 'object') return undefined
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return undefined
  const v = value as { pipe?: unknown; getStream?: unknown }
  if (typeof v.pipe === 'function' || typeof v.getStream === 'function') return undefined
  try {
    return JSON.stringify(value)
  } catch {
    return undefined
  }
}

/**
 * Whether what is sent is the handler's result: the same value unchanged (in place too), one
 * that serializes alike (a `ClassSerializerInterceptor` that excludes nothing), or the text Nest
 * makes of a string or number, or nothing for nothing.
 */
function sameBody(value: unknown, json: string | undefined, sent: unknown): boolean {
  if (sent === value) return json === undefined || jsonOf(sent) === json
  if (value === undefined || value === null) return sent === undefined || sent === null
  if (typeof value !== 'object') return sent === String(value)
  return json !== undefined && jsonOf(sent) === json
}
