import { AsyncLocalStorage } from 'node:async_hooks'
import { createHash } from 'node:crypto'
import {
  type IncomingHttpHeaders,
  type IncomingMessage,
  IncomingMessage as NodeIncomingMessage,
  ServerResponse as NodeServerResponse,
  type OutgoingHttpHeaders,
  type ServerResponse,
} from 'node:http'
import { CacheError, type CacheEvent, type CacheEventName, type CacheStats, type Duration } from '@cache/core'
import { optionNames } from '@cache/core/backend'
import {
  arrivalOf,
  notesArrivals,
  CONDITIONAL_REQUEST_HEADERS,
  DiscardingSocket,
  describeFunction,
  HANDLER_ERROR,
  type HeaderList,
  HttpCache,
  HTTP_CACHE_OPTION_NAMES,
  type HttpCacheOptions,
  type KnownOptions,
  headAsWritten,
  type HttpRequestView,
  type LookupContext,
  type LookupResult,
  lineValue,
  optionsArgument,
  listeningAt,
  type MissResult,
  offerCacheControl,
  type Refresh,
  type ResponseIndexEntry,
  type ResponseIndexOptions,
  resolveHttpCacheOptions,
  resolveSkippedOnHits,
  SKIPPED_MIDDLEWARE_OPTION_NAMES,
  type SkippedMiddlewareOptions,
  unstorableReason,
} from '@cache/http'
import type { Context, MiddlewareHandler, Next } from 'hono'
import type { StatusCode } from 'hono/utils/http-status'

/**
 * Options of {@link cacheResponse}: every option of the framework-neutral cache of @cache/http
 * (`ttl`, `backend`, `keyPrefix`, `vary`, `key`, `statuses`, `maxBodySize`, `allowAuthorized`,
 * `allowCookies`, `staleWhileRevalidate`, `revalidateTimeout`, `collapseTimeout`, `tags`,
 * `statusHeader`, `cacheName`, `etag`, `now`, `bypass`, `cacheControl`). The `key`, `tags` and
 * `bypass` functions receive Hono's `Context`. And `middlewareSkippedOnHits`: functions after the
 * cache that a hit may skip (a `compress()` instance after a global cache), documented in
 * @cache/http. Every option is optional; the defaults are safe.
 */
export interface CacheResponseOptions extends HttpCacheOptions<Context>, SkippedMiddlewareOptions {}

const KNOWN: KnownOptions = {
  names: optionNames<CacheResponseOptions>({
    ...HTTP_CACHE_OPTION_NAMES,
    ...SKIPPED_MIDDLEWARE_OPTION_NAMES,
  }),
  where: 'cacheResponse()',
}

/** Why a response is not stored when a function besides the handler ran after the cache. */
const MIDDLEWARE_AFTER_CACHE = 'middleware-after-cache'

/**
 * The header of `@hono/node-server`'s `RESPONSE_ALREADY_SENT`, the response a handler returns when
 * it answered on Node's response itself (`c.env.outgoing`): the server writes nothing for it.
 */
const ALREADY_SENT_HEADER = 'x-hono-already-sent'

/** Why such a response is not stored: its bytes never pass the cache. */
const ALREADY_SENT_REASON = 'response-already-sent'

/** The requests whose handler answered on Node's response itself (see {@link ALREADY_SENT_HEADER}). */
const answeredOnNode = new WeakSet<Context>()

/**
 * What `cacheResponse(options)` returns: Hono middleware (`app.get('/path', cacheResponse(60),
 * handler)` or `app.use('/api/*', cacheResponse(60))`), plus invalidation and stats for the
 * responses it stores.
 */
export interface ResponseCacheMiddleware extends MiddlewareHandler {
  /** Hits, misses, sets and backend errors of this cache. */
  readonly stats: CacheStats
  on(event: CacheEventName, listener: (event: CacheEvent) => void): void
  off(event: CacheEventName, listener: (event: CacheEvent) => void): void
  /** The backend key of a request, or `undefined` when the request bypasses the cache. */
  keyFor(c: Context): string | undefined
  /**
   * Removes the stored response for a URL (`https://host/path?query`, or a path with `host`),
   * with every variant its responses made with `Vary`, at every route of this process, and
   * renews the URL's generation so that no process serves it again, whatever the values of the
   * headers of the `vary` option: `headers` name the variant whose entry is deleted at once to
   * free its space. `true` if something was removed.
   */
  invalidate(url: string, options?: { host?: string; headers?: IncomingHttpHeaders }): Promise<boolean>
  /** Removes the stored response for a key built by the `key` option (without `keyPrefix`). */
  invalidateKey(key: string): Promise<boolean>
  /** Invalidates every response stored under this `keyPrefix`, in every process sharing the backend. */
  clear(): Promise<void>
  /**
   * The responses stored under this cache's `keyPrefix` that are still served: for debugging.
   * Reads every key of the prefix from the backend; backends that cannot list keys (memcached)
   * throw `CacheUnsupportedError`.
   */
  responseIndex(options?: ResponseIndexOptions): AsyncIterableIterator<ResponseIndexEntry>
}

/** The contexts of background refreshes, with the refresh each one runs. */
const refreshes = new WeakMap<Context, Refresh>()

/**
 * What each cache that records a refresh's response does once the whole chain ran for it (the
 * layers before the cache included): decide on the final headers, then store.
 */
const chainEnds = new WeakMap<Context, Map<HttpCache<Context>, () => void>>()

/** A miss being made: whether the request's code logged an error through `console.error` meanwhile. */
interface Making {
  logged: boolean
}

/**
 * The miss the code running now works for. Hono's stream helpers (`stream()`, `streamText()` of
 * `hono/streaming`) catch an error of their callback, log it with `console.error` and end the
 * body as if it were whole: that log, made in the request's async context, is the only sign.
 */
const making = new AsyncLocalStorage<Making>()

/** The `console.error` this package put in place (it calls the one it found). */
let watchingErrors: ((...args: unknown[]) => void) | undefined

/** Notes every `console.error` call on the miss it was made for (put back if replaced since). */
function watchErrorLog(): void {
  if (console.error === watchingErrors) return
  const original = console.error
  const watching = function (this: unknown, ...args: unknown[]): void {
    const miss = making.getStore()
    if (miss !== undefined) miss.logged = true
    original.apply(this, args)
  }
  watchingErrors = watching
  console.error = watching
}

/**
 * Caches whole HTTP responses (GET, with HEAD answered from the GET entry) as Hono middleware.
 * `options` may be a TTL alone: `cacheResponse(60)`, `cacheResponse('5m')`. See
 * {@link CacheResponseOptions}. One argument only: `cacheResponse(60, { vary })` is a
 * `CacheConfigError` (write `cacheResponse({ ttl: 60, vary })`), as is `null`.
 *
 * On a miss the response the handler made (`c.res` after `await next()`) goes to the client as
 * it is produced: its body passes through a stream that copies each chunk, and it is stored once
 * the last byte was handed over. Headers that middleware before the cache set (a session's
 * `Set-Cookie`, `Cache-Control: private`) are decided on, and not stored: that middleware sets
 * them again on a hit.
 */
export function cacheResponse(options?: CacheResponseOptions | Duration): ResponseCacheMiddleware
export function cacheResponse(...args: unknown[]): ResponseCacheMiddleware {
  const options = optionsArgument<CacheResponseOptions>(args, 'cacheResponse')
  const http = new HttpCache<Context>({}, resolveHttpCacheOptions(options, KNOWN))
  const skipped = resolveSkippedOnHits(options)
  const handled = new WeakSet<Context>()

  const middleware = async (c: Context, next: Next): Promise<Response | undefined> => {
    // The same cache reached twice by one request (mounted at two levels): the outer one decides.
    if (handled.has(c)) {
      await next()
      return undefined
    }
    handled.add(c)
    if (!nodeServerLoading) loadNodeServer(c.env)
    const refresh = refreshes.get(c)
    if (refresh !== undefined) {
      const edited = editedOnCopy(c)
      if (edited.length > 0) {
        // Its handler would render for a request the stale hit was not: nothing it makes is stored.
        refresh.fail(
          new CacheError(
            `the refresh of ${refresh.key} was not stored: its copy reached the cache with other request headers than the stale hit (${edited.join(', ')}); a layer before the cache acted otherwise on it`,
          ),
        )
        return undefined
      }
    }
    const view = requestView(c, refresh)
    let result: LookupResult = http.lookup(
      view,
      new HonoLookup(c, c.req.routeIndex, skipped, refresh === undefined ? revalidate : undefined),
    ) as LookupResult
    if (isThenable(result)) result = await result
    if (result.kind === 'hit' || result.kind === 'not-modified') {
      // Without the stored length: the server counts the bytes, as for the app's own responses,
      // so a layer before the cache that rewrites the body (`c.res = new Response(html, c.res)`)
      // does not carry a length that no longer fits it.
      const headers = headerRecord(result.headers, 'content-length')
      // The stored bytes as they are (no copy): a Response never writes into its body. No bytes
      // go as no body, as a bodiless miss (`c.body(null)`, a 204, a redirect) went: given an empty
      // one, @hono/node-server would add a `Content-Type` the miss never had. An empty body that
      // was not null on the miss has its `Content-Type` stored (see `record`), and goes with it.
      const stored =
        result.kind === 'hit' && !result.headOnly ? (result.body as Uint8Array<ArrayBuffer>) : null
      const body = stored !== null && stored.byteLength > 0 ? stored : null
      // Headers as a record: Hono sets them over those that layers before the cache prepared,
      // without building a `Headers` of them first.
      const response = c.newResponse(body, result.status as StatusCode, headers)
      // Headers the layers before the cache set again that the handler had removed on the miss.
      if (result.remove !== undefined) {
        const outgoing = nodeOutgoing(c.env)
        for (const name of result.remove) {
          response.headers.delete(name)
          // On Node's response too, where such a layer may have set it (`c.env.outgoing.setHeader`).
          if (outgoing !== undefined && !outgoing.headersSent) outgoing.removeHeader(name)
        }
      }
      const cacheControl = result.cacheControl
      // The cache's `Cache-Control` only where nothing says the response is not for everyone: a
      // `Set-Cookie` or `Cache-Control` of the entry, or of a layer before the cache (a visitor's
      // cookie, `no-store`), set before `await next()` or, on Node, after it.
      if (cacheControl !== undefined && sharable(response.headers)) {
        response.headers.set('cache-control', cacheControl)
        const outgoing = nodeOutgoing(c.env)
        if (outgoing !== undefined) watchHead(outgoing, unjudged, [], cacheControl)
      }
      return response
    }
    if (result.kind === 'bypass' || !result.recording) {
      await next()
      if (result.set.length === 0) return undefined
      // Set on Hono's response, the server would write that over the one the handler sent itself.
      if (c.res.headers.has(ALREADY_SENT_HEADER)) addToNodeHead(nodeOutgoing(c.env), result.set)
      else for (const [name, value] of result.set) c.header(name, value)
      return undefined
    }
    // The headers layers before the cache prepared: theirs, set again on every request.
    const before = outgoingHeaders(c.newResponse(null).headers)
    await record(c, next, result, before, refresh !== undefined)
    return undefined
  }

  /** Runs the rest of the request and records the response it made, as it streams to the client. */
  const record = async (
    c: Context,
    next: Next,
    miss: MissResult,
    before: OutgoingHttpHeaders,
    refreshing: boolean,
  ): Promise<void> => {
    const recorder = miss.recorder
    const made: Making = { logged: false }
    // The connection the bytes leave on, when the server is Node's: stored only once they left.
    // A refresh's Node response is its own, written nowhere (see `revalidate`): there is no
    // connection to wait for, its head is written once its chain is over.
    const node = nodeOutgoing(c.env)
    const outgoing = refreshing ? undefined : node
    const onNodeBefore = node?.getHeaders()
    // What the layers before the cache set, on Hono's response or on Node's: a hit sends again
    // what they set, less what the handler removed.
    const earlier = [...Object.keys(before), ...Object.keys(onNodeBefore ?? {})]
    // The names the handler (and the layers after the cache) set or remove, on Hono's response and
    // on Node's: its own whatever their value. Compared by value with `before`, a header it set to
    // what a layer before had set on the miss (`Content-Language: fr` for a French client) would
    // be left to that layer on hits, and a removal that found nothing would not be replayed.
    const onHono = new Set<string>()
    const onNodeNames = new Set<string>()
    const stopNoting = noteHandlerHeaders(c, onHono, node, onNodeNames)
    watchErrorLog()
    try {
      await making.run(made, next)
    } catch (error) {
      recorder.abort('error')
      throw error
    } finally {
      stopNoting()
    }
    const res = c.res
    // Taken before the body is read: reading it can make the fetch `Response` behind Hono's add
    // a `Content-Type` (`text/plain;charset=UTF-8` for a string) the server would not have sent.
    const resHeaders = res.headers
    const headers = outgoingHeaders(resHeaders)
    if (headers[ALREADY_SENT_HEADER] !== undefined) {
      // The handler wrote the response on Node's response itself, maybe before this line: its
      // bytes never pass the cache, which cannot tell what was sent, nor when it is whole. It is
      // not stored, and `c.res` stays as it is, so that the server leaves it alone. The status
      // header says why, where the handler's headers have not left yet.
      answeredOnNode.add(c)
      const advice = recorder.head({ status: res.status, headers })
      recorder.abort(ALREADY_SENT_REASON)
      addToNodeHead(nodeOutgoing(c.env), advice.set)
      return
    }
    const own: OutgoingHttpHeaders = {}
    for (const [name, value] of Object.entries(headers)) {
      if (value !== undefined && (onHono.has(name) || String(value) !== String(before[name])))
        own[name] = value
    }
    // @hono/node-server gives a body without a type its default one: stored as the handler's, so
    // that a hit on an empty body is told from a miss that had no body (`c.body(null)`).
    if (node !== undefined && headers['content-type'] === undefined && res.body !== null)
      own['content-type'] = DEFAULT_CONTENT_TYPE
    // Headers the handler set on Node's response (`c.env.outgoing.setHeader`) go out with the
    // response unless Hono's has that name (the server writes Hono's over them): they are the
    // handler's, stored and replayed as Hono's own are, so that a hit says what the miss said.
    if (onNodeBefore !== undefined) {
      const onNode = node!.getHeaders()
      for (const [name, value] of Object.entries(onNode)) {
        if (value === undefined || headers[name] !== undefined) continue
        if (!onNodeNames.has(name) && String(value) === String(onNodeBefore[name])) continue
        headers[name] = value
        own[name] = value
      }
    }
    // Those it removed (or set, then lost) count with the layers' before it: absent from the miss,
    // they are removed on hits, where a layer before the cache may set them.
    for (const names of [onHono, onNodeNames])
      for (const name of names) if (!earlier.includes(name)) earlier.push(name)
    const advice = recorder.head({
      status: res.status,
      headers,
      own: { status: res.status, headers: own, earlier },
    })
    const sent = new Headers(resHeaders)
    for (const [name, value] of miss.set) sent.set(name, value)
    for (const [name, value] of advice.set) sent.set(name, value)
    const cacheControl = advice.cacheControl !== undefined && sharable(sent) ? advice.cacheControl : undefined
    if (cacheControl !== undefined) sent.set('cache-control', cacheControl)
    // A layer before the cache that adds `Set-Cookie` after `await next()`: the response is not
    // stored (see `judge`), and leaves without the cache's `Cache-Control` either.
    if (outgoing !== undefined && cacheControl !== undefined && !advice.storable)
      watchHead(outgoing, unjudged, [], cacheControl)
    /** The error sign of Hono's stream helpers, or an error `app.onError` answered. */
    const failed = () => made.logged || c.error !== undefined
    // Middleware before the cache runs on after `await next()` (a session writing its cookie):
    // what is stored is decided again on the headers the client receives. On Node they are those
    // the server writes (see `headAsWritten`); for a refresh, those of the copy's response once its
    // whole chain ran; elsewhere, those of Hono's response once its body was read through.
    let judged = false
    /** The status and headers the client received, once known: on Node, once `writeHead` ran. */
    let received: { status: number; headers: OutgoingHttpHeaders } | undefined
    let bodyOver = false
    const judge = (final: OutgoingHttpHeaders, written?: { status: number }): string | undefined => {
      judged = true
      // `app.onError` answered the handler's error, or the request's code logged one: the status
      // line says so rather than `stored` (the body's end would abort it anyway).
      if (failed()) {
        recorder.abort(HANDLER_ERROR)
        return HANDLER_ERROR
      }
      // The cache's own `Cache-Control` (`private` under the `vary` option) is not a layer's.
      const ours = advice.cacheControl !== undefined && String(final['cache-control']) === advice.cacheControl
      const reason = unstorableReason(ours ? { ...final, 'cache-control': headers['cache-control'] } : final)
      if (reason !== undefined) recorder.abort(`not-storable: ${reason} set after the cache`)
      else if (written !== undefined || outgoing === undefined) {
        received = { status: written?.status ?? c.res.status, headers: final }
        endRecording()
      }
      return reason
    }
    /**
     * Ends the recording once the body is over and the head the client received is known: the
     * entry's variants (its `Vary`, whoever set it: the handler on `c.env.outgoing`, a layer
     * before the cache, a hook as the headers leave), its freshness and whether it is stored are
     * decided on that head, as the client will be answered from it. Its `Content-Length` is the
     * one the cache passed on with the bytes it recorded: a layer before the cache that
     * compresses or rewrites them frames them anew, on hits too.
     */
    const endRecording = () => {
      if (!bodyOver || received === undefined) return
      const final = { ...received.headers }
      if (headers['content-length'] === undefined) delete final['content-length']
      else final['content-length'] = headers['content-length']
      recorder.end(undefined, {
        head: {
          status: received.status,
          headers: final,
          own: { status: res.status, headers: own, earlier },
        },
      })
    }
    // A refresh is stored once both its chain and its body are over.
    let chainOver = !refreshing
    if (refreshing) {
      let ends = chainEnds.get(c)
      if (ends === undefined) chainEnds.set(c, (ends = new Map()))
      ends.set(http, () => {
        chainOver = true
        if (!judged) {
          // The head as the server would write it on the refresh's own Node response, with what
          // the layers before the cache put there (`setHeader`, an `on-headers` hook, a
          // `ServerResponse` subclass): judged as a miss's head is on the client's connection.
          if (node === undefined) judge(outgoingHeaders(c.res.headers))
          else {
            const head = writeHeadOf(node, c.res)
            if (head !== undefined) judge(head.headers, head)
            else recorder.abort("not-storable: the refresh's head was written before its chain ended")
          }
        }
        if (bodyOver) finish()
      })
    }
    const finish = () => {
      // A refresh's own response a layer destroyed (see `failOnDestroy`): given up, as a client's is.
      if (refreshing && node?.destroyed === true) return recorder.abort('closed')
      if (outgoing === undefined || outgoing.writableFinished)
        return received !== undefined ? recorder.finish() : recorder.abort('headers-unseen')
      if (outgoing.destroyed) return recorder.abort('closed')
      outgoing.once('finish', () =>
        received !== undefined ? recorder.finish() : recorder.abort('headers-unseen'),
      )
      outgoing.once('close', () => recorder.abort('closed'))
    }
    if (!advice.storable) recorder.abort('not-storable')
    else if (outgoing !== undefined)
      watchHead(
        outgoing,
        judge,
        advice.set.map(([name]) => name.toLowerCase()),
        cacheControl,
      )
    const source = res.body
    if (source === null || !advice.storable) {
      if (source === null) {
        if (failed()) recorder.abort('source-error')
        bodyOver = true
        endRecording()
        // Without Node's response nothing tells when the layers before the cache are done with
        // a bodiless response: it is not stored (a refresh's chain end tells).
        if (refreshing) {
          if (chainOver) finish()
        } else if (outgoing === undefined) recorder.abort('headers-unseen')
        else finish()
      }
      c.res = undefined
      c.res = new Response(source, { status: res.status, statusText: res.statusText, headers: sent })
      return
    }
    const reader = source.getReader()
    let over = false
    const body = new ReadableStream<Uint8Array>(
      {
        async pull(controller) {
          let chunk: Awaited<ReturnType<typeof reader.read>>
          try {
            chunk = await reader.read()
          } catch (error) {
            // The handler's stream failed half-way: the client gets a broken body, the cache nothing.
            over = true
            recorder.abort('source-error')
            controller.error(error)
            return
          }
          if (chunk.done) {
            over = true
            // A stream helper whose callback threw ends its body as if it were whole: not stored.
            if (failed()) recorder.abort('source-error')
            bodyOver = true
            if (!refreshing && outgoing === undefined && !judged) judge(outgoingHeaders(c.res.headers))
            endRecording()
            if (chainOver) finish()
            controller.close()
            return
          }
          recorder.write(chunk.value)
          controller.enqueue(chunk.value)
        },
        cancel(reason) {
          // The client went away (or a layer gave up on the body): what it got is not whole.
          if (!over) recorder.abort('cancelled')
          over = true
          return reader.cancel(reason)
        },
      },
      { highWaterMark: 0 },
    )
    c.res = undefined
    c.res = new Response(body, { status: res.status, statusText: res.statusText, headers: sent })
  }

  /**
   * Runs a copy of the request (without its conditional headers) in the background, in a context
   * of its own, through every middleware and handler the request matched, from the first: the
   * layers before the cache (a language detector, a tenant from `Host`) run for it as they run for
   * a client's request. The refresh of a stale entry.
   */
  const revalidate = (c: Context, refresh: Refresh): (() => void) | false => {
    const match = matchResultOf(c)
    if (match === undefined) return false
    // On @hono/node-server, the copy has a Node request of its own (see `refreshEnv`), with the
    // header lines the client sent, and its `Request` is built from it by the server's own code
    // (see `nodeRequestOf`): what the layers do to `c.env.incoming.headers` on the copy is what
    // its handler reads through `c.req.header()`, as on a client's request. Elsewhere, the Request
    // as the layers left it, without its conditional headers. Either way the copy must reach the
    // cache with the stale hit's request headers there (see `editedOnCopy`).
    const sent = copyLines(c.env)
    const env = refreshEnv(c.env, sent)
    if (env === NO_OWN_REQUEST) return false
    let request: Request | undefined
    if (env !== c.env) {
      const { incoming, outgoing } = env as { incoming: IncomingMessage; outgoing: ServerResponse }
      request = nodeRequestOf?.(incoming, outgoing)
      if (request === undefined || !sameUrl(request.url, c.req.raw.url)) {
        endOwnResponse(outgoing as unknown as NodeOutgoing)
        return false
      }
      if (request.url !== c.req.raw.url) hitUrls.set(refresh, c.req.raw.url)
    } else {
      const headers = new Headers()
      if (sent === undefined) for (const [name, value] of c.req.raw.headers) headers.append(name, value)
      else
        for (let i = 0; i + 1 < sent.length; i += 2) {
          try {
            headers.append(sent[i]!, sent[i + 1]!)
          } catch {
            // A line the fetch Headers refuse (an HTTP/2 pseudo-header): the Request never had it.
          }
        }
      for (const name of CONDITIONAL_REQUEST_HEADERS) headers.delete(name)
      request = new Request(c.req.raw.url, { method: 'GET', headers })
    }
    const hit = hitHeaders.get(c) ?? requestHeaderMap(c.req.raw.headers)
    if (hit === undefined) {
      if (env !== c.env) endOwnResponse(nodeOutgoing(env) as unknown as NodeOutgoing)
      return false
    }
    const Ctx = c.constructor as new (req: Request, options: object) => Context
    const copy = new Ctx(request, {
      env,
      executionCtx: executionContextOf(c),
      path: c.req.path,
      matchResult: match,
    })
    refreshes.set(copy, refresh)
    copyWatches.set(copy, watchCopy(hit, request))
    const handlers = match[0]
    // What Hono's own dispatch does, minus `app.onError`: an error fails the refresh.
    const dispatch = async (i: number): Promise<void> => {
      const entry = handlers[i]
      if (entry === undefined) {
        if (!copy.finalized)
          throw new CacheError(
            `the refresh of ${refresh.key} got no response (the last handler called next())`,
          )
        return
      }
      copy.req.routeIndex = i
      const res = await entry[0][0](copy, () => dispatch(i + 1))
      if (res instanceof Response && !copy.finalized) copy.res = res
    }
    let reader: ReadableStreamDefaultReader<Uint8Array> | undefined
    const run = async () => {
      await dispatch(0)
      const ends = chainEnds.get(copy)
      for (const end of ends?.values() ?? []) end()
      if (ends?.has(http) !== true)
        refresh.fail(
          new CacheError(
            `the refresh of ${refresh.key} never reached the cache (a layer before it answered)`,
          ),
        )
      const body = copy.res.body
      if (refresh.done) return void body?.cancel().catch(() => {})
      // The copy's response goes nowhere: read it through, which records it.
      reader = body?.getReader()
      if (reader === undefined) return
      for (;;) if ((await reader.read()).done) break
    }
    // The refresh's own Node response ends once its chain is over, whatever the outcome, or once
    // the cache stops the refresh (after revalidateTimeout, a chain that never settles).
    const own = env === c.env ? undefined : nodeOutgoing(env)
    // A layer that destroys it (a request-timeout) gives the refresh up, as a client's miss
    // destroyed that way is not stored: the refresh fails.
    if (own !== undefined)
      failOnDestroy(own as unknown as ServerResponse, () =>
        refresh.fail(
          new CacheError(
            `the refresh of ${refresh.key} was given up: a layer destroyed its response (c.env.outgoing.destroy())`,
          ),
        ),
      )
    let ownEnded = false
    const endOwn = () => {
      if (own === undefined || ownEnded) return
      ownEnded = true
      endOwnResponse(own)
    }
    // Started once the cache knows how to stop it; outside the request's own miss, if any.
    queueMicrotask(() => {
      if (refresh.done) return endOwn()
      making.exit(() =>
        run()
          .catch((error: unknown) => refresh.fail(error))
          .finally(endOwn),
      )
    })
    return () => {
      reader?.cancel().catch(() => {})
      endOwn()
    }
  }

  const handler = middleware as unknown as ResponseCacheMiddleware
  Object.defineProperty(handler, 'stats', { get: () => http.stats })
  handler.on = (event, listener) => http.on(event, listener)
  handler.off = (event, listener) => http.off(event, listener)
  handler.keyFor = (c) => http.keyFor(requestView(c, undefined))
  handler.invalidate = (url, opts = {}) => http.invalidate(url, opts)
  handler.invalidateKey = (key) => http.invalidateKey(key)
  handler.clear = () => http.clear()
  handler.responseIndex = (opts) => http.responseIndex(opts)
  return handler
}

/**
 * `middleware-after-cache` when a function besides the one that answered ran between the cache
 * (at `at` among the functions the request matched) and the response, and is not listed in
 * `middlewareSkippedOnHits`: a hit answers before it, so a guard there (`app.get(path, cache,
 * guard, handler)`, an `app.use` after the cache, a sub-app's middleware under a cached prefix)
 * would be skipped. Hono's dispatch enters the functions in order, each through the `next` of the
 * one before, and notes the index of each in `c.req.routeIndex`: after the chain ran, it is the
 * deepest one reached, the one that answered; every function between the cache and it ran and
 * passed the request on. Whether the one that answered is listed does not matter (its effect is
 * the response); whether each of those before it is listed does, whatever their order.
 */
function ranAfter(c: Context, at: number, skipped: ReadonlySet<Function>): string | undefined {
  const match = matchResultOf(c)
  if (match === undefined) return undefined
  const answered = Math.min(c.req.routeIndex, match[0].length - 1)
  for (let i = at + 1; i < answered; i++) if (!skipped.has(match[0][i]![0][0])) return MIDDLEWARE_AFTER_CACHE
  return undefined
}

/** The request's `ExecutionContext` (Cloudflare Workers and the like), if it has one. */
function executionContextOf(c: Context): unknown {
  try {
    return c.executionCtx
  } catch {
    // Hono throws when there is none.
    return undefined
  }
}

/**
 * How Hono sees the request: the method the client sent (`HEAD` included, which Hono routes as
 * `GET`), the path and query of its URL, the protocol of that URL, the `Host` header (none: the
 * request bypasses the cache), and the route it reached as the site.
 */
function requestView(c: Context, refresh: Refresh | undefined): HttpRequestView<Context> {
  const raw = c.req.raw
  const url = urlParts(refresh === undefined ? raw.url : copyUrl(raw.url, refresh))
  // HTTP/2 clients (browsers) send `:authority` and no `Host`; Hono's URL is built from it.
  const host = raw.headers.get('host') ?? authorityOf(c.env)
  let site: string | undefined | null = null
  return {
    // A target in absolute form (`GET http://a.example/ HTTP/1.1`, what clients send a proxy) is
    // routed on its own authority, while the handler may read another one in `Host`: keyed on
    // either, a response could be planted for the other host. A URL holding what the key leaves
    // out (a raw `#fragment` in the target, user info in an absolute-form one) is read whole by
    // a handler that echoes `c.req.url`: the attacker's text would be stored for everyone.
    ...((host !== undefined && host !== url.host) || url.unkeyed
      ? { bypass: 'url' }
      : isRewritten(c.env, raw.url)
        ? { bypass: 'rewritten-url' }
        : {}),
    method: raw.method,
    url: url.target,
    headers: headerView(raw.headers),
    rawHeaders: sentHeaderLines(c.env),
    // The credential and body lines as the server emitted the request: a layer may strip a line
    // from `rawHeaders` too.
    arrivedLines: arrivedAt((c.env as { incoming?: unknown } | undefined)?.incoming)?.lines,
    protocol: url.protocol,
    host: host === undefined ? undefined : url.host,
    get site() {
      if (site === null) site = siteOf(c)
      return site
    },
    raw: c,
    ...(refresh === undefined ? {} : { refresh }),
  }
}

/**
 * Whether a layer before the cache handed on a `Request` whose URL is not the one the client sent
 * (`c.req.raw = new Request(url, c.req.raw)` without `preview=1`, with a language added, on
 * another host): on `@hono/node-server`, the URL the server built from the target and `Host` it
 * received (`c.env.incoming`), as the URL parser spells it, against the one the handler reads.
 * Hono routed the request on the first; the handler reads the second, which may hold what the
 * first does not (a flag taken out of the query) or lack what it holds. A target changed before
 * Hono was handed Node's request (Express in front, a listener of the server's own) is told by
 * {@link arrivedAsHandedOn}. Elsewhere Hono has only the `Request` as the layers left it: `false`.
 */
function isRewritten(env: unknown, href: string): boolean {
  const incoming = (env as { incoming?: ReceivedRequest } | undefined)?.incoming
  const target = incoming?.url
  if (typeof target !== 'string') return false
  if (!arrivedAsHandedOn(incoming!, target)) return true
  const absolute = target.startsWith('http://') || target.startsWith('https://')
  let sent: string
  if (absolute) sent = target
  else {
    // What `@hono/node-server` builds: `scheme://host` + the target, parsed unless plain.
    const host = incoming!.authority ?? incoming!.headers?.host
    if (typeof host !== 'string') return false
    const scheme = incoming!.scheme ?? (incoming!.socket?.encrypted === true ? 'https' : 'http')
    sent = `${scheme}://${host}${target}`
    if (href === sent || (target === '' && href === `${sent}/`)) return false
  }
  try {
    return withoutFragment(new URL(sent).href) !== withoutFragment(new URL(href).href)
  } catch {
    return true
  }
}

/**
 * The URL of the stale hit a refresh stands for, as the hit's `Request` at the cache spelled it,
 * when the copy's `Request` spells it otherwise (see {@link sameUrl}): code in front of the app (a
 * `fetch` wrapper's `new Request(req.url, req)`) does not run for a copy.
 */
const hitUrls = new WeakMap<Refresh, string>()

/**
 * The URL a refresh's copy is keyed on: the stale hit's spelling of it when the copy reached the
 * cache with another spelling of the same URL (keyed on its own, it would refresh another entry).
 */
function copyUrl(href: string, refresh: Refresh): string {
  const hit = hitUrls.get(refresh)
  return hit !== undefined && sameUrl(href, hit) ? hit : href
}

/**
 * Whether two URL strings are one URL as the URL parser reads them: @hono/node-server keeps a
 * plain target as sent (`?q=O'Brien`), a `Request` built again from it (`c.req.raw.clone()`, a
 * `fetch` wrapper's `new Request(req.url, req)`) spells it as the parser does (`?q=O%27Brien`).
 */
function sameUrl(a: string, b: string): boolean {
  if (a === b) return true
  try {
    return new URL(a).href === new URL(b).href
  } catch {
    return false
  }
}

/**
 * Whether Node's request reached Hono with the target it arrived with at its server: a layer in
 * front of Hono's node listener (Express middleware that strips a locale prefix or adds `?lang=`,
 * Express mounting the listener at a path, a server's own listener or a second `request` listener
 * rewriting `req.url`) hands Hono another request than the one sent, which Hono builds its whole
 * URL from, so the comparison of that URL with `c.req.raw` cannot see it. Told by the target the
 * server noted as it emitted the request, before any listener (see `noteArrivals`), and by
 * Express's `originalUrl`. A request the server did not note (one that arrived before the cache
 * first saw that server, and `noteArrivals` was not called; one handed on by another server; one
 * passed on by an `emit` wrapped around the noting one) cannot be told from a rewritten one:
 * `false` too.
 */
function arrivedAsHandedOn(incoming: ReceivedRequest, target: string): boolean {
  const original = incoming.originalUrl
  if (original !== undefined && original !== target) return false
  const server = incoming.socket?.server
  // Checked first: a server seen for the first time starts noting for the requests to come.
  if (!notesArrivals(server)) return false
  const arrived = arrivedAt(incoming)
  if (arrived === undefined || arrived.server !== server || arrived.url !== target) return false
  // HTTP/1: Hono's URL is built from the `Host` header, which a listener before Hono may have
  // rewritten with its line in `rawHeaders` (a domain alias): the line noted as it arrived tells.
  if (arrived.lines !== undefined && lineValue(arrived.lines, 'host') !== incoming.headers?.host) return false
  // HTTP/2: Hono's URL is built from `:authority`, which a `stream` listener could edit too.
  return arrived.authority === undefined || arrived.authority === incoming.authority
}

/** The stale hit's Node request each refresh's own one (see {@link refreshEnv}) stands for. */
const refreshedRequests = new WeakMap<object, object>()

/**
 * What the server noted of `incoming` as it arrived (see `noteArrivals`); for a refresh's own Node
 * request, what it noted of the stale hit's.
 */
function arrivedAt(incoming: unknown): ReturnType<typeof arrivalOf> {
  return arrivalOf(
    incoming !== null && typeof incoming === 'object'
      ? (refreshedRequests.get(incoming) ?? incoming)
      : incoming,
  )
}

/**
 * The header lines of a refresh's copy of the request, on `@hono/node-server` (see
 * {@link refreshEnv}): those the client sent (`c.env.incoming.rawHeaders`), with the ones the
 * server noted as it emitted the request (`Host`, forwarded, credential and body lines: a layer
 * may have rewritten or deleted them in `rawHeaders`, an auth layer removing the token it
 * verified) taken as noted, so that the layers run on them again as they did on the miss;
 * conditional ones left out. `undefined` elsewhere (other runtimes hand Hono the `Request` alone).
 */
function copyLines(env: unknown): string[] | undefined {
  const lines = sentHeaderLines(env)
  if (lines === undefined) return undefined
  const arrived = arrivedAt((env as { incoming?: unknown }).incoming)?.lines
  const noted = new Set<string>()
  if (arrived !== undefined) for (let i = 0; i < arrived.length; i += 2) noted.add(arrived[i]!.toLowerCase())
  const sent: string[] = []
  for (const from of arrived === undefined ? [lines] : [lines, arrived]) {
    for (let i = 0; i + 1 < from.length; i += 2) {
      const name = String(from[i]).toLowerCase()
      if (from === lines && noted.has(name)) continue
      if (!CONDITIONAL_REQUEST_HEADERS.includes(name)) sent.push(String(from[i]), String(from[i + 1]))
    }
  }
  return sent
}

/**
 * Builds a refresh copy's `Request` from its own Node request and response as
 * `@hono/node-server` builds a client's, with its `getRequestListener`: a fetch callback that
 * takes the Request it is handed (synchronously) and answers nothing. On that server,
 * `c.req.header()` reads Node's `c.env.incoming.headers`, so a layer that deletes or sets a
 * header there is read by the handler: a `Request` built from the lines would keep a header the
 * layer deleted. `undefined` until the server's module is loaded (see {@link loadNodeServer}), or
 * when it cannot build one (the copy is not run: the request refreshes the entry itself).
 */
let nodeRequestOf: ((incoming: IncomingMessage, outgoing: ServerResponse) => Request | undefined) | undefined

/** Whether {@link loadNodeServer} was called. */
let nodeServerLoading = false

/**
 * Loads `@hono/node-server` (the app's, an optional peer dependency) the first time a request
 * comes from it, for the copies of background refreshes (see {@link nodeRequestOf}): done long
 * before the first entry goes stale. Until then, or if it cannot be loaded, stale hits on it are
 * refreshed by the request itself.
 */
function loadNodeServer(env: unknown): void {
  if (nodeServerLoading || nodeOutgoing(env) === undefined) return
  nodeServerLoading = true
  ;(import(NODE_SERVER) as Promise<typeof import('@hono/node-server')>).then(
    ({ getRequestListener }) => {
      let taken: Request | undefined
      const listener = getRequestListener(
        (request) => {
          taken = request
          throw TAKEN
        },
        // The copy's Request only: the global `Request` is the app's business, and nothing is
        // written on the copy's response.
        { overrideGlobalObjects: false, errorHandler: () => undefined },
      )
      nodeRequestOf = (incoming, outgoing) => {
        taken = undefined
        listener(incoming, outgoing).catch(() => {})
        const request = taken
        taken = undefined
        return request
      }
    },
    () => {
      // Not installed where the app's server is: stale hits on it refresh in the request.
    },
  )
}

/**
 * Named out of the `import()` call: a bundler building an app for another runtime (Workers, Deno)
 * leaves it alone rather than fail on a package the app does not install.
 */
const NODE_SERVER = '@hono/node-server'

/** What the fetch callback of {@link nodeRequestOf} throws once it has the Request. */
const TAKEN = new Error('the refresh copy’s Request was taken')

/** What {@link refreshEnv} returns when it cannot give a refresh a Node request of its own. */
const NO_OWN_REQUEST = Symbol('no own request')

/**
 * The `c.env` of a background refresh on `@hono/node-server`: the stale hit's, with a Node request
 * and response of the refresh's own, on a socket of their own that discards what it is sent (see
 * `DiscardingSocket`; it carries the hit socket's addresses). The request is a new
 * `IncomingMessage` with the method (`GET`), target and header lines the client sent (`sent`: the
 * noted ones for the host, forwarded, credential and body lines, the live `rawHeaders` otherwise,
 * conditional ones left out; its `headers` Node builds from them): a layer that read the user from
 * `c.env.incoming.headers` and then deleted or swapped the line on the stale hit's request reads
 * it again as sent. The response is of the class the server made the hit's with (a
 * `ServerResponse` subclass of `serverOptions`). What the refresh's layers set there
 * (`c.env.outgoing.setHeader('Vary', …)`, an `on-headers` hook) is judged with its head, as on a
 * miss; and what the stale hit's own layers keep doing on theirs (a timing header after `await
 * next()`) is not the refresh's. Only over HTTP/1 (see {@link backgroundRefreshFaithful}):
 * {@link NO_OWN_REQUEST} when the hit's request is not an `IncomingMessage`. Elsewhere, `c.env`
 * as it is.
 */
function refreshEnv(env: unknown, sent: string[] | undefined): unknown {
  const outgoing = nodeOutgoing(env)
  if (outgoing === undefined) return env
  const hit = (env as { incoming?: unknown }).incoming
  if (sent === undefined || !(hit instanceof NodeIncomingMessage)) return NO_OWN_REQUEST
  const incoming = ownRequest(hit, sent)
  const Outgoing = (
    outgoing instanceof NodeServerResponse ? outgoing.constructor : NodeServerResponse
  ) as new (
    req: unknown,
  ) => ServerResponse
  let own: ServerResponse
  try {
    own = new Outgoing(incoming)
  } catch {
    own = new NodeServerResponse(incoming)
  }
  // On the request's socket, not assigned to it (what the response writes stays with it):
  // `destroy()` closes that socket, which tells `on-finished` the response is over, as on a
  // client's connection.
  ;(own as { socket: unknown }).socket = incoming.socket
  return { ...(env as object), incoming, outgoing: own }
}

/** The request lines that make an entry a user's own (kept only with `allowAuthorized` / `allowCookies`). */
const CREDENTIAL_LINES = new Set(['authorization', 'cookie'])

/**
 * Whether a copy of the request run in the background would run as the request did (see
 * `LookupContext.backgroundRefresh`). On `@hono/node-server`: over HTTP/1, only when the request
 * carries no credential (`Authorization`, `Cookie`, as it arrived or as it is now), its headers
 * are those that arrived (see {@link editedSinceArrival}), the server's module is loaded to
 * build the copy's `Request` (see {@link nodeRequestOf}), and the `Request` the cache sees
 * (`c.req.raw`) carries exactly the headers that one will: code between the server and the app
 * (a `fetch` around `app.fetch`, a parent app handing `c.req.raw` on) does not run for a copy,
 * and a header it stripped from the Request would come back from the lines (a layer before the
 * cache editing `c.req.raw.headers` makes the request refresh itself too; the copy checks on
 * arrival that it got what the hit had, see {@link editedOnCopy}). What code in
 * front of Hono derived from a credential (a user set on the request by Express, a listener of
 * the app's own, a wrapped `emit`; kept in a symbol, or already moved into the context by a
 * layer) is not run again for a copy, and cannot be told from here: the entry of such a request
 * is refreshed by the request itself. Over HTTP/2, never: the copy would reuse the stale hit's
 * own request, as a layer left it (a credential stripped or added, its stream closed). Elsewhere
 * (a runtime handing Hono the `Request` alone), always. Asked on stale hits only.
 */
function backgroundRefreshFaithful(c: Context): boolean {
  const env = c.env
  if (nodeOutgoing(env) === undefined) return true
  const incoming = (env as { incoming?: unknown }).incoming
  if (!(incoming instanceof NodeIncomingMessage)) return false
  const arrived = arrivedAt(incoming)?.lines
  if (arrived !== undefined)
    for (let i = 0; i < arrived.length; i += 2)
      if (CREDENTIAL_LINES.has(arrived[i]!.toLowerCase())) return false
  const headers = incoming.headers
  if (headers.authorization !== undefined || headers.cookie !== undefined) return false
  const sent = copyLines(env)
  if (sent === undefined || nodeRequestOf === undefined || editedSinceArrival(headers, sent)) return false
  // What the copy's handler reads is its Request: what the hit's is at the cache must be what
  // @hono/node-server builds from the lines.
  const hit = requestHeaderMap(c.req.raw.headers)
  if (hit === undefined || !sameHeaders(hit, linesHeaderMap(sent))) return false
  hitHeaders.set(c, hit)
  return true
}

/** The stale hit's request headers at the cache (see {@link backgroundRefreshFaithful}), for its copy. */
const hitHeaders = new WeakMap<Context, Map<string, string>>()

/**
 * A request's fetch headers as a map (names lower-cased, duplicates joined with `, ` as `get()`
 * joins them), conditional ones left out; `undefined` when they cannot be read (a value the fetch
 * Headers refuse). On @hono/node-server's own Headers this builds them from the lines (asked on
 * stale hits only).
 */
function requestHeaderMap(headers: Headers): Map<string, string> | undefined {
  const map = new Map<string, string>()
  try {
    for (const [name, value] of headers) {
      if (CONDITIONAL_REQUEST_HEADERS.includes(name)) continue
      const before = map.get(name)
      map.set(name, before === undefined ? value : `${before}, ${value}`)
    }
  } catch {
    return undefined
  }
  return map
}

/**
 * The fetch headers of a copy's `Request` built from `lines`, as @hono/node-server builds them
 * (pseudo-headers left out); `undefined` when the fetch Headers refuse a line.
 */
function linesHeaderMap(lines: string[]): Map<string, string> | undefined {
  const headers = new Headers()
  try {
    for (let i = 0; i + 1 < lines.length; i += 2)
      if (!lines[i]!.startsWith(':')) headers.append(lines[i]!, lines[i + 1]!)
  } catch {
    return undefined
  }
  return requestHeaderMap(headers)
}

function sameHeaders(a: Map<string, string>, b: Map<string, string> | undefined): boolean {
  if (b === undefined || a.size !== b.size) return false
  for (const [name, value] of a) if (b.get(name) !== value) return false
  return true
}

/** What is known of a refresh copy's request headers (see {@link editedOnCopy}). */
interface CopyWatch {
  /** The stale hit's, at the cache. */
  hit: Map<string, string>
  /** The Request the copy was given. */
  request: Request
  /**
   * The names set, appended or deleted on the Headers of `request` when they are
   * @hono/node-server's own (built from the Node request as they are read); `undefined` for
   * fetch Headers.
   */
  touched: Set<string> | undefined
}

/** Each refresh copy's {@link CopyWatch}. */
const copyWatches = new WeakMap<Context, CopyWatch>()

/**
 * Watches the copy's Request: @hono/node-server's own Headers read Node's `req.headers` until
 * something lists them, and from then on the lines: listed by the cache, a later layer's
 * `delete c.env.incoming.headers[name]` would no longer be read by the copy's handler. The names
 * edited on them are noted instead.
 */
function watchCopy(hit: Map<string, string>, request: Request): CopyWatch {
  const headers = request.headers
  const watch: CopyWatch = { hit, request, touched: undefined }
  if (Object.getPrototypeOf(headers) === Headers.prototype) return watch
  const touched = new Set<string>()
  watch.touched = touched
  for (const method of ['append', 'delete', 'set'] as const) {
    const edit = headers[method] as (this: Headers, name: string, value?: string) => void
    Object.defineProperty(headers, method, {
      configurable: true,
      writable: true,
      value(this: Headers, name: string, value?: string) {
        edit.call(this, name, value as string)
        touched.add(String(name).toLowerCase())
      },
    })
  }
  return watch
}

/**
 * The request headers a refresh's copy reaches the cache with that are not the stale hit's (see
 * {@link backgroundRefreshFaithful}): the copy starts with them, and the layers before the cache
 * run again on it. A layer that acts otherwise on a copy (appends to a header it was sent, reads
 * the connection, a clock) makes its handler render for another request than the hit.
 * Conditional headers aside; `[]` for a request that is not a copy.
 */
function editedOnCopy(c: Context): string[] {
  const watch = copyWatches.get(c)
  if (watch === undefined) return []
  const raw = c.req.raw
  const headers = raw.headers
  const names = new Set(watch.hit.keys())
  const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming
  if (raw === watch.request && watch.touched !== undefined && incoming !== undefined) {
    // Every name its handler can read, without listing them (see `watchCopy`).
    for (const name of watch.touched) names.add(name)
    for (const name of Object.keys(incoming.headers)) names.add(name)
    const lines = incoming.rawHeaders
    for (let i = 0; i < lines.length; i += 2) names.add(String(lines[i]).toLowerCase())
  } else {
    try {
      for (const [name] of headers) names.add(name)
    } catch {
      return ['(unreadable)']
    }
  }
  const edited: string[] = []
  for (const name of names) {
    if (CONDITIONAL_REQUEST_HEADERS.includes(name)) continue
    let value: string | null
    try {
      value = headers.get(name)
    } catch {
      value = null
    }
    if ((value ?? undefined) !== watch.hit.get(name)) edited.push(name)
  }
  return edited
}

/**
 * Whether the request's headers (`req.headers`, as code in front of Hono and the layers before the
 * cache left them) are not those Node builds from the lines a copy of it would carry (`sent`, see
 * {@link copyLines}): something deleted, added or changed a header since it arrived (a sanitiser
 * deleting the client's `X-User-Id`, a gateway setting it for a valid API key). Code in front of
 * Hono does not run for a copy, and what it did cannot be told from what a layer does: a copy
 * built from the lines could carry a header it deleted (another user's page stored for
 * everyone), or lack one it set. Asked on stale hits only.
 */
function editedSinceArrival(headers: IncomingHttpHeaders, sent: string[]): boolean {
  const built = addLines(new NodeIncomingMessage(null as never), sent).headers
  let count = 0
  for (const name of Object.keys(headers)) {
    if (CONDITIONAL_REQUEST_HEADERS.includes(name)) continue
    count++
    const value = headers[name]
    if (value === undefined || String(value) !== String(built[name])) return true
  }
  return count !== Object.keys(built).length
}

/**
 * Gives `message` the header `lines` as Node's parser does: `rawHeaders`, and `headers` built from
 * them (duplicates joined or dropped as Node does), built now, as on a client's request (read
 * before the layers ran): a layer that splices `rawHeaders` first must not leave Node building
 * them from a shorter list.
 */
function addLines(message: IncomingMessage, lines: string[]): IncomingMessage {
  const add = (message as { _addHeaderLines?: (lines: string[], n: number) => void })._addHeaderLines
  if (typeof add === 'function') {
    add.call(message, lines, lines.length)
    void message.headers
    return message
  }
  message.rawHeaders = lines
  const headers: IncomingHttpHeaders = {}
  for (let i = 0; i + 1 < lines.length; i += 2) {
    const name = lines[i]!.toLowerCase()
    headers[name] = headers[name] === undefined ? lines[i + 1] : `${headers[name]}, ${lines[i + 1]}`
  }
  message.headers = headers
  return message
}

/** A refresh's own Node request, standing for `hit` (see {@link refreshEnv}). */
function ownRequest(hit: IncomingMessage, sent: string[]): IncomingMessage {
  // A socket of its own, with the hit's addresses: a layer's `c.env.incoming.setTimeout()`,
  // `setKeepAlive()` or `socket.destroy()` on the copy never acts on the client's connection.
  const copy = new NodeIncomingMessage(new DiscardingSocket(hit.socket) as never)
  copy.method = 'GET'
  copy.url = arrivedAt(hit)?.url ?? hit.url ?? '/'
  copy.httpVersionMajor = hit.httpVersionMajor
  copy.httpVersionMinor = hit.httpVersionMinor
  copy.httpVersion = hit.httpVersion
  addLines(copy, sent)
  copy.complete = true
  copy.push(null)
  // On the hit's socket for its address only: destroying the copy (a request-timeout layer) must
  // not destroy the client's connection, as Node does for a request destroyed unread.
  ;(copy as { _destroy: typeof destroyOwnRequest })._destroy = destroyOwnRequest
  refreshedRequests.set(copy, hit)
  return copy
}

/**
 * `IncomingMessage#_destroy` for a refresh's own request (see {@link ownRequest}): `aborted` when
 * destroyed unread, as Node tells it, and the socket left alone.
 */
function destroyOwnRequest(
  this: IncomingMessage,
  error: Error | null,
  callback: (error?: Error | null) => void,
): void {
  if (!this.readableEnded || !this.complete) {
    ;(this as { aborted: boolean }).aborted = true
    this.emit('aborted')
  }
  // As Node does: the error is emitted only to a listener.
  process.nextTick(() => callback(this.listenerCount('error') === 0 ? null : error))
}

/**
 * Ends a refresh's own Node response (see {@link refreshEnv}) as the server ends its responses:
 * `finish`, then `close`. On no connection Node emits neither, and layers that count requests in
 * flight until their response closes (a concurrency limiter, `on-finished`, a gauge) would count
 * every refresh for good.
 */
function endOwnResponse(own: NodeOutgoing): void {
  const res = own as unknown as ServerResponse
  // Its own request (on HTTP/1) ends and closes too, as the server dumps a request its response
  // finished: read through (its body is empty), it emits `end`, then `close`.
  const req = res.req
  if (refreshedRequests.has(req) && !req.destroyed) {
    req.removeAllListeners('data')
    req.resume()
  }
  if (res.destroyed) {
    // Destroyed some other way than `failOnDestroy` sees: it closes all the same.
    closeOwnResponse(res)
    return
  }
  let finished = false
  res.once('finish', () => {
    finished = true
  })
  try {
    // Its head is written here if the chain never wrote it (the refresh failed or was stopped).
    if (!res.writableEnded) res.end()
  } catch {
    // A head a layer made unwritable: the events still say the response is over.
  }
  if (!finished) res.emit('finish')
  closeOwnResponse(res)
}

/** The refresh's own responses that emitted `close` (see {@link closeOwnResponse}). */
const closedResponses = new WeakSet<ServerResponse>()

/**
 * Emits `close` on a refresh's own Node response on the next tick, once, as Node closes a
 * response once its socket let go of it: on no socket, neither `end` nor `destroy` closes it.
 */
function closeOwnResponse(res: ServerResponse): void {
  process.nextTick(() => {
    if (closedResponses.has(res)) return
    closedResponses.add(res)
    res.destroyed = true
    res.emit('close')
    // Its stand-in connection (see `ownRequest`) closes with it, as a client's does once it is
    // done: a layer counting connections until their socket's `close` would count it for good.
    const socket = res.req?.socket
    if (socket instanceof DiscardingSocket && !socket.destroyed) socket.destroy()
  })
}

/**
 * Makes `destroy()` on a refresh's own Node response (a request-timeout layer giving up on a slow
 * response) do what it does on a client's: the response closes (Node's `destroy` on no socket
 * emits nothing, and a gauge counting responses until `close` would count it for good), and
 * `destroyed` is told, which fails the refresh.
 */
function failOnDestroy(res: ServerResponse, destroyed: () => void): void {
  const destroy = res.destroy
  res.destroy = function (this: ServerResponse, error?: Error) {
    const first = !this.destroyed
    const result = destroy.call(this, error)
    if (first) {
      closeOwnResponse(this)
      destroyed()
    }
    return result
  }
}

/** `@hono/node-server`'s default type of a response with a body and none of its own. */
const DEFAULT_CONTENT_TYPE = 'text/plain; charset=UTF-8'

/**
 * Writes the head of `res` on a refresh's own Node response (see {@link refreshEnv}) as
 * `@hono/node-server` writes a response's (its headers as a record, its default `Content-Type`
 * for a body without one), so that hooks that run inside `writeHead` add theirs; returns the
 * status and headers as written, or `undefined` when that response's head was already written.
 */
function writeHeadOf(
  node: NodeOutgoing,
  res: Response,
): { status: number; headers: OutgoingHttpHeaders } | undefined {
  if (node.headersSent) return undefined
  const given = outgoingHeaders(res.headers)
  if (res.body !== null && given['content-type'] === undefined) given['content-type'] = DEFAULT_CONTENT_TYPE
  node.writeHead(res.status, given)
  return headAsWritten(node, given)
}

/** The `:authority` of an HTTP/2 request on `@hono/node-server`, if any. */
function authorityOf(env: unknown): string | undefined {
  const authority = (env as { incoming?: ReceivedRequest } | undefined)?.incoming?.authority
  return typeof authority === 'string' && authority !== '' ? authority : undefined
}

function withoutFragment(href: string): string {
  const hash = href.indexOf('#')
  return hash === -1 ? href : href.slice(0, hash)
}

/** What `@hono/node-server` reads of Node's request (HTTP/1 or HTTP/2) to build the `Request`'s URL. */
interface ReceivedRequest {
  url?: unknown
  headers?: { host?: unknown }
  authority?: unknown
  scheme?: unknown
  socket?: { encrypted?: unknown; server?: unknown }
  /** Express's: the target its first router started with. */
  originalUrl?: unknown
}

/**
 * The parts of a request's URL the key is made of, and whether the URL holds more than them
 * (`unkeyed`: a fragment, user info), which the handler reads in `c.req.url`. `Request.url` is
 * always serialized by the URL parser (`scheme://host[:port]/path?query#fragment`, the host
 * lower-case, without a default port), so an http(s) URL without user info is read as it is;
 * anything else goes through `URL`.
 */
function urlParts(href: string): { protocol: string; host: string; target: string; unkeyed: boolean } {
  const scheme = href.startsWith('https://') ? 5 : href.startsWith('http://') ? 4 : -1
  if (scheme !== -1) {
    const slash = href.indexOf('/', scheme + 3)
    const host = href.slice(scheme + 3, slash === -1 ? href.length : slash)
    if (slash !== -1 && !host.includes('@')) {
      const hash = href.indexOf('#', slash)
      return {
        protocol: href.slice(0, scheme),
        host,
        target: hash === -1 ? href.slice(slash) : href.slice(slash, hash),
        unkeyed: hash !== -1,
      }
    }
  }
  const url = new URL(href)
  return {
    protocol: url.protocol.slice(0, -1),
    host: url.host,
    target: url.pathname + url.search,
    unkeyed: url.username !== '' || url.password !== '' || href.includes('#'),
  }
}

/**
 * The request headers as the cache reads them (lower-case names, `set-cookie` left out), read from
 * the Web headers by name, each once: a copy of every header would make `@hono/node-server`
 * build the full `Headers` of every request, which the cache reads a few of.
 */
function headerView(headers: Headers): IncomingHttpHeaders {
  return new Proxy(
    { headers, read: Object.create(null) } as HeaderReads,
    HEADER_READS,
  ) as unknown as IncomingHttpHeaders
}

/** The Web headers behind a {@link headerView}, and the values read so far. */
interface HeaderReads {
  headers: Headers
  read: Record<string, string | undefined>
}

function readHeader(target: HeaderReads, name: string): string | undefined {
  const read = target.read
  if (name in read) return read[name]
  const value = name === 'set-cookie' ? undefined : (target.headers.get(name) ?? undefined)
  read[name] = value
  return value
}

/** The traps of every {@link headerView}: one object, so that a request makes no functions. */
const HEADER_READS: ProxyHandler<HeaderReads> = {
  get(target, name) {
    return typeof name === 'string' ? readHeader(target, name) : undefined
  },
  has(target, name) {
    return typeof name === 'string' && readHeader(target, name) !== undefined
  },
  ownKeys(target) {
    return [...target.headers.keys()].filter(
      (name) => name !== 'set-cookie' && readHeader(target, name) !== undefined,
    )
  },
  getOwnPropertyDescriptor(target, name) {
    const value = typeof name === 'string' ? readHeader(target, name) : undefined
    return value === undefined ? undefined : { value, enumerable: true, configurable: true, writable: false }
  },
}

/** What only Hono can tell the neutral cache about one lookup (see `LookupContext`). */
class HonoLookup implements LookupContext {
  readonly revalidate: ((refresh: Refresh) => (() => void) | false) | undefined

  constructor(
    private readonly c: Context,
    /** The cache's index among the functions the request matched. */
    private readonly at: number,
    private readonly skipped: ReadonlySet<Function>,
    refresh: ((c: Context, refresh: Refresh) => (() => void) | false) | undefined,
  ) {
    this.revalidate = refresh === undefined ? undefined : (run) => refresh(c, run)
  }

  backgroundRefresh(): boolean {
    return backgroundRefreshFaithful(this.c)
  }

  verdict(): string | undefined {
    if (answeredOnNode.has(this.c)) return ALREADY_SENT_REASON
    return ranAfter(this.c, this.at, this.skipped)
  }
}

/**
 * Where the cache sits: every route the request matched (middleware and handlers, with their
 * methods, path patterns and the source of their functions, mount points of `app.route()`
 * included), the cache's position among them, and where the server that received the request
 * listens (on `@hono/node-server`: its bound address and port, or Unix socket path), hashed.
 * Two routes never share an entry; two servers of one process never do, whatever `Host` a
 * client sends; replicas running the same code and listening at the same address (`0.0.0.0:3000`)
 * compute the same site. `undefined` (the request bypasses) when Hono's match cannot be read, or
 * when two apps of one process (one factory called twice, its closures holding different
 * configuration) meet at one site without a server to tell them apart (`app.request`, one
 * `fetch` dispatching to both).
 */
function siteOf(c: Context): string | undefined {
  const match = matchResultOf(c)
  if (match === undefined) return undefined
  const server = serverOf(c.env)
  const route = routeSite(c, match)
  // The site at the address the server listens at, hashed once per address.
  const listening = listeningAt(socketOf(c.env))
  if (route.at !== listening || route.site === undefined) {
    route.at = listening
    route.site = hashOnce(`${route.text}|${listening}`)
  }
  return isAmbiguous(route.site, match[0], server) ? undefined : route.site
}

/** The hash of the routes a request matched and the cache's position among them, and its site. */
interface RouteSite {
  text: string
  /** Where the server listened for the last request at this place, and the site there. */
  at: string | undefined
  site: string | undefined
}

/** The hash of the routes the request matched and the cache's position among them. */
function routeSite(c: Context, match: MatchResult): RouteSite {
  // Hono's router hands out the same match for every request of a static route: hashed once.
  let known = sites.get(match[0])
  const index = c.req.routeIndex
  const hit = known?.get(index)
  if (hit !== undefined) return hit
  const parts: string[] = []
  for (const [[fn, route]] of match[0]) {
    parts.push(`${route?.method ?? ''} ${route?.basePath ?? ''} ${route?.path ?? ''} ${describeFunction(fn)}`)
  }
  parts.push(`@${index}`)
  const text = createHash('sha256').update(parts.join('\n')).digest('hex').slice(0, 12)
  const site: RouteSite = { text, at: undefined, site: undefined }
  if (known === undefined) sites.set(match[0], (known = new Map()))
  known.set(index, site)
  return site
}

/** The sites of each router match seen so far, by the cache's position in it. */
const sites = new WeakMap<object, Map<number, RouteSite>>()

/** Site descriptions and their hash: a bounded memo (an app has a bounded number of sites). */
const hashes = new Map<string, string>()
const MAX_SITES = 10_000

function hashOnce(description: string): string {
  let hash = hashes.get(description)
  if (hash === undefined) {
    hash = createHash('sha256').update(description).digest('hex').slice(0, 12)
    if (hashes.size >= MAX_SITES) hashes.clear()
    hashes.set(description, hash)
  }
  return hash
}

interface NodeServer {
  address(): { address?: string; port?: number } | string | null
  readonly listening?: boolean
}

/** The socket of the request on `@hono/node-server` (`c.env.incoming`); undefined elsewhere. */
function socketOf(env: unknown): { server?: unknown; localPort?: unknown } | undefined {
  return (env as { incoming?: { socket?: { server?: unknown; localPort?: unknown } } } | undefined)?.incoming
    ?.socket
}

/**
 * The header lines as the client sent them, on `@hono/node-server` (`c.env.incoming.rawHeaders`),
 * whatever middleware did to the `Request` since; undefined elsewhere (other runtimes hand Hono
 * the `Request` alone).
 */
function sentHeaderLines(env: unknown): string[] | undefined {
  const lines = (env as { incoming?: { rawHeaders?: unknown } } | undefined)?.incoming?.rawHeaders
  return Array.isArray(lines) ? (lines as string[]) : undefined
}

/** The Node server that received the request, on `@hono/node-server` (`c.env.incoming`). */
function serverOf(env: unknown): NodeServer | undefined {
  const server = socketOf(env)?.server as NodeServer | undefined
  return typeof server?.address === 'function' ? server : undefined
}

/** The functions (and server) first seen at each site in this process, held weakly. */
const owners = new Map<string, { functions: WeakRef<Function>[]; server: WeakRef<NodeServer> | undefined }>()
/** Sites two different apps turned out to share: they bypass for good. */
const ambiguous = new Set<string>()

/**
 * Whether another app's route (other function objects: one factory called twice) was seen at
 * this site: their entries would answer for each other, so the site bypasses for good. That the
 * first app was garbage-collected says nothing (an app built per request from a factory is
 * collected between requests, its sibling is another tenant): only an app whose server closed
 * hands its sites on, as a later deployment does in another process. A site this process can no
 * longer keep track of bypasses too.
 */
function isAmbiguous(site: string, entries: RouteEntry[], server: NodeServer | undefined): boolean {
  if (ambiguous.has(site)) return true
  const first = owners.get(site)
  if (first !== undefined) {
    if (sameFunctions(first.functions, entries)) return false
    const owner = first.server?.deref()
    const closed = first.server !== undefined && (owner === undefined || owner.listening === false)
    if (!closed) {
      ambiguous.add(site)
      return true
    }
  } else if (owners.size >= MAX_SITES) return true
  owners.set(site, {
    functions: entries.map(([[fn]]) => new WeakRef(fn)),
    server: server === undefined ? undefined : new WeakRef(server),
  })
  return false
}

/** Whether the functions first seen at a site are those of `entries`, in order. */
function sameFunctions(functions: readonly WeakRef<Function>[], entries: RouteEntry[]): boolean {
  if (functions.length !== entries.length) return false
  for (let i = 0; i < functions.length; i++) if (functions[i]!.deref() !== entries[i]![0][0]) return false
  return true
}

type RouteEntry = [
  [Function & ((c: Context, next: Next) => unknown), { method?: string; path?: string; basePath?: string }],
  unknown,
]
type MatchResult = [RouteEntry[], unknown?]

/** The symbol under which Hono's request keeps its router match (found once, on its prototype). */
let matchSymbol: symbol | null | undefined

/** Hono's router match of the request: each matched handler with its route, and the parameters. */
function matchResultOf(c: Context): MatchResult | undefined {
  const req = c.req as unknown as Record<symbol, unknown>
  if (matchSymbol === undefined) {
    matchSymbol = null
    for (const symbol of Object.getOwnPropertySymbols(Object.getPrototypeOf(req))) {
      const value = req[symbol]
      if (Array.isArray(value) && Array.isArray(value[0])) {
        matchSymbol = symbol
        break
      }
    }
  }
  if (matchSymbol === null) return undefined
  const match = req[matchSymbol]
  return Array.isArray(match) && Array.isArray(match[0]) ? (match as MatchResult) : undefined
}

/**
 * Calls `judge` with the headers of the first `writeHead` of Node's response (what
 * `@hono/node-server` writes: the final response of the whole middleware chain), then lets it be.
 * When `judge` gives a reason not to store, the cache's status headers (`names`) that still say
 * `stored` say why not instead. `judge` is called again with the status and headers as they left
 * (`written`; see `headAsWritten`), when hooks that run inside `writeHead` (`on-headers`, which
 * session layers use on Node; a `ServerResponse` subclass) have added theirs: too late for the
 * status header, in time for what is stored.
 * The cache's `cacheControl` is offered through Node's response (`offerCacheControl`), which
 * withdraws it when such a hook adds `Set-Cookie` or `Vary: *`.
 */
function watchHead(
  outgoing: NodeOutgoing,
  judge: (final: OutgoingHttpHeaders, written?: { status: number }) => string | undefined,
  names: string[],
  cacheControl?: string,
): void {
  beforeNextWriteHead(outgoing, function (this: NodeOutgoing, original, args, at) {
    const given = args[at]
    const final: OutgoingHttpHeaders = { ...outgoing.getHeaders() }
    if (Array.isArray(given)) {
      // `[[name, value], …]` or `[name, value, …]`.
      const flat = given.every((item) => Array.isArray(item)) ? (given as unknown[][]).flat() : given
      for (let i = 0; i + 1 < flat.length; i += 2) {
        const name = String(flat[i]).toLowerCase()
        final[name] =
          final[name] === undefined ? String(flat[i + 1]) : [final[name], flat[i + 1]].flat().map(String)
      }
    } else if (typeof given === 'object' && given !== null) {
      for (const [name, value] of Object.entries(given))
        final[name.toLowerCase()] = value as OutgoingHttpHeaders[string]
    }
    const reason = judge(final)
    if (cacheControl !== undefined && final['cache-control'] === cacheControl) {
      // Taken out of the call, and offered again on Node's response unless a layer before the
      // cache added `Set-Cookie` or `Vary: *` after `await next()`: left out, as it would be had
      // they come first. Not offered with a list of pairs, which Node 20 refuses once the
      // response has a header of its own (`@hono/node-server` passes a record).
      let pairs = false
      outgoing.removeHeader('cache-control')
      if (typeof given === 'object' && given !== null && !Array.isArray(given)) {
        const record = given as Record<string, unknown>
        for (const name of Object.keys(record))
          if (name.toLowerCase() === 'cache-control') delete record[name]
      } else if (Array.isArray(given)) {
        // `[[name, value], …]` or `[name, value, …]`: rebuilt without it.
        pairs = given.every((item) => Array.isArray(item))
        const list = pairs
          ? (given as unknown[][])
          : Array.from({ length: given.length >> 1 }, (_, i) => [given[2 * i], given[2 * i + 1]])
        const kept = list.filter(([name]) => String(name).toLowerCase() !== 'cache-control')
        args[at] = pairs ? kept : kept.flat()
      }
      const { 'cache-control': _, ...rest } = final
      if (!pairs && sharableOutgoing(rest))
        offerCacheControl(outgoing as unknown as ServerResponse, cacheControl)
    }
    if (reason !== undefined && typeof given === 'object' && given !== null && !Array.isArray(given)) {
      const record = given as Record<string, unknown>
      for (const name of Object.keys(record)) {
        const value = record[name]
        if (names.includes(name.toLowerCase()) && typeof value === 'string')
          // `; stored; detail=refresh-in-request` too: the reason it was not stored says more.
          record[name] = value.replace(/; stored(?:; detail=[\w-]+)?/, `; detail=${reason}`)
      }
    }
    const written = original.apply(this, args)
    if (reason === undefined) {
      const head = headAsWritten(outgoing, args[at])
      judge(head.headers, head)
    }
    return written
  })
}

/**
 * Replaces `outgoing.writeHead` for its next call only: `call` gets the `writeHead` it replaced,
 * the call's arguments and where its headers are among them (after an optional status message).
 */
function beforeNextWriteHead(
  outgoing: NodeOutgoing,
  call: (this: NodeOutgoing, original: NodeOutgoing['writeHead'], args: unknown[], at: number) => unknown,
): void {
  const own = Object.hasOwn(outgoing, 'writeHead')
  const original = outgoing.writeHead
  outgoing.writeHead = function (this: NodeOutgoing, ...args: unknown[]) {
    if (own) outgoing.writeHead = original
    else delete (outgoing as { writeHead?: unknown }).writeHead
    return call.call(this, original, args, typeof args[1] === 'string' ? 2 : 1)
  } as NodeOutgoing['writeHead']
}

/**
 * Adds the cache's status header to the head of Node's response that a handler writes itself
 * (see {@link ALREADY_SENT_HEADER}), unless it left already: to the headers of its `writeHead`
 * call, in the form it gives them (`setHeader` first would make Node 20 refuse a list of pairs).
 */
function addToNodeHead(outgoing: NodeOutgoing | undefined, set: readonly [string, string][]): void {
  if (outgoing === undefined || outgoing.headersSent || set.length === 0) return
  beforeNextWriteHead(outgoing, function (this: NodeOutgoing, original, args, at) {
    const given = args[at]
    if (Array.isArray(given))
      args[at] =
        given.length > 0 && given.every((item) => Array.isArray(item))
          ? [...given, ...set]
          : [...given, ...set.flat()]
    else if (typeof given === 'object' && given !== null) args[at] = { ...given, ...Object.fromEntries(set) }
    else args[at] = Object.fromEntries(set)
    return original.apply(this, args)
  })
}

/**
 * The names of the headers given to the Context method that made a Response (`c.body(data, 200,
 * headers)`, `c.json(data, { headers })`, and the `Content-Type` of `c.text`, `c.json`, `c.html`):
 * the handler's, if Hono keeps them as the request's response (see {@link noteHandlerHeaders}).
 */
const givenHeaders = new WeakMap<Response, string[]>()

/** The Context methods that make a Response from headers they are given. */
const RESPONSE_METHODS = ['body', 'text', 'json', 'html', 'newResponse'] as const

/**
 * Notes, in lower case, the name of every header the code after the cache sets or removes from
 * now on until the returned function is called: with `c.header` and the headers given to the
 * Context's response methods (`onHono`), and with `setHeader`, `appendHeader`, `removeHeader` on
 * Node's response (`onNode`). A response method's headers count only when the Response it made
 * becomes the request's response as it is: Hono sets the headers of a response made before (a
 * layer's `c.res.headers.set`, as `hono/cors` does) over those of the one the handler returns,
 * and those are the layer's. A Response the handler builds itself (`new Response(body, { headers
 * })`, `fetch()`) is not watched: it may carry the layers' headers copied from one the Context
 * made, so its headers are told by their value. Costs a few closures per recorded miss; hits do
 * none of it.
 */
function noteHandlerHeaders(
  c: Context,
  onHono: Set<string>,
  outgoing: NodeOutgoing | undefined,
  onNode: Set<string>,
): () => void {
  let noting = true
  const restore: (() => void)[] = []
  /** Replaces `target[key]` with `wrapper` until noting stops, unless replaced since. */
  const replace = (target: object, key: string, wrapper: Function) => {
    const record = target as Record<string, unknown>
    const own = Object.hasOwn(target, key)
    const original = record[key]
    record[key] = wrapper
    restore.push(() => {
      if (record[key] !== wrapper) return
      if (own) record[key] = original
      else delete record[key]
    })
  }
  const header = c.header
  replace(c, 'header', function (this: unknown, name: string, ...rest: unknown[]) {
    if (noting) onHono.add(String(name).toLowerCase())
    return (header as Function).call(this, name, ...rest)
  })
  const res = accessorOf(c, 'res')
  if (res?.get !== undefined && res.set !== undefined) {
    const { get, set } = res
    for (const method of RESPONSE_METHODS) {
      const make = c[method] as Function
      if (typeof make !== 'function') continue
      replace(c, method, function (this: unknown, data: unknown, arg?: unknown, headers?: unknown) {
        const made = make.call(this, data, arg, headers)
        if (!noting) return made
        const names: string[] = method === 'body' || method === 'newResponse' ? [] : ['content-type']
        if (typeof arg === 'object' && arg !== null && 'headers' in arg && arg.headers !== undefined)
          for (const [name] of new Headers(arg.headers as ConstructorParameters<typeof Headers>[0]))
            names.push(name)
        if (typeof headers === 'object' && headers !== null)
          for (const name of Object.keys(headers)) names.push(name.toLowerCase())
        if (names.length === 0) return made
        if (made instanceof Response) givenHeaders.set(made, names)
        else if (isThenable(made))
          return made.then((response: Response) => {
            givenHeaders.set(response, names)
            return response
          })
        return made
      })
    }
    Object.defineProperty(c, 'res', {
      configurable: true,
      enumerable: false,
      get() {
        return get.call(this)
      },
      set(this: Context, value: Response | undefined) {
        set.call(this, value)
        // Hono keeps the Response as it is, unless it had one already, whose headers it sets over.
        const names = value === undefined ? undefined : givenHeaders.get(value)
        if (noting && names !== undefined && get.call(this) === value)
          for (const name of names) onHono.add(name)
      },
    })
    restore.push(() => delete (c as { res?: unknown }).res)
  }
  if (outgoing !== undefined) {
    for (const method of ['setHeader', 'appendHeader', 'removeHeader'] as const) {
      const original = (outgoing as unknown as Record<string, unknown>)[method]
      if (typeof original !== 'function') continue
      replace(outgoing, method, function (this: unknown, name: string, ...rest: unknown[]) {
        const result = original.call(this, name, ...rest)
        if (noting) onNode.add(String(name).toLowerCase())
        return result
      })
    }
  }
  return () => {
    noting = false
    for (const undo of restore) undo()
  }
}

/** The accessor property `key` of `object`'s prototypes (Hono's `Context#res`). */
function accessorOf(object: object, key: string): PropertyDescriptor | undefined {
  for (let proto = Object.getPrototypeOf(object); proto !== null; proto = Object.getPrototypeOf(proto)) {
    const descriptor = Object.getOwnPropertyDescriptor(proto, key)
    if (descriptor !== undefined) return descriptor.get !== undefined ? descriptor : undefined
  }
  return undefined
}

/** Node's `ServerResponse` of the request on `@hono/node-server` (`c.env.outgoing`). */
function nodeOutgoing(env: unknown): NodeOutgoing | undefined {
  const outgoing = (env as { outgoing?: unknown } | undefined)?.outgoing as NodeOutgoing | undefined
  return typeof outgoing?.once === 'function' &&
    typeof outgoing.writableFinished === 'boolean' &&
    typeof outgoing.headersSent === 'boolean' &&
    typeof outgoing.writeHead === 'function' &&
    typeof outgoing.getHeaders === 'function' &&
    typeof outgoing.setHeader === 'function' &&
    typeof outgoing.removeHeader === 'function'
    ? outgoing
    : undefined
}

interface NodeOutgoing {
  readonly writableFinished: boolean
  readonly destroyed: boolean
  readonly headersSent: boolean
  readonly statusCode: number
  once(event: 'finish' | 'close', listener: () => void): unknown
  writeHead(...args: unknown[]): unknown
  getHeaders(): OutgoingHttpHeaders
  setHeader(name: string, value: number | string | readonly string[]): unknown
  removeHeader(name: string): void
}

/** A `judge` for {@link watchHead} with nothing to decide (a hit, a response not stored). */
const unjudged = (): undefined => undefined

/** Web headers as Node's outgoing headers: lower-case names, `set-cookie` a list. */
function outgoingHeaders(headers: Headers): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {}
  for (const [name, value] of headers) if (name !== 'set-cookie') out[name] = value
  const cookies = headers.getSetCookie()
  if (cookies.length > 0) out['set-cookie'] = cookies
  return out
}

/**
 * A replay's `[name, value, …]` list (lower-case names) as the record `c.newResponse` sets over
 * the prepared headers, `without` one of them: a list value replaces a prepared one of its name,
 * as a single value does.
 */
function headerRecord(list: HeaderList, without: string): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = {}
  for (let i = 0; i + 1 < list.length; i += 2)
    if (list[i] !== without) headers[list[i] as string] = list[i + 1]!
  return headers
}

/** {@link sharable} for the headers Node's response is written with. */
function sharableOutgoing(headers: OutgoingHttpHeaders): boolean {
  if (headers['cache-control'] !== undefined || headers['set-cookie'] !== undefined) return false
  return ![headers.vary ?? ''].flat().some((value) => String(value).includes('*'))
}

/** A response a shared cache may keep: no `Cache-Control` of its own, no `Set-Cookie`, no `Vary: *`. */
function sharable(headers: Headers): boolean {
  if (headers.has('cache-control') || headers.has('set-cookie')) return false
  return !(headers.get('vary') ?? '').includes('*')
}

function isThenable<T>(value: T | Promise<T>): value is Promise<T> {
  return typeof (value as Promise<T> | undefined)?.then === 'function'
}
