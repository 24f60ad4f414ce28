/**
 * `@cacheResponse` on a real NestJS 11 app (Express platform) with Nest's versioning: under
 * header or media-type versioning Nest picks the handler of a URL by a request header and sends no
 * `Vary` for it, so `cacheControl` must not say `public` (a CDN keying on the URL would give a v2
 * client the v1 page); under URI versioning, or none, the URL is all a response depends on.
 */
import 'reflect-metadata'
import { afterEach, describe, expect, it } from 'vitest'
import { memory, request } from './http.js'

interface VersioningFixture {
  startVersioned(
    backend: ReturnType<typeof memory>,
    versioning: 'header' | 'media' | 'uri' | 'none',
  ): Promise<{ app: { close(): Promise<void> }; port: number }>
}
// A path the TC39-mode typecheck of this file does not follow into the legacy-mode fixture.
const FIXTURE: string = './fixtures/nest/versioning.js'

const apps: { close(): Promise<void> }[] = []
afterEach(async () => {
  for (const app of apps.splice(0)) await app.close()
})

async function start(versioning: 'header' | 'media' | 'uri' | 'none') {
  const { startVersioned } = (await import(FIXTURE)) as VersioningFixture
  const { app, port } = await startVersioned(memory(), versioning)
  apps.push(app)
  return (path: string, headers: Record<string, string> = {}) => request(port, path, { headers })
}

describe('@cacheResponse with cacheControl under Nest versioning (platform-express)', () => {
  it.each([
    ['header', (v: string) => ({ 'x-version': v })],
    ['media', (v: string) => ({ accept: `application/json;v=${v}` })],
  ] as const)(
    '%s versioning: each version gets its own body, private on misses and hits, also where no version is declared',
    async (versioning, ask) => {
      const get = await start(versioning)
      for (const v of ['1', '1', '2', '2']) {
        const reply = await get('/items', ask(v))
        expect(JSON.parse(reply.body.toString())).toEqual({ v: Number(v) })
        expect(reply.headers['cache-control']).toBe('private, max-age=60')
      }
      for (const _ of [1, 2]) {
        const about = await get('/about', ask('1'))
        expect(about.status).toBe(200)
        expect(about.headers['cache-control']).toMatch(/^private/)
      }
    },
  )

  it('URI versioning: the version is in the URL, responses stay public', async () => {
    const get = await start('uri')
    for (const v of ['1', '2']) {
      const reply = await get(`/v${v}/items`)
      expect(JSON.parse(reply.body.toString())).toEqual({ v: Number(v) })
      expect(reply.headers['cache-control']).toBe('public, max-age=60')
    }
  })

  it('without versioning: public', async () => {
    const get = await start('none')
    expect((await get('/about')).headers['cache-control']).toBe('public, max-age=60')
  })
})
