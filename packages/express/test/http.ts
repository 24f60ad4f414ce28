import { request as httpRequest, type IncomingHttpHeaders, type Server } from 'node:http'
import { createRequire } from 'node:module'
import type { AddressInfo } from 'node:net'
import { defineBackend, type CacheBackend } from '@cache/core'
import { createCodec } from '@cache/core/backend'
import { MemoryBackend } from '@cache/memory'
import { noteArrivals } from '../src/index.js'
import express4 from 'express4'
import express5 from 'express'
import { afterEach } from 'vitest'

/** Both Express majors the package supports, by name. */
export const EXPRESS = [
  ['Express 4', express4 as unknown as typeof express5],
  ['Express 5', express5],
] as const

export interface Reply {
  status: number
  headers: IncomingHttpHeaders
  body: Buffer
}

/** A running app on a free loopback port. */
export interface Running {
  url: string
  port: number
  request(path: string, options?: RequestOptions): Promise<Reply>
  close(): Promise<void>
}

/** `port`: a port to listen on (one a closed server of the test used, say); a free one by default. */
export async function listen(app: { listen: (...args: any[]) => Server }, port = 0): Promise<Running> {
  const server = await new Promise<Server>((resolve) => {
    // As the README says: the server notes each request's target from its first request on.
    const s = noteArrivals(app.listen(port, '127.0.0.1', () => resolve(s)))
  })
  const address = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${address}`,
    port: address,
    request: (path, options = {}) => request(address, path, options),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

/** A raw HTTP request: the body exactly as sent on the wire (no decompression). */
export function request(port: number, path: string, options: RequestOptions = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: options.host ?? '127.0.0.1',
        port,
        socketPath: options.socketPath,
        localAddress: options.localAddress,
        path,
        method: options.method ?? 'GET',
        headers: options.headers,
        agent: false,
        timeout: options.timeout ?? 5_000,
      },
      (res) => {
        if (options.headersOnly) {
          resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.alloc(0) })
          req.destroy()
          return
        }
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () =>
          resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }),
        )
        res.on('error', reject)
      },
    )
    req.on('timeout', () => req.destroy(new Error(`${options.method ?? 'GET'} ${path} timed out`)))
    req.on('error', reject)
    req.end(options.body)
  })
}

export interface RequestOptions {
  method?: string
  /** The address to connect to. Default: 127.0.0.1. */
  host?: string
  /** A Unix socket to connect to instead of a port. */
  socketPath?: string
  /** The local address to send from, as a client on another host would. */
  localAddress?: string
  headers?: Record<string, string>
  /** A request body (a GET may carry one). Default: none. */
  body?: string
  /** Give up (reject) after this many ms without activity. Default: 5000. */
  timeout?: number
  /** Resolve as soon as the status line and headers arrive, then drop the connection. */
  headersOnly?: boolean
}

/** A request that may fail (an aborted or truncated response): its reply, or the error. */
export async function attempt(
  port: number,
  path: string,
  options: RequestOptions = {},
): Promise<Reply | Error> {
  try {
    return await request(port, path, options)
  } catch (error) {
    return error as Error
  }
}

/** A backend that keeps values as bytes through the core codec, as a remote store does. */
export function bytesBackend(): CacheBackend & { raw: Map<string, Buffer> } {
  const codec = createCodec()
  const raw = new Map<string, Buffer>()
  const backend = defineBackend({
    name: 'bytes',
    async get(key: string) {
      const bytes = raw.get(key)
      return bytes === undefined ? undefined : (codec.decode(bytes) as any)
    },
    async set(key: string, value: unknown) {
      raw.set(key, codec.encode(value))
    },
    async delete(key: string) {
      return raw.delete(key)
    },
    async clear() {
      raw.clear()
    },
  })
  return Object.assign(backend, { raw })
}

export function memory(now?: () => number): MemoryBackend {
  return new MemoryBackend(now ? { now } : {})
}

/**
 * `serve(app)` for a test file: starts an app (anything with `listen`) on a free loopback port and
 * closes every app it started after each test.
 */
export function serveEach(): (
  app: { listen: (...args: any[]) => Server },
  port?: number,
) => Promise<Running> {
  const running: Running[] = []
  afterEach(async () => {
    await Promise.all(running.splice(0).map((r) => r.close()))
  })
  return async (app, port) => {
    const r = await listen(app, port)
    running.push(r)
    return r
  }
}

/**
 * A copy of a package that nothing else in this process has loaded: the package and every module
 * it requires are loaded anew, as when a plugin brings its own Express next to the app's. The
 * module cache is left as it was.
 */
export function freshCopy<T>(id: string): T {
  const require = createRequire(import.meta.url)
  const cache = require.cache
  const saved = Object.entries(cache)
  for (const key of Object.keys(cache)) delete cache[key]
  try {
    return require(id) as T
  } finally {
    for (const key of Object.keys(cache)) delete cache[key]
    for (const [key, module] of saved) cache[key] = module
  }
}
