/**
 * Nest on Express: a stale-while-revalidate refresh hands a copy of the request to Express
 * directly. A server that marks its requests before the app (a `request` listener prepended on
 * `app.getHttpServer()`) must never have its clients served what the app renders for unmarked
 * requests: the refresh is not run there.
 */
import 'reflect-metadata'
import type { IncomingMessage } from 'node:http'
import { memoryBackend } from '@cache/memory'
import { Controller, Get, type INestApplication, Module, Req } from '@nestjs/common'
import { afterEach, expect, it } from 'vitest'
import { CacheModule, CacheResponse } from '../src/index.js'
import { startApp } from './harness.js'

type Marked = IncomingMessage & { publicView?: boolean }
const state = { now: 1_000_000, runs: 0 }

@Controller()
class ReportController {
  @Get('report')
  @CacheResponse({ ttl: 60, staleWhileRevalidate: 600, now: () => state.now })
  report(@Req() req: Marked) {
    state.runs++
    return req.publicView ? `public summary ${state.runs}` : 'INTERNAL FULL REPORT'
  }
}

@Module({
  imports: [CacheModule.forRoot({ backend: memoryBackend({ now: () => state.now }), isGlobal: true })],
  controllers: [ReportController],
})
class ReportModule {}

const apps: INestApplication[] = []
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()))
})

async function body(base: string): Promise<string> {
  return (await fetch(`${base}/report`)).text()
}

it('a listener prepended on app.getHttpServer(): the refresh is not run, the marked view stays', async () => {
  const { app, url } = await startApp('express', ReportModule, (made) => {
    made.getHttpServer().prependListener('request', (req: Marked) => {
      req.publicView = true
    })
  })
  apps.push(app)
  expect(await body(url)).toBe('public summary 1')
  state.now += 61_000
  expect(await body(url)).toBe('public summary 1')
  // Bounded wait for a refresh that must not run (the handler would run again).
  for (let i = 0; i < 50 && state.runs < 2; i++) await new Promise((resolve) => setTimeout(resolve, 10))
  for (let i = 0; i < 2; i++) expect(await body(url)).not.toContain('INTERNAL')
  expect(state.runs).toBe(1)
  // Past the stale window: a normal miss, through the server's listener.
  state.now += 600_000
  expect(await body(url)).toBe('public summary 2')
})
