/**
 * Nest's Express platform, a request changed before Express saw it: the server's own
 * `checkContinue` listener that strips a locale prefix and calls the Express instance (or emits
 * the request again as `request`), a `request` listener prepended to Nest's; middleware that maps
 * a legacy domain's `Host` to the new one. With and without the front door (`front: true`). Real
 * Nest apps, requests sent byte for byte.
 */
import 'reflect-metadata'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { connect } from 'node:net'
import { resetCache } from '@cache/core'
import {
  Controller,
  Get,
  type INestApplication,
  type MiddlewareConsumer,
  Module,
  type NestModule,
  Req,
  type Type,
} from '@nestjs/common'
import { NestFactory } from '@nestjs/core'
import { ExpressAdapter } from '@nestjs/platform-express'
import { afterEach, describe, expect, it } from 'vitest'
import { CacheModule, CacheResponse } from '../src/index.js'

const apps: INestApplication[] = []
afterEach(async () => {
  for (const app of apps.splice(0)) await app.close()
  await resetCache()
})

interface Answer {
  status: number
  cacheStatus: string
  body: string
}

/** A request sent byte for byte on a socket of its own; interim (1xx) responses are skipped. */
function send(port: number, target: string, extra: Record<string, string> = {}): Promise<Answer> {
  const host = extra.host ?? 'shop.test'
  const lines = Object.entries(extra)
    .filter(([name]) => name !== 'host')
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('')
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () =>
      socket.write(`GET ${target} HTTP/1.1\r\nHost: ${host}\r\n${lines}Connection: close\r\n\r\n`),
    )
    let data = ''
    socket.setEncoding('latin1')
    socket.on('data', (chunk) => {
      data += chunk
    })
    socket.on('error', reject)
    socket.on('end', () => {
      while (/^HTTP\/1\.1 1\d\d /.test(data)) data = data.slice(data.indexOf('\r\n\r\n') + 4)
      const split = data.indexOf('\r\n\r\n')
      const head = data.slice(0, split)
      resolve({
        status: Number(head.split(' ')[1]),
        cacheStatus: /cache-status: (.*)/i.exec(head)?.[1] ?? '',
        body: data.slice(split + 4),
      })
    })
  })
}

type Localized = IncomingMessage & { lang?: string; legacy?: boolean }

/** Strips a `/fr` prefix from `req.url` and notes the language on the request. */
function stripLocale(req: Localized): void {
  if (req.url?.startsWith('/fr/')) {
    req.url = req.url.slice(3)
    req.lang = 'fr'
  }
}

@Controller()
class PagesController {
  @Get('p')
  @CacheResponse({ ttl: 60 })
  page(@Req() req: Localized) {
    return `page-in-${req.lang ?? 'en'}`
  }

  @Get('f')
  @CacheResponse({ ttl: 60, frontSkipsAllMiddleware: true })
  fronted(@Req() req: Localized) {
    return `page-in-${req.lang ?? 'en'}`
  }
}

/** Maps the legacy domain to the new one and flags the request for the handler. */
function alias(req: Localized, _res: unknown, next: () => void): void {
  if (req.headers.host === 'old.shop.test') {
    req.headers.host = 'shop.test'
    req.legacy = true
  }
  next()
}

@Controller()
class DomainController {
  @Get('home')
  @CacheResponse({ ttl: 60 })
  home(@Req() req: Localized) {
    return req.legacy ? 'legacy-page' : 'new-page'
  }
}

async function start(
  front: boolean,
  controller: Type<unknown>,
  middleware?: (req: Localized, res: unknown, next: () => void) => void,
): Promise<{ app: INestApplication; server: Server; port: number }> {
  class AppModule implements NestModule {
    configure(consumer: MiddlewareConsumer) {
      if (middleware !== undefined) consumer.apply(middleware).forRoutes('*')
    }
  }
  Module({ imports: [CacheModule.forRoot({ backend: 'memory', front })], controllers: [controller] })(
    AppModule,
  )
  const app = await NestFactory.create(AppModule, new ExpressAdapter(), {
    logger: false,
    abortOnError: false,
  })
  apps.push(app)
  await app.listen(0, '127.0.0.1')
  const server = app.getHttpServer() as Server
  return { app, server, port: (server.address() as AddressInfo).port }
}

const REWRITES: [string, (server: Server, app: INestApplication) => void, Record<string, string>][] = [
  [
    'checkContinue listener calling the Express instance',
    (server, app) => {
      const express = app.getHttpAdapter().getInstance()
      server.on('checkContinue', (req: Localized, res: ServerResponse) => {
        stripLocale(req)
        res.writeContinue()
        express(req, res)
      })
    },
    { expect: '100-continue' },
  ],
  [
    'checkContinue listener emitting the request again as request',
    (server) =>
      server.on('checkContinue', (req: Localized, res: ServerResponse) => {
        stripLocale(req)
        res.writeContinue()
        server.emit('request', req, res)
      }),
    { expect: '100-continue' },
  ],
  ['request listener prepended to Nest’s', (server) => server.prependListener('request', stripLocale), {}],
]

describe.each([
  ['without the front', false, '/p'],
  ['with front: true, a handler marked frontSkipsAllMiddleware', true, '/f'],
])('Nest on Express %s: a request rewritten before Express', (_name, front, path) => {
  it.each(REWRITES)(
    '%s: the French page is never stored under the English URL nor served for it',
    async (_how, rewrite, headers) => {
      const { app, server, port } = await start(front, PagesController)
      rewrite(server, app)
      const french = await send(port, `/fr${path}`, headers)
      expect(french.body).toBe('page-in-fr')
      expect(french.cacheStatus).toMatch(/detail=rewritten-url/)
      const english = await send(port, path)
      expect(english.body).toBe('page-in-en')
      expect(english.cacheStatus).toBe('@cache; fwd=uri-miss; stored')
      expect((await send(port, path)).cacheStatus).toMatch(/^@cache; hit/)
      // The front (or the interceptor) never answers the rewritten request with the English entry.
      const again = await send(port, `/fr${path}`, headers)
      expect(again.body).toBe('page-in-fr')
      expect(again.cacheStatus).toMatch(/detail=rewritten-url/)
    },
  )
})

describe('Nest on Express: a Host rewritten by middleware', () => {
  it.each([false, true])(
    "keys the Host the client sent (front: %s): the legacy domain's page is never served to clients of the new one",
    async (front) => {
      const { port } = await start(front, DomainController, alias)
      const legacy = await send(port, '/home', { host: 'old.shop.test' })
      expect(legacy.body).toBe('legacy-page')
      expect(legacy.cacheStatus).toBe('@cache; fwd=uri-miss; stored')
      const fresh = await send(port, '/home')
      expect(fresh.body).toBe('new-page')
      expect(fresh.cacheStatus).toBe('@cache; fwd=uri-miss; stored')
      expect((await send(port, '/home', { host: 'old.shop.test' })).body).toBe('legacy-page')
      expect((await send(port, '/home')).cacheStatus).toMatch(/^@cache; hit/)
    },
  )
})
