import { IncomingMessage, ServerResponse } from 'node:http'
import { Duplex } from 'node:stream'
import { CacheError } from '@cache/core'
import { carryArrival } from './arrivals.js'
import { refreshRefusal } from './express-routing.js'
import { setRefreshHeaders } from './node.js'
import type { Refresh } from './view.js'

/** An application as a refresh enters it: Express's `app.handle(req, res, done)`. */
export interface RefreshEntry {
  handle(req: IncomingMessage, res: ServerResponse, done: (error?: unknown) => void): void
}

/** How {@link refreshInProcess} runs one copy. */
export interface InProcessRefresh {
  /** The request whose stale entry is refreshed: the copy repeats its URL, headers and connection. */
  req: IncomingMessage
  /** The target the copy asks for (the URL as the client sent it). */
  url: string
  refresh: Refresh
  /** Marks the copy before the application sees it (so that the cache knows it as this refresh). */
  mark(copy: IncomingMessage): void
  /** Whether the cache that started the refresh was reached by the copy. */
  reached(): boolean
  /** Called when the copy was answered before it reached the cache, with the status it got. */
  answeredBefore?(status: number): void
}

/**
 * Refreshes a stale entry in this process: `app` handles a copy of the request (same URL, headers
 * and connection properties, no conditional headers), written to a socket that discards what it
 * is sent. In this process, because only this process knows the refresh: a copy sent over the
 * network could reach another worker of a cluster sharing the port. The refresh ends when the
 * cache stored or refused the response, when the application gave up on it (`next()`,
 * `next(error)`, a throw), or as soon as the copy's response ended without the cache settling it
 * (middleware before the cache answered it: a rate limiter's 429, an auth layer's 401).
 * Only when nothing but `app` can have touched the request at its server (see `refreshRefusal`):
 * otherwise the refresh is not run; it fails at once (counted and emitted as a `revalidate`
 * error), the stale entry is served until it expires. Returns what stops the copy.
 */
export function refreshInProcess(app: RefreshEntry, run: InProcessRefresh): () => void {
  const { req, refresh } = run
  const refused = refreshRefusal((req.socket as { server?: unknown } | null)?.server, app)
  if (refused !== undefined) {
    refresh.fail(new CacheError(`the refresh of ${refresh.key} was not run: ${refused}`))
    return () => {}
  }
  const socket = new DiscardingSocket(req.socket)
  const copy = new IncomingMessage(socket as never)
  copy.method = 'GET'
  copy.url = run.url
  carryArrival(copy, req, run.url)
  setRefreshHeaders(copy, req)
  copy.httpVersionMajor = req.httpVersionMajor
  copy.httpVersionMinor = req.httpVersionMinor
  copy.httpVersion = req.httpVersion
  copy.complete = true
  copy.push(null)
  const response = new ServerResponse(copy)
  response.assignSocket(socket as never)
  run.mark(copy)
  // The cache settles a response it recorded once it is decided on; one still unsettled a turn
  // after it finished, and not recorded, never reached it or was passed through: over now, not
  // after revalidateTimeout.
  let checked = false
  const ended = () => {
    if (checked) return
    checked = true
    setImmediate(() => {
      if (refresh.done) return
      const status = response.statusCode
      if (run.reached()) {
        // Recorded: the cache settles it once decided on (an async handler's work after sending
        // may still run), or revalidateTimeout does.
        if (refresh.recording === true) return
        refresh.fail(new CacheError(`the refresh of ${refresh.key} ended (${status}) without being stored`))
        return
      }
      run.answeredBefore?.(status)
      refresh.fail(
        new CacheError(`the refresh of ${refresh.key} was answered ${status} before it reached the cache`),
      )
    })
  }
  response.once('finish', ended)
  response.once('close', ended)
  // The app runs the copy now: a refresh the cache settles at once is stopped by its return.
  queueMicrotask(() => {
    if (refresh.done) return
    try {
      app.handle(copy, response, (error?: unknown) =>
        refresh.fail(
          error ?? new CacheError(`the refresh of ${refresh.key} got no response (the app called next())`),
        ),
      )
    } catch (error) {
      refresh.fail(error)
    }
  })
  return () => socket.destroy()
}

/**
 * The socket of a background refresh: accepts and discards every write at once, so a handler
 * that streams (`sendFile`, a pipe) is never held by backpressure; carries the connection
 * properties the application reads (`encrypted` for the protocol, the remote address for
 * `trust proxy`, `req.ip` and guards) and the port the original request reached. Its
 * `setTimeout`, `setNoDelay` and `setKeepAlive` do nothing: a layer calling them on the copy's
 * request acts on no client's connection.
 */
export class DiscardingSocket extends Duplex {
  readonly remoteAddress: string | undefined
  readonly remotePort: number | undefined
  readonly remoteFamily: string | undefined
  readonly localAddress: string | undefined
  readonly localPort: number | undefined
  /** The server the original request came through. */
  readonly server: unknown
  readonly encrypted: boolean | undefined

  constructor(from: IncomingMessage['socket']) {
    super({
      read() {},
      write(_chunk, _encoding, callback) {
        callback()
      },
      writableHighWaterMark: Number.MAX_SAFE_INTEGER,
    })
    this.remoteAddress = from?.remoteAddress
    this.remotePort = from?.remotePort
    this.remoteFamily = from?.remoteFamily
    this.localAddress = from?.localAddress
    this.localPort = from?.localPort
    this.server = (from as { server?: unknown } | null | undefined)?.server
    if ((from as { encrypted?: boolean } | undefined)?.encrypted) this.encrypted = true
  }

  setTimeout(): this {
    return this
  }

  setNoDelay(): this {
    return this
  }

  setKeepAlive(): this {
    return this
  }
}
