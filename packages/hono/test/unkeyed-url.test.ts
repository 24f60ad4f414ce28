/*
 * Parts of `c.req.url` the key leaves out: a raw `#fragment` in the request target, user info in
 * an absolute-form target (`GET http://evil:x@shop.test/offers` with `Host: shop.test`). A handler
 * that echoes `c.req.url` (a share link, a canonical link) would have the attacker's text stored
 * in the page every later client of the plain URL gets. Such requests bypass (`detail=url`), as
 * they do on Express and Fastify.
 */
import { connect } from 'node:net'
import { memoryBackend } from '@cache/memory'
import { Hono } from 'hono'
import { describe, expect, it } from 'vitest'
import { cacheResponse } from '../src/index.js'
import { listen } from './serve.js'

/** A request target sent byte for byte (Node's client would not send these as they are). */
function raw(base: string, target: string): Promise<{ cacheStatus: string; body: string }> {
  const { port } = new URL(base)
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1', () =>
      socket.write(`GET ${target} HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n`),
    )
    let data = ''
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => {
      data += chunk
    })
    socket.on('error', reject)
    socket.on('end', () => {
      const split = data.indexOf('\r\n\r\n')
      const head = data.slice(0, split)
      resolve({ cacheStatus: /cache-status: (.*)/i.exec(head)?.[1] ?? '', body: data.slice(split + 4) })
    })
  })
}

describe('a request URL holding what the key leaves out', () => {
  function sharing() {
    const app = new Hono()
    app.use('*', cacheResponse({ ttl: 60, backend: memoryBackend() }))
    app.get('/:page', (c) => c.html(`<a href='${c.req.url}'>share this page</a>`))
    return app
  }

  it.each([
    ['a raw #fragment in the target', "/products#'onmouseover='alert(1)", '/products', 'onmouseover'],
    ['user info in an absolute-form target', 'http://evil:x@shop.test/offers', '/offers', 'evil:x@'],
    ['a user name alone in an absolute-form target', 'http://evil@shop.test/deals', '/deals', 'evil@'],
  ])(
    '%s bypasses: its page is never served to clients of the plain URL',
    async (_what, attack, plain, marker) => {
      const base = await listen(sharing())
      const attacked = await raw(base, attack)
      expect(attacked.body).toContain(marker)
      expect(attacked.cacheStatus).toBe('@cache; fwd=request; detail=url')
      const clean = await raw(base, plain)
      expect(clean.body).not.toContain(marker)
      expect(clean.cacheStatus).toBe('@cache; fwd=uri-miss; stored')
      expect((await raw(base, attack)).cacheStatus).toBe('@cache; fwd=request; detail=url')
      const hit = await raw(base, plain)
      expect(hit.body).not.toContain(marker)
      expect(hit.cacheStatus).toMatch(/^@cache; hit/)
    },
  )

  it('an absolute-form target without user info or fragment is still cached', async () => {
    const base = await listen(sharing())
    expect((await raw(base, 'http://shop.test/catalog')).cacheStatus).toBe('@cache; fwd=uri-miss; stored')
    expect((await raw(base, '/catalog')).cacheStatus).toMatch(/^@cache; hit/)
  })
})
