import {
  createServer,
  type IncomingMessage,
  request,
  type ServerOptions,
  type ServerResponse,
} from 'node:http'
import type { AddressInfo } from 'node:net'
import {
  answerFromResult,
  type HttpCache,
  type LookupResult,
  nodeRequestView,
  noteArrivals,
  type Refresh,
  recordNodeResponse,
} from '../src/index.js'

export type Handler = (req: IncomingMessage, res: ServerResponse) => void

export interface Served {
  url: string
  /** Handler runs so far. */
  calls(): number
  close(): Promise<void>
}

/** Marks the copy of a request a refresh runs (this test adapter reaches its own server over HTTP). */
const REFRESH_HEADER = 'x-test-refresh'

/**
 * A plain node:http server with one cache in front of `handler`: the smallest adapter, with
 * stale-while-revalidate refreshes sent back to the server itself.
 */
export async function serve(
  cache: HttpCache,
  handler: Handler,
  options: {
    site?: (req: IncomingMessage) => string | undefined
    bypass?: (req: IncomingMessage) => string | undefined
    /** A layer before the cache (it may change `req.headers`). */
    before?: (req: IncomingMessage) => void
    /** Options of Node's `createServer` (a `ServerResponse` subclass). */
    serverOptions?: ServerOptions
    /** Whether a stale hit of this request can be refreshed in the background (default: yes). */
    backgroundRefresh?: (req: IncomingMessage) => boolean
    /** Whether a background copy of this request can be started (default: yes; no: `revalidate` returns false). */
    startsRefresh?: (req: IncomingMessage) => boolean
  } = {},
): Promise<Served> {
  let calls = 0
  let port = 0
  const refreshes = new Map<string, Refresh>()
  let next = 0
  const run = (req: IncomingMessage, res: ServerResponse) => {
    calls++
    handler(req, res)
  }
  // As the README says: the server notes each request's lines as it emits it.
  const server = noteArrivals(
    createServer(options.serverOptions ?? {}, (req, res) => {
      options.before?.(req)
      const view = nodeRequestView(req, { site: '' })
      if (options.site) view.site = options.site(req)
      if (options.bypass) view.bypass = options.bypass(req)
      const id = req.headers[REFRESH_HEADER]
      if (typeof id === 'string') {
        view.refresh = refreshes.get(id)
        refreshes.delete(id)
        delete req.headers[REFRESH_HEADER]
      }
      const act = (result: LookupResult) => {
        if (answerFromResult(res, result)) return
        if (result.kind === 'miss') recordNodeResponse(res, result)
        run(req, res)
      }
      const backgroundRefresh = options.backgroundRefresh
      const result = cache.lookup(view, {
        ...(backgroundRefresh === undefined ? {} : { backgroundRefresh: () => backgroundRefresh(req) }),
        revalidate: (refresh) => {
          if (options.startsRefresh?.(req) === false) return false
          const key = String(next++)
          refreshes.set(key, refresh)
          const headers = { ...req.headers, [REFRESH_HEADER]: key }
          delete headers['if-none-match']
          delete headers.range
          const copy = request({ port, path: req.url, method: 'GET', headers }, (response) =>
            response.resume(),
          )
          copy.on('error', (error) => refresh.fail(error))
          copy.end()
          return () => copy.destroy()
        },
      })
      if (result instanceof Promise) void result.then(act)
      else act(result)
    }),
  )
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}`,
    calls: () => calls,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

export interface Reply {
  status: number
  headers: Record<string, string>
  body: Buffer
}

/** One request over a new connection; rejects when the response does not arrive whole. */
export function send(
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: options.method ?? 'GET', headers: options.headers, agent: false },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (chunk: Buffer) => chunks.push(chunk))
        res.on('error', reject)
        res.on('aborted', () => reject(new Error('aborted')))
        res.on('end', () => {
          if (!res.complete) return reject(new Error('incomplete'))
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers as Record<string, string>,
            body: Buffer.concat(chunks),
          })
        })
      },
    )
    req.on('error', reject)
    req.end(options.body)
  })
}

/** Waits until `check` holds, polling on the event loop (bounded). */
export async function until(check: () => boolean | Promise<boolean>, what: string, ms = 3000): Promise<void> {
  const end = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}
