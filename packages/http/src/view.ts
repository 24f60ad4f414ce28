import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http'

/**
 * A request as the adapter's framework resolved it: everything the cache keys on or decides
 * with, and nothing else. An adapter builds one per request and hands it to
 * {@link HttpCache.lookup}; the cache never reads the framework's request itself, except through
 * the user's own functions (`key`, `tags`, `bypass`), which get {@link HttpRequestView.raw}.
 */
export interface HttpRequestView<Raw = unknown> {
  /** The method as the framework routes it, upper case (`GET`, `HEAD`, …). */
  method: string
  /**
   * The request target as the client sent it and as the framework routes it: origin form, path
   * and query (`/products?page=2`). A target the framework would route otherwise (rewritten by
   * middleware before the cache, an absolute-form target) is the adapter's to refuse, with
   * {@link HttpRequestView.bypass}.
   */
  url: string
  /** The request headers, lower-case names, as Node parses them. */
  headers: IncomingHttpHeaders
  /**
   * The header lines as the client sent them, `[name, value, name, value, …]` (Node's
   * `req.rawHeaders`), untouched by what the layers before the cache did to {@link headers}. The
   * `Authorization` and `Cookie` rules read the credentials the client sent from it: a request
   * that sent one bypasses (unless allowed) even when a hook deleted it, and an allowed one is
   * keyed on what was sent as well as on what the app sees. Without it (a runtime that has only
   * the headers as the app left them) the rules read {@link headers} alone.
   */
  rawHeaders?: readonly string[]
  /**
   * The lines the server noted as it emitted the request, before any listener or layer ran
   * (`arrivalOf(req)?.lines`, see `noteArrivals`): its credential and body lines among them. A
   * layer may delete a line from `rawHeaders` as well as from {@link headers} (an auth layer that
   * strips the token it verified): the credential rules and the GET-with-a-body rule read these
   * lines too, and key an allowed credential on them as what the client sent. Default: none (the
   * rules read {@link rawHeaders} as what was sent).
   */
  arrivedLines?: readonly string[]
  /** `'http'` or `'https'`, as the framework resolved it for the handler (a trusted proxy's `X-Forwarded-Proto`). */
  protocol: string
  /**
   * `host[:port]` as the framework resolved it for the handler: the `Host` header, or the
   * `X-Forwarded-Host` it trusts. `undefined` when it resolves none: the request bypasses the
   * cache (a key without a host could be planted for every host).
   */
  host: string | undefined
  /**
   * Where in the application the cache sits, as the adapter tells it: a route, a mount point, a
   * hash of what runs before the handler. Entries made at one site are never replayed at
   * another. `''`: one site for the whole application (entries shared by every route of a URL).
   * `undefined`: where the cache sits cannot be told, so the request bypasses the cache (`site`).
   * Read only for requests the cache would otherwise look up (a getter may compute it lazily);
   * `bypass`, `host` and `protocol` likewise.
   */
  site: string | undefined
  /**
   * Request data the handler can read that the built-in key does not otherwise hold (e.g. a
   * `Host` header differing from the forwarded host the framework resolved): appended to the key
   * so two such requests never share an entry. Must not contain a line feed. Default: none.
   */
  keyExtra?: string
  /**
   * A reason, decided by the adapter before the lookup, for which the request must not be
   * answered from the cache nor stored (the URL was rewritten before the cache, the cache's site
   * cannot be told, the framework routed the request elsewhere). The result is a `bypass` with it.
   */
  bypass?: string
  /** The framework's own request, handed to the user's `key`, `tags` and `bypass` functions. */
  raw: Raw
  /**
   * Set on the copy of a request the adapter runs for a stale-while-revalidate refresh (see
   * {@link LookupContext.revalidate}): the cache answers it fresh (no hit, no shared flight) and
   * reports through it whether the refreshed response was stored.
   */
  refresh?: Refresh
}

/**
 * A background refresh of a stale entry, under way. The cache makes it and hands it to
 * {@link LookupContext.revalidate}; the adapter puts it on the request copy it runs.
 */
export interface Refresh {
  /**
   * The adapter reports that the refresh is over without a response the cache saw through (the
   * app gave up on it, threw): counted and emitted as a `revalidate` error, the stale entry stays.
   * Calling it after the cache settled the refresh does nothing.
   */
  fail(error: unknown): void
  /** Whether the refresh is over (stored, refused, failed or timed out): the adapter may stop its work. */
  readonly done: boolean
  /** The key of the entry it refreshes, for messages. */
  readonly key: string
  /**
   * Whether the cache is recording the refresh's response: it settles the refresh itself once
   * that response is decided on (which may be after it finished: an `async` handler's work after
   * sending), so an adapter must not take a finished, unsettled refresh for one that passed by.
   */
  readonly recording?: boolean
}

/** What an adapter lends the cache for one lookup, besides the request. */
export interface LookupContext {
  /**
   * Runs a copy of the request through the application in the background, without conditional
   * headers (`If-None-Match`, `Range`, …), with `refresh` as its view's
   * {@link HttpRequestView.refresh}. Needed for `staleWhileRevalidate`: without it a stale entry
   * is served stale, and never refreshed. The returned function, if any, is called once the
   * refresh is over (stored, refused, failed or after `revalidateTimeout`) to stop what still runs
   * (a socket, a stream). `false`: no copy could be started; the stale entry is then not served,
   * the request refreshes it itself, as a miss (`detail=refresh-in-request`, see
   * {@link backgroundRefresh}).
   */
  revalidate?: (refresh: Refresh) => (() => void) | undefined | false
  /**
   * Asked only on a stale hit within `staleWhileRevalidate`: `false` when a background copy of
   * this request would not run as the request did (the copy would share the request's own
   * objects, or lack what code in front of the framework put on it), so that it could store
   * another user's page under this entry. The stale entry is then not served: the request is a
   * miss (`Cache-Status: …; fwd=stale; detail=refresh-in-request`), its own response refreshes the
   * entry. Default: the copy is faithful.
   */
  backgroundRefresh?: () => boolean
  /**
   * Asked each time the cache decides whether the response may be stored (`head`: its headers
   * leave; `end`: its body ended; `finish`: it reached the client), before the cache's own rules:
   * a reason makes it unstorable. For what only the adapter sees, such as a function that ran
   * between the cache and the handler (a guard a hit would skip).
   */
  verdict?: (stage: 'head' | 'end' | 'finish') => string | undefined
  /**
   * Asked last, when the headers leave and when the body ended, after the cache's own rules pass:
   * a reason makes the response unstorable. For a request the framework came to see otherwise
   * than at the lookup (a sub-application resolving another host): `key-changed`.
   */
  recheck?: () => string | undefined
}

/** The response as it leaves, given to {@link ResponseRecorder.head}. */
export interface ResponseHead {
  /** The status the client receives. */
  status: number
  /** Every header the client receives, whoever set them (lower-case names). Storability is decided on these. */
  headers: OutgoingHttpHeaders
  /**
   * The status and headers at the cache's own layer, what a replay must carry, when they differ
   * from what the client receives (a layer before the cache sets headers of its own on every
   * request, and would set them again on a hit). Default: `status` and `headers`.
   */
  own?: {
    status: number
    headers: OutgoingHttpHeaders
    /**
     * The names of the headers the layers before the cache had set when it was reached, and of
     * those the handler removed (even when there was none to remove). Those the client does not
     * receive are removed on replays: the layers before the cache may set them on a hit, and the
     * hit sends what the miss sent.
     */
    earlier?: readonly string[]
  }
  /** The whole body, when the response is sent in one piece (lets the cache add an `ETag` before the headers leave). */
  body?: Uint8Array
}

/** Headers the adapter sets on the response before its headers leave, returned by {@link ResponseRecorder.head}. */
export interface HeadAdvice {
  /** Headers to set (replacing any of that name): `ETag`, `Cache-Status` or `X-Cache`, `Cache-Control`. */
  set: [name: string, value: string][]
  /**
   * A `Cache-Control` for browsers and CDNs (the `cacheControl` option) to set unless the response
   * has one; withdraw it if a `Set-Cookie` or `Vary: *` is added before the headers leave.
   */
  cacheControl?: string
  /** Whether the cache may still store the response: `false` once it is known it will not. */
  storable: boolean
}

/**
 * Records one response for the cache, on a miss: the adapter feeds it what the client gets, in
 * order: {@link head} once, {@link write} per body chunk, {@link end}, then {@link finish} when
 * every byte was handed to the client, or {@link abort} at any point when it was not.
 */
export interface ResponseRecorder {
  /** The headers are about to leave. Returns the headers the cache adds to them. */
  head(head: ResponseHead): HeadAdvice
  /** A body chunk as the client receives it (a copy is kept; strings in `encoding`, default utf8). */
  write(chunk: Uint8Array | string, encoding?: BufferEncoding): void
  /**
   * The handler ended the response, with a last chunk or none. `incomplete`: why the body cannot
   * be trusted to be whole (the adapter saw a source stream fail, headers go out that it did not
   * see): never stored. A complete, storable response is shared with the requests waiting for it.
   */
  end(
    chunk?: Uint8Array | string,
    options?: {
      encoding?: BufferEncoding
      incomplete?: string
      /** The status and headers as they finally left, when hooks changed them after {@link head}. */
      head?: ResponseHead
    },
  ): void
  /** Every byte reached the client's connection: the response is stored. */
  finish(): void
  /**
   * The response did not reach the client whole (connection closed, response destroyed), or the
   * adapter refuses it for `reason`: nothing is stored or shared, waiting requests run the handler.
   */
  abort(reason: string): void
  /**
   * The adapter knows now that the response must not be stored (something ran that a hit would
   * skip): requests waiting for it are released at once. Keep feeding the recorder; nothing will
   * be stored.
   */
  refuse(reason: string): void
  /** Settles once the response was stored (`true`) or not (`false`, with the reason). */
  readonly outcome: Promise<{ stored: boolean; reason?: string }>
}

/** A header line as a replay sends it: `[name, value, name, value, …]`, lower-case names. */
export type HeaderList = (string | string[])[]

/** A stored response to send as it is, with one write of the headers and one of the body. */
export interface HitResult {
  kind: 'hit'
  /** `'fresh'`; `'stale'` under stale-while-revalidate (a refresh was started); `'collapsed'` when shared by a concurrent miss. */
  freshness: 'fresh' | 'stale' | 'collapsed'
  status: number
  /** Stored headers plus `age`, `etag`, `content-length` and the status header. */
  headers: HeaderList
  /** The body bytes. For `HEAD`, send the headers only. */
  body: Buffer
  /** `true` for a `HEAD` request: send no body. */
  headOnly: boolean
  /**
   * The `cacheControl` option's header for browsers and CDNs, when set and the entry has none:
   * set it unless the response already has a `Cache-Control` (a layer before the cache set one),
   * a `Set-Cookie` or `Vary: *`.
   */
  cacheControl?: string
  /** The backend key that answered. */
  key: string
  /**
   * Headers to remove from the response before its headers are written: a layer before the cache
   * set them on the miss too, and the handler removed them (see {@link ResponseHead.own}).
   */
  remove?: readonly string[]
}

/** The client's `If-None-Match` matches the stored entity tag: answer `304` with these headers. */
export interface NotModifiedResult {
  kind: 'not-modified'
  status: 304
  headers: HeaderList
  /** As {@link HitResult.cacheControl}. */
  cacheControl?: string
  key: string
  /** As {@link HitResult.remove}. */
  remove?: readonly string[]
}

/** Nothing to replay: run the handler, and feed what it sends to `recorder`. */
export interface MissResult {
  kind: 'miss'
  recorder: ResponseRecorder
  /**
   * `false` when nothing the handler sends will be stored (a `HEAD` miss, a backend that failed
   * to read): feeding the recorder is then optional.
   */
  recording: boolean
  /** The status header to set before the handler runs (it may be replaced by {@link ResponseRecorder.head}). */
  set: [name: string, value: string][]
  key: string
}

/** The request is not the cache's: run the handler as if there were no cache. */
export interface BypassResult {
  kind: 'bypass'
  /** Why: `method`, `authorization`, `cookie`, `body`, `disabled`, `bypass`, `url`, `key-error`, or the adapter's own reason. */
  reason: string
  /** The status header to set (none when `statusHeader` is `false`). */
  set: [name: string, value: string][]
}

/** What {@link HttpCache.lookup} decided for a request. */
export type LookupResult = HitResult | NotModifiedResult | MissResult | BypassResult
