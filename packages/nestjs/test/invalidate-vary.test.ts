/**
 * `invalidateResponse(url)` on a handler keyed by request headers (the `vary` option): every value
 * of those headers is a variant of the URL, and the URL's invalidation reaches them all. Real Nest
 * apps on both platforms, over real HTTP.
 */
import 'reflect-metadata'
import { Controller, Get, Headers, type INestApplication, Module } from '@nestjs/common'
import { afterEach, describe, expect, it } from 'vitest'
import { CacheModule, CacheResponse, invalidateResponse } from '../src/index.js'
import { PLATFORMS, send, startApp } from './harness.js'

/** What the greeting handler answers: its version, bumped by the test as the data changes. */
const data = { version: 1 }

@Controller('greeting')
class GreetingController {
  @Get()
  @CacheResponse({ ttl: 60, vary: ['accept-language'], keyPrefix: 'api' })
  get(@Headers('accept-language') language?: string) {
    return { v: data.version, language: language ?? 'none' }
  }
}

@Module({ imports: [CacheModule.forRoot({ backend: 'memory' })], controllers: [GreetingController] })
class AppModule {}

let app: INestApplication | undefined
afterEach(async () => {
  await app?.close()
  app = undefined
})

const LANGUAGES: Record<string, string>[] = [{ 'accept-language': 'fr' }, { 'accept-language': 'en' }, {}]

describe.each(PLATFORMS)('invalidateResponse and the vary option (platform-%s)', (platform) => {
  async function started() {
    data.version = 1
    const s = await startApp(platform, AppModule)
    app = s.app
    const greet = async (headers: Record<string, string>) => {
      const reply = await send(s.url, '/greeting', { headers })
      return { v: JSON.parse(reply.text).v as number, status: String(reply.headers['cache-status']) }
    }
    for (const headers of LANGUAGES) await greet(headers)
    for (const headers of LANGUAGES) expect((await greet(headers)).status).toMatch(/hit/)
    data.version = 2
    return { ...s, greet }
  }

  it.each([
    ['/greeting', ''],
    ['/Greeting/', ' (another spelling the router sends to the same handler)'],
  ])('invalidateResponse(%s) reaches every value of a vary header%s', async (path) => {
    const { port, greet } = await started()
    await invalidateResponse(path, { host: `127.0.0.1:${port}` })
    for (const headers of LANGUAGES) expect((await greet(headers)).v).toBe(2)
  })

  it('with headers and vary, it still reaches every value (the headers only pick the entry deleted at once)', async () => {
    const { port, greet } = await started()
    await invalidateResponse('/greeting', {
      host: `127.0.0.1:${port}`,
      vary: ['Accept-Language'],
      headers: { 'accept-language': 'fr' },
    })
    expect((await greet({ 'accept-language': 'fr' })).v).toBe(2)
    expect((await greet({ 'accept-language': 'en' })).v).toBe(2)
  })
})
