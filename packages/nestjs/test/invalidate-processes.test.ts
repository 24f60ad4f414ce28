/**
 * Invalidation reaches a handler's own backend from a process where that handler never ran: a
 * replica that takes the write, a process just restarted. Two processes of one Nest app (the
 * built package, `dist`) share a real redis-server; one serves and stores, the other only starts
 * the app (`app.init()`, no request) and invalidates without a `backend` option.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { promisify } from 'node:util'
import { type RedisServer, startRedis } from '@cache/test-servers'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { PLATFORMS } from './harness.js'

const dist = pathToFileURL(join(__dirname, '../dist/index.js')).href
const dir = mkdtempSync(join(tmpdir(), 'cache-nestjs-invalidate-'))
let redis: RedisServer
beforeAll(async () => {
  redis = await startRedis()
})
afterAll(async () => {
  await redis?.stop()
  rmSync(dir, { recursive: true, force: true })
})

// The app: one handler on a backend of its own (`@CacheResponse({ backend })`, on the method or on
// the controller, keyed by a request header when VARY names one), the module's backend in memory. ROLE=serve listens; ROLE=invalidate starts the
// same app without serving a request, invalidates as HOW says, and exits.
const script = `
  import 'reflect-metadata'
  import { readFileSync } from 'node:fs'
  import { Controller, Get, Module } from '@nestjs/common'
  import { NestFactory } from '@nestjs/core'
  import { FastifyAdapter } from '@nestjs/platform-fastify'
  import { redisBackend } from '@cache/redis'
  import { CacheModule, CacheResponse, invalidateResponse, invalidateResponsePrefix, invalidateTags } from '${dist}'

  const { ROLE, HOW, PLATFORM, PORT, REDIS_URL, DATA, ON, VARY } = process.env
  const products = redisBackend(REDIS_URL, { namespace: 'products' })
  const options = { ttl: 60, tags: ['products'], keyPrefix: 'catalog', backend: products, ...(VARY ? { vary: [VARY] } : {}) }
  class ProductsController {
    list() { return { v: readFileSync(DATA, 'utf8') } }
  }
  const descriptor = Object.getOwnPropertyDescriptor(ProductsController.prototype, 'list')
  Get()(ProductsController.prototype, 'list', descriptor)
  if (ON === 'method') CacheResponse(options)(ProductsController.prototype, 'list', descriptor)
  else CacheResponse(options)(ProductsController)
  Controller('products')(ProductsController)
  class AppModule {}
  Module({ imports: [CacheModule.forRoot({ backend: 'memory' })], controllers: [ProductsController] })(AppModule)
  const app = PLATFORM === 'fastify'
    ? await NestFactory.create(AppModule, new FastifyAdapter(), { logger: false })
    : await NestFactory.create(AppModule, { logger: false })
  if (ROLE === 'serve') {
    // Port 0: a port picked in advance could be taken by another test before this process listens.
    await app.listen(0, '127.0.0.1')
    console.log('ready ' + app.getHttpServer().address().port)
    process.stdin.resume()
    process.stdin.on('end', async () => { await app.close(); await products.close(); process.exit(0) })
  } else {
    await app.init()
    if (HOW === 'tags') await invalidateTags(['products'])
    else if (HOW === 'url') await invalidateResponse('http://127.0.0.1:' + PORT + '/products', { keyPrefix: 'catalog' })
    else await invalidateResponsePrefix('catalog')
    await app.close()
    await products.close()
    console.log('done')
  }
`

function env(extra: Record<string, string>): NodeJS.ProcessEnv {
  return { ...process.env, REDIS_URL: redis.url, ...extra }
}

async function serve(extra: Record<string, string>): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    cwd: join(__dirname, '..'),
    env: env({ ...extra, ROLE: 'serve' }),
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  let out = ''
  child.stdout!.on('data', (chunk) => {
    out += chunk
  })
  const ready = new Promise<number>((resolve, reject) => {
    child.stdout!.on('data', () => {
      const port = /ready (\d+)/.exec(out)?.[1]
      if (port !== undefined) resolve(Number(port))
    })
    child.once('exit', (code) => reject(new Error(`the serving process exited (${code}) before it listened`)))
  })
  const timer = setTimeout(() => child.kill(), 20_000)
  try {
    return { child, port: await ready }
  } finally {
    clearTimeout(timer)
  }
}

async function get(port: number): Promise<{ body: string; status: string | null }> {
  // A French client: under the `vary` option, a variant other than the header-less one.
  const response = await fetch(`http://127.0.0.1:${port}/products`, { headers: { 'accept-language': 'fr' } })
  return { body: await response.text(), status: response.headers.get('cache-status') }
}

describe.each(PLATFORMS)('invalidation from another process (%s)', (platform) => {
  it.each([
    ['tags', 'method', ''],
    ['url', 'method', ''],
    ['prefix', 'controller', ''],
    ['url', 'method', ' keyed by Accept-Language (the vary option)'],
  ])(
    'invalidate by %s, without a backend, reaches the backend of @CacheResponse on the %s%s in a process that served nothing',
    async (how, on, vary) => {
      const data = join(dir, `${platform}-${how}${vary === '' ? '' : '-vary'}`)
      writeFileSync(data, 'old')
      const extra = {
        PLATFORM: platform,
        DATA: data,
        ON: on,
        HOW: how,
        VARY: vary === '' ? '' : 'accept-language',
      }
      const { child: server, port } = await serve(extra)
      try {
        expect((await get(port)).status).toMatch(/stored/)
        expect(await get(port)).toMatchObject({ body: '{"v":"old"}', status: expect.stringMatching(/hit/) })
        writeFileSync(data, 'new')
        const { stdout } = await promisify(execFile)(
          process.execPath,
          ['--input-type=module', '-e', script],
          {
            cwd: join(__dirname, '..'),
            env: env({ ...extra, PORT: String(port), ROLE: 'invalidate' }),
            timeout: 20_000,
          },
        )
        expect(stdout).toContain('done')
        expect((await get(port)).body).toBe('{"v":"new"}')
      } finally {
        server.stdin!.end()
        if (server.exitCode === null) await once(server, 'exit')
      }
    },
    40_000,
  )
})
