import type { OutgoingHttpHeaders } from 'node:http'
import { HANDLER_ERROR, type LookupResult, onHandlerError } from '@cache/http'
import type { CallHandler } from '@nestjs/common'
import { from, type ObservableInput, tap } from 'rxjs'

/**
 * What an interceptor that runs outside the cache's does after the handler: a global one
 * (`APP_INTERCEPTOR`, `app.useGlobalInterceptors`), one on the controller when `@CacheResponse` is
 * on the method, one listed before `@CacheResponse`. On a hit the cache answers before the handler
 * would, so such an interceptor never sees a result to transform: what it added on the miss (a
 * request id in the body, an `X-Request-Id` header, a timestamp) would be replayed to every later
 * request. So a miss is recorded only if the response Nest sends is what the handler produced:
 * the same body (as JSON, or the same value), the same status, and no header set or changed
 * between the handler's result and Nest's sending of it. Otherwise it is sent, and not stored
 * (`detail=outer-interceptor`). A status such an interceptor sets before the handler (Nest sets
 * the handler's own, `@HttpCode` or 200, before any interceptor runs) makes the request bypass
 * the cache: it is that request's own, which neither a stored entry nor a replay may carry.
 *
 * A result that fails on its way into the response (a `BigInt` or a circular object Nest cannot
 * serialize, a `toJSON` or Express's `json replacer` that throws, a Fastify `preSerialization` or
 * `onSend` hook that throws) is answered by the exception filters, not by the handler: the
 * response is sent, not stored (`detail=handler-error`). So is one whose result `JSON.stringify`
 * cannot serialize, even if the platform's own serializer could: what is sent can then not be
 * compared with the result.
 */
export const OUTER_INTERCEPTOR = 'outer-interceptor'

/** Where Nest sends a result: Express's response or Fastify's reply (and what an outer interceptor may call first). */
const SENDS = ['status', 'code', 'json', 'jsonp', 'send', 'render', 'view'] as const
const WITH_BODY = new Set<string>(['json', 'jsonp', 'send'])
const WITH_LOCALS = new Set<string>(['render', 'view'])
/** Nest's metadata key for a handler's `@HttpCode`. */
const HTTP_CODE_METADATA = '__httpCode__'

/** One request's watch over what runs outside the cache's interceptor, after its handler. */
export class OuterInterceptorWatch {
  private reason: string | undefined
  private produced = false
  private value: unknown
  private status: unknown
  private json: string | undefined
  private headers: OutgoingHttpHeaders = {}
  /** Headers Nest's adapter sets from a `StreamableFile` result as it sends it (Fastify's does so on the reply). */
  private fileHeaders: OutgoingHttpHeaders = {}
  private headersChecked = false
  private bodyChecked = false
  /** The handler's result was handed to `render`/`view`, which send the page they make later. */
  private rendering = false
  /** Calls of the sending methods under way: Express's `json` calls its own `send`. */
  private depth = 0

  /** @param response the platform's response: Express's `Response` or Fastify's `FastifyReply`. */
  constructor(private readonly response: any) {}

  /**
   * For the lookup's `verdict`: why the response must not be stored, once seen. When its head
   * leaves without Nest's sending of a body (a `StreamableFile` piped to the response), the status
   * is compared then.
   */
  readonly verdict = (stage?: string): string | undefined => {
    if (stage === 'head' && this.produced && !this.bodyChecked && statusOf(this.response) !== this.status)
      this.reason ??= OUTER_INTERCEPTOR
    return this.reason
  }

  /**
   * Why a `GET` to `handler` must bypass the cache before the lookup: its status is no longer the
   * one Nest set before the interceptors ran (its `@HttpCode`, else 200), so an interceptor
   * outside the cache's set it for this request.
   */
  statusSetBefore(method: string, handler: Function): string | undefined {
    if (method !== 'GET' && method !== 'HEAD') return undefined
    const status = statusOf(this.response)
    if (status === undefined) return undefined
    return status === handlerStatus(handler) ? undefined : OUTER_INTERCEPTOR
  }

  /**
   * `next`, watched when the result is a miss whose response is recorded. An error on the way out
   * of the handler (a throw, a rejection, a pipe's refusal) makes the response unstorable whatever
   * answers it then: an exception filter or an outer interceptor's `catchError` may send a 2xx
   * fallback, which is that failure's answer, not the handler's.
   */
  around(next: CallHandler, result: LookupResult): CallHandler {
    if (result.kind !== 'miss' || !result.recording) return next
    return {
      handle: () =>
        from(
          onHandlerError(next.handle().pipe(tap({ next: (value) => this.handlerProduced(value) })), () => {
            this.reason ??= HANDLER_ERROR
          }) as ObservableInput<unknown>,
        ),
    }
  }

  /** The handler's result, as it leaves the cache's interceptor (the last one, for a stream of them). */
  private handlerProduced(value: unknown): void {
    this.value = value
    this.json = jsonOf(value)
    this.status = statusOf(this.response)
    this.headers = headersOf(this.response)
    this.fileHeaders = streamableFileHeaders(value)
    if (this.produced) return
    this.produced = true
    const target = this.response as Record<string, unknown>
    // Express's response is a Node response whose `json` and `jsonp` send through its `send`;
    // Fastify's reply never calls its own `send` again but from its error path.
    const nested = typeof (target as { writeHead?: unknown }).writeHead === 'function'
    for (const name of SENDS) {
      const original = target[name]
      if (typeof original !== 'function') continue
      const watch = this
      target[name] = function (this: unknown, ...args: unknown[]) {
        if (watch.depth === 0 || !nested) watch.sending(name, args)
        watch.depth++
        try {
          return (original as (...a: unknown[]) => unknown).apply(this, args)
        } catch (error) {
          // Serializing the result threw (Express): the exception filters answer, not the handler.
          watch.failed()
          throw error
        } finally {
          watch.depth--
        }
      }
    }
  }

  /** The result failed on its way into the response: whatever is sent instead is an error's answer. */
  private failed(): void {
    this.reason = HANDLER_ERROR
  }

  /** Nest (or an outer interceptor) calls one of the sending methods, after the handler's result. */
  private sending(name: string, args: unknown[]): void {
    if (!this.headersChecked) {
      this.headersChecked = true
      const now = headersOf(this.response)
      for (const [name, value] of Object.entries(this.fileHeaders))
        if (this.headers[name] === undefined && String(now[name]) === String(value)) delete now[name]
      if (!sameHeaders(this.headers, now)) this.reason ??= OUTER_INTERCEPTOR
    }
    const body = WITH_BODY.has(name) ? 0 : WITH_LOCALS.has(name) ? 1 : -1
    if (body === -1) return
    if (this.bodyChecked) {
      // A second body after the result's: Fastify's error path (its serialization, a
      // `preSerialization` or `onSend` hook threw) answering through the exception filters.
      if (!this.rendering) this.failed()
      return
    }
    this.bodyChecked = true
    this.rendering = body === 1
    // The result is sent, but JSON cannot make it (`BigInt`, a cycle, a `toJSON` that throws):
    // the platform's serialization fails and a filter answers, or what it makes cannot be compared.
    if (args[body] === this.value && this.json === UNSERIALIZABLE) {
      this.failed()
      return
    }
    // The status as the body goes: one set after the handler (by `status()`/`code()` or on the
    // Node response) differs from the one it had when the handler's result left the cache.
    if (statusOf(this.response) !== this.status || !sameBody(this.value, this.json, args[body]))
      this.reason ??= OUTER_INTERCEPTOR
  }
}

/** The status Nest sets for each handler before its interceptors run, read once per handler. */
const handlerStatuses = new WeakMap<Function, number>()

/** A handler's `@HttpCode`, else 200. */
function handlerStatus(handler: Function): number {
  let status = handlerStatuses.get(handler)
  if (status === undefined) {
    const api = Reflect as unknown as { getMetadata?(key: unknown, target: object): unknown }
    const own = api.getMetadata?.(HTTP_CODE_METADATA, handler)
    status = typeof own === 'number' ? own : 200
    handlerStatuses.set(handler, status)
  }
  return status
}

/** The status on Express's response, or on Fastify's reply (its Node response's). */
function statusOf(response: any): number | undefined {
  const status = response?.statusCode ?? response?.raw?.statusCode
  return typeof status === 'number' ? status : undefined
}

function headersOf(response: any): OutgoingHttpHeaders {
  return typeof response?.getHeaders === 'function' ? { ...response.getHeaders() } : {}
}

/** What a `StreamableFile` result says of itself, as the headers Nest's adapters send for it. */
function streamableFileHeaders(value: unknown): OutgoingHttpHeaders {
  const file = value as { getStream?: unknown; getHeaders?: () => Record<string, unknown> } | null
  if (typeof file?.getStream !== 'function' || typeof file.getHeaders !== 'function') return {}
  const { type, disposition, length } = file.getHeaders()
  const headers: OutgoingHttpHeaders = {}
  if (typeof type === 'string') headers['content-type'] = type
  if (typeof disposition === 'string') headers['content-disposition'] = disposition
  if (typeof length === 'number' || typeof length === 'string') headers['content-length'] = String(length)
  return headers
}

function sameHeaders(before: OutgoingHttpHeaders, now: OutgoingHttpHeaders): boolean {
  const names = Object.keys(now).filter((name) => now[name] !== undefined)
  if (names.length !== Object.keys(before).filter((name) => before[name] !== undefined).length) return false
  return names.every((name) => before[name] !== undefined && String(before[name]) === String(now[name]))
}

/** What {@link jsonOf} gives for a result that `JSON.stringify` throws on. */
const UNSERIALIZABLE = '\u0000unserializable'

/**
 * The JSON text of a result that Nest would serialize, {@link UNSERIALIZABLE} when it cannot be
 * made; `undefined` for bytes, streams and files.
 */
function jsonOf(value: unknown): string | undefined {
  if (value === null || typeof value !== 'object') return undefined
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return undefined
  const v = value as { pipe?: unknown; getStream?: unknown }
  if (typeof v.pipe === 'function' || typeof v.getStream === 'function') return undefined
  try {
    return JSON.stringify(value)
  } catch {
    return UNSERIALIZABLE
  }
}

/**
 * Whether what is sent is the handler's result: the same value unchanged (in place too), one
 * that serializes alike (a `ClassSerializerInterceptor` that excludes nothing), the stream of a
 * `StreamableFile`, or the text Nest makes of a string or number, or nothing for nothing.
 */
function sameBody(value: unknown, json: string | undefined, sent: unknown): boolean {
  if (json === UNSERIALIZABLE) return false
  if (sent === value) return json === undefined || jsonOf(sent) === json
  // A `StreamableFile`: Fastify's adapter sends its stream.
  const file = value as { getStream?: () => unknown } | null | undefined
  if (typeof file?.getStream === 'function' && sent === file.getStream()) return true
  if (value === undefined || value === null) return sent === undefined || sent === null
  if (typeof value !== 'object') return sent === String(value)
  return json !== undefined && jsonOf(sent) === json
}
