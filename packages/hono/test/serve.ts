import { request as httpRequest, type IncomingHttpHeaders, type ServerOptions } from 'node:http'
import {
  type ClientHttp2Session,
  connect as connectHttp2,
  createServer as createHttp2Server,
} from 'node:http2'
import type { AddressInfo } from 'node:net'
import { type HttpBindings, type ServerType, serve as serveNode } from '@hono/node-server'
import { noteArrivals } from '../src/index.js'
import type { Hono } from 'hono'
import { afterEach } from 'vitest'

const servers: ServerType[] = []
const sessions: ClientHttp2Session[] = []
afterEach(async () => {
  for (const session of sessions.splice(0)) session.close()
  for (const server of servers.splice(0)) {
    ;(server as { closeAllConnections?: () => void }).closeAllConnections?.()
    await new Promise((resolve) => server.close(resolve))
  }
})

/**
 * Serves `app` on Node's Hono server, on a free loopback port, closed after the test;
 * `serverOptions` go to Node's `createServer` (a `ServerResponse` subclass).
 */
export async function listen(
  app: Pick<Hono, 'fetch'> | Pick<Hono<{ Bindings: HttpBindings }>, 'fetch'>,
  serverOptions?: ServerOptions,
): Promise<string> {
  const options = {
    fetch: app.fetch,
    port: 0,
    hostname: '127.0.0.1',
    ...(serverOptions ? { serverOptions } : {}),
  }
  const server = await new Promise<ServerType>((resolve) => {
    const s = noteArrivals(serveNode(options, () => resolve(s)))
  })
  servers.push(server)
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

/**
 * Serves `app` on an HTTP/2 @hono/node-server (arrivals noted), closed after the test; `get`
 * sends one request on one client session: the body as text and the `Cache-Status` line.
 */
export async function listenHttp2(app: Pick<Hono<{ Bindings: HttpBindings }>, 'fetch'>) {
  const server = await new Promise<ServerType>((resolve) => {
    const s = noteArrivals(
      serveNode({ fetch: app.fetch, port: 0, hostname: '127.0.0.1', createServer: createHttp2Server }, () =>
        resolve(s),
      ),
    )
  })
  servers.push(server)
  const client = connectHttp2(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)
  sessions.push(client)
  return (path: string, headers: Record<string, string | string[]> = {}) =>
    new Promise<{ text: string; status: string }>((resolve, reject) => {
      const stream = client.request({ ':path': path, ...headers })
      let text = ''
      let status = ''
      stream.on('response', (head) => {
        status = String(head['cache-status'])
      })
      stream.setEncoding('utf8')
      stream.on('data', (chunk: string) => (text += chunk))
      stream.on('end', () => resolve({ text, status }))
      stream.on('error', reject)
    })
}

export interface Reply {
  status: number
  headers: IncomingHttpHeaders
  body: Buffer
  text: string
}

/** One request on its own connection, the body kept as bytes and as text. */
export function get(
  base: string,
  path: string,
  method = 'GET',
  headers: Record<string, string> = {},
): Promise<Reply> {
  const { hostname, port } = new URL(base)
  return new Promise((resolve, reject) => {
    const options = { host: hostname, port, path, method, headers, agent: false, timeout: 5_000 }
    const req = httpRequest(options, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => {
        const body = Buffer.concat(chunks)
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, text: body.toString() })
      })
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error(`${path} timed out`)))
    req.on('error', reject)
    req.end()
  })
}
