/**
 * A route whose options an `onReady` hook registered after the cache changed: its cache is made
 * again at its first request. What the app holds from `app.cache.routes` before then must still
 * reach the route's entries, and a change to one of a GET route and its HEAD route fails the
 * requests with a body that tells a client nothing of the app's configuration.
 */
import { Writable } from 'node:stream'
import type { CacheBackend } from '@cache/core'
import { memoryBackend } from '@cache/memory'
import type { FastifyInstance, RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import { describe, expect, it } from 'vitest'
import { cachePlugin } from '../src/index.js'
import { app } from './apps.js'

/** A plugin registered after the cache that changes each cached route's `config.cache` once ready. */
const settingsOnReady = (change: (cache: Record<string, unknown>) => Record<string, unknown>) =>
  fp(async (scope: FastifyInstance) => {
    const routes: RouteOptions[] = []
    scope.addHook('onRoute', (route) => {
      if (route.config?.cache) routes.push(route)
    })
    scope.addHook('onReady', async () => {
      for (const route of routes)
        if (route.config) route.config.cache = change(route.config.cache as Record<string, unknown>)
    })
  })

async function heldApp(change: (cache: Record<string, unknown>) => Record<string, unknown>) {
  const fastify = app()
  await fastify.register(cachePlugin, { backend: memoryBackend() })
  await fastify.register(settingsOnReady(change))
  let n = 0
  fastify.get('/p', { config: { cache: { ttl: 300 } } }, async () => `page ${++n}`)
  await fastify.ready()
  // Held from after ready(), as the README invites for listeners and stats.
  const held = fastify.cache.routes.get('/p')
  if (held === undefined) throw new Error('no cache for /p')
  const page = async () => {
    const response = await fastify.inject('/p')
    return response.body
  }
  expect([await page(), await page()]).toEqual(['page 1', 'page 1'])
  return { fastify, held, page }
}

describe("the route cache the app held when an onReady hook changed the route's options", () => {
  it('clear() reaches the entries stored under the keyPrefix the hook gave', async () => {
    const { fastify, held, page } = await heldApp((cache) => ({ ...cache, keyPrefix: 'tenant-eu' }))
    await held.clear()
    // Before: the held cache cleared its old keyPrefix; the page stored under tenant-eu was served.
    expect(await page()).toBe('page 2')
    expect(held.settings.keyPrefix).toBe('tenant-eu')
    // One object per route, whatever cache the route has now.
    expect(fastify.cache.routes.get('/p')).toBe(held)
  })

  it('invalidate(url) and invalidateKey() reach the backend the hook gave', async () => {
    const eu: CacheBackend = memoryBackend()
    const { held, page } = await heldApp((cache) => ({ ...cache, backend: eu }))
    // Before: the held cache invalidated the plugin's backend; the page stored in eu was served.
    expect(await held.invalidate('/p', { host: 'localhost:80' })).toBe(true)
    expect(await page()).toBe('page 2')
    expect(await page()).toBe('page 2')
    expect(await held.invalidateKey('http://localhost:80/p')).toBe(true)
    expect(await page()).toBe('page 3')
    expect(held.backend()).toBe(eu)
  })

  it('keeps its stats and listeners', async () => {
    const { held, page } = await heldApp((cache) => ({ ...cache, keyPrefix: 'tenant-eu' }))
    const seen: string[] = []
    held.on('miss', () => seen.push('miss'))
    held.on('hit', () => seen.push('hit'))
    await held.clear()
    await page()
    await page()
    expect(seen).toEqual(['miss', 'hit'])
    expect(held.stats).toMatchObject({ hits: 2, misses: 2 })
  })
})

describe('an onReady hook that changes the options of a GET route and not of its HEAD route', () => {
  it('fails their requests with a generic 500 body, and logs what an onReady hook did', async () => {
    const lines: string[] = []
    const stream = new Writable({
      write(chunk, _encoding, callback) {
        lines.push(String(chunk))
        callback()
      },
    })
    const fastify = app({ logger: { level: 'error', stream } })
    await fastify.register(cachePlugin, { backend: memoryBackend() })
    const routes: RouteOptions[] = []
    await fastify.register(
      fp(async (scope: FastifyInstance) => {
        scope.addHook('onRoute', (route) => {
          if (route.config?.cache) routes.push(route)
        })
        scope.addHook('onReady', async () => {
          // A new `config` for the GET route only: its HEAD route keeps the one it was declared with.
          for (const route of routes)
            if (route.method === 'GET')
              route.config = { ...route.config, cache: { ttl: 60, vary: ['x-user'] } }
        })
      }),
    )
    fastify.get(
      '/me',
      { config: { cache: { ttl: 60 } } },
      async (request) => `page of ${request.headers['x-user']}`,
    )
    await fastify.ready()
    for (const method of ['GET', 'HEAD'] as const) {
      const response = await fastify.inject({ method, url: '/me', headers: { 'x-user': 'alice' } })
      expect(response.statusCode).toBe(500)
      // Before: the body was the CacheConfigError's message, naming the routes and their options.
      expect(response.body).not.toMatch(/config\.cache|vary|\/me|CACHE_CONFIG/)
    }
    const logged = lines.map((line) => JSON.parse(line) as { msg: string; err?: { message?: string } })
    const detail = logged.find((entry) =>
      /config\.cache: routes GET \/me and HEAD \/me/.test(entry.err?.message ?? ''),
    )
    // Before: "onRoute hooks left them different", though no onRoute hook did.
    expect(detail?.err?.message).toContain('changed after the app got ready')
    expect(detail?.err?.message).toContain('an onReady hook')
    expect(detail?.err?.message).not.toContain('onRoute hooks left them')
  })
})
