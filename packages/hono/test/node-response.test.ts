import { ServerResponse } from 'node:http'
import { memoryBackend } from '@cache/memory'
import type { HttpBindings } from '@hono/node-server'
import { Hono } from 'hono'
import onHeaders from 'on-headers'
import { describe, expect, it } from 'vitest'
import { type CacheResponseOptions, cacheResponse } from '../src/index.js'
import { get, listen } from './serve.js'

/*
 * Code that works on Node's own response (`c.env.outgoing` on @hono/node-server) rather than on
 * Hono's: a session layer that adds its cookie as the headers leave, a `ServerResponse` subclass.
 */

describe('a layer before the cache that adds headers as Node writes them (on-headers, as express-session does)', () => {
  /**
   * Every request is a new visitor with a session and a CSRF token that the page embeds; the
   * layer's `hook` runs on Node's response as its headers leave, as express-session's cookie does.
   */
  function sessionApp(
    hook: (res: ServerResponse, visitor: number) => void,
    options: Partial<CacheResponseOptions> = {},
  ) {
    let runs = 0
    let visitors = 0
    const app = new Hono<{ Bindings: HttpBindings; Variables: { csrf: string } }>()
    app.use('*', async (c, next) => {
      const visitor = ++visitors
      c.set('csrf', `csrf-${visitor}`)
      onHeaders(c.env.outgoing, function (this: ServerResponse) {
        hook(this, visitor)
      })
      await next()
    })
    app.get('/form', cacheResponse({ ttl: 60, backend: memoryBackend(), ...options }), (c) => {
      runs++
      return c.html(`<form><input name="csrf" value="${c.get('csrf')}"></form>`)
    })
    return { app, runs: () => runs }
  }

  it("never replays the page that carried a visitor's session cookie: visitor 2 never gets visitor 1's CSRF token", async () => {
    const { app, runs } = sessionApp((res, visitor) => res.setHeader('set-cookie', `sid=visitor-${visitor}`))
    const base = await listen(app)
    const first = await get(base, '/form')
    const second = await get(base, '/form')
    expect(first.headers['set-cookie']).toEqual(['sid=visitor-1'])
    expect(first.text).toContain('csrf-1')
    expect(second.headers['set-cookie']).toEqual(['sid=visitor-2'])
    expect(second.text).toContain('csrf-2')
    expect(second.text).not.toContain('csrf-1')
    expect(second.headers['cache-status']).not.toMatch(/hit/)
    expect(runs()).toBe(2)
  })

  it('never stores a response that it makes Cache-Control: private', async () => {
    const { app, runs } = sessionApp((res) => res.setHeader('cache-control', 'private'))
    const base = await listen(app)
    const first = await get(base, '/form')
    const second = await get(base, '/form')
    expect(first.headers['cache-control']).toBe('private')
    expect(second.text).toContain('csrf-2')
    expect(second.headers['cache-status']).not.toMatch(/hit/)
    expect(runs()).toBe(2)
  })

  it('never stores a response to which it adds Vary: *', async () => {
    const { app, runs } = sessionApp((res) => res.setHeader('vary', '*'))
    const base = await listen(app)
    const first = await get(base, '/form')
    const second = await get(base, '/form')
    expect(first.headers.vary).toBe('*')
    expect(second.text).toContain('csrf-2')
    expect(second.headers['cache-status']).not.toMatch(/hit/)
    expect(runs()).toBe(2)
  })

  it("leaves the cacheControl option's Cache-Control out of a miss to which it adds Set-Cookie", async () => {
    const { app } = sessionApp((res, visitor) => res.setHeader('set-cookie', `sid=visitor-${visitor}`), {
      cacheControl: true,
    })
    const base = await listen(app)
    const first = await get(base, '/form')
    expect(first.headers['set-cookie']).toEqual(['sid=visitor-1'])
    expect(first.headers['cache-control']).toBeUndefined()
  })

  it("leaves the cacheControl option's Cache-Control out of a hit to which it adds Set-Cookie", async () => {
    // Visitor 1 already has a session; visitor 2 is given one as the hit's headers leave.
    const { app, runs } = sessionApp(
      (res, visitor) => {
        if (visitor > 1) res.setHeader('set-cookie', `sid=visitor-${visitor}`)
      },
      { cacheControl: true },
    )
    const base = await listen(app)
    const first = await get(base, '/form')
    expect(first.headers['cache-control']).toMatch(/max-age/)
    const second = await get(base, '/form')
    expect(second.headers['cache-status']).toMatch(/hit/)
    expect(second.headers['set-cookie']).toEqual(['sid=visitor-2'])
    expect(second.headers['cache-control']).toBeUndefined()
    expect(runs()).toBe(1)
  })

  it('a ServerResponse subclass (serverOptions) that adds Set-Cookie in writeHead: never stored', async () => {
    let visitors = 0
    class SessionResponse extends ServerResponse {
      override writeHead(...args: unknown[]): this {
        this.setHeader('set-cookie', `sid=visitor-${++visitors}`)
        return (super.writeHead as (...a: unknown[]) => this)(...args)
      }
    }
    let runs = 0
    const app = new Hono()
    app.get('/form', cacheResponse({ ttl: 60, backend: memoryBackend() }), (c) => c.text(`page ${++runs}`))
    const base = await listen(app, { ServerResponse: SessionResponse as typeof ServerResponse })
    const first = await get(base, '/form')
    const second = await get(base, '/form')
    expect(first.headers['set-cookie']).toEqual(['sid=visitor-1'])
    expect(second.headers['set-cookie']).toEqual(['sid=visitor-2'])
    expect(second.text).toBe('page 2')
    expect(runs).toBe(2)
  })
})
