/**
 * Replicas of a Nest service on platform-fastify whose Node server hands each request to the
 * application of its region, on one real Redis, each making its applications in another order:
 * no region is ever answered with the other's page. Runs the built package (`dist`) in real
 * processes, one after the other on one port.
 */
import { execFile } from 'node:child_process'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { promisify } from 'node:util'
import { type RedisServer, startRedis } from '@cache/test-servers'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const dist = pathToFileURL(join(__dirname, '../dist/index.js')).href

// Both applications are made by this code; with PREFIXED each region's handler caches under its
// own keyPrefix (a controller class per region), otherwise one controller class serves both.
const script = `
  import 'reflect-metadata'
  import { createServer } from 'node:http'
  import { Controller, Get, Inject, Module } from '@nestjs/common'
  import { NestFactory } from '@nestjs/core'
  import { FastifyAdapter } from '@nestjs/platform-fastify'
  import { redisBackend } from '@cache/redis'
  import { CacheModule, CacheResponse } from '${dist}'

  function regionController(options) {
    class RegionController {
      constructor(region) { this.region = region }
      show() { return { region: this.region } }
    }
    const descriptor = Object.getOwnPropertyDescriptor(RegionController.prototype, 'show')
    Get('region')(RegionController.prototype, 'show', descriptor)
    CacheResponse(options)(RegionController.prototype, 'show', descriptor)
    Inject('REGION')(RegionController, undefined, 0)
    Controller()(RegionController)
    return RegionController
  }
  const shared = regionController({ ttl: 60 })
  const backend = redisBackend(process.env.REDIS_URL, { namespace: process.env.NAMESPACE, timeout: '3s' })
  const server = createServer()
  const handlers = {}
  server.on('request', (req, res) => handlers[req.headers['x-region'] === 'us' ? 'us' : 'eu'](req, res))
  const apps = []
  for (const region of process.env.ORDER.split(',')) {
    const controller = process.env.PREFIXED ? regionController({ ttl: 60, keyPrefix: region }) : shared
    class RegionModule {}
    Module({
      imports: [CacheModule.forRoot({ backend, closeOnShutdown: false })],
      controllers: [controller],
      providers: [{ provide: 'REGION', useValue: region }],
    })(RegionModule)
    const serverFactory = (handler) => {
      handlers[region] = handler
      return server
    }
    apps.push(await NestFactory.create(RegionModule, new FastifyAdapter({ serverFactory }), { logger: false }))
  }
  await apps[0].listen(Number(process.env.PORT), '127.0.0.1')
  for (const app of apps.slice(1)) {
    await app.init()
    await app.getHttpAdapter().getInstance().ready()
  }
  const answers = []
  for (const region of process.env.ASK.split(',')) {
    const reply = await fetch('http://127.0.0.1:' + process.env.PORT + '/region', { headers: { 'x-region': region } })
    answers.push({ asked: region, got: (await reply.json()).region, status: reply.headers.get('cache-status') })
  }
  console.log(JSON.stringify(answers))
  server.closeAllConnections()
  for (const app of apps) await app.close()
  await backend.close()
`

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  await new Promise((resolve) => server.close(resolve))
  return port
}

let redis: RedisServer
beforeAll(async () => {
  redis = await startRedis()
})
afterAll(() => redis?.stop())

describe('Nest replicas on platform-fastify sharing one server per process, on one Redis', () => {
  it.each([
    ['without keyPrefixes', false],
    ['with a keyPrefix per region', true],
  ] as const)("never answer one region's request with the other's page (%s)", async (_name, prefixed) => {
    const port = await freePort()
    const namespace = `nest-regions-${Math.random().toString(36).slice(2)}`
    const run = async (order: string, ask: string) => {
      const env = {
        ...process.env,
        REDIS_URL: redis.url,
        NAMESPACE: namespace,
        PORT: String(port),
        ORDER: order,
        ASK: ask,
        ...(prefixed ? { PREFIXED: '1' } : {}),
      }
      const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], {
        cwd: join(__dirname, '..'),
        env,
        timeout: 30_000,
      })
      return JSON.parse(stdout.trim().split('\n').at(-1)!) as { asked: string; got: string; status: string }[]
    }
    const a = await run('eu,us', 'eu,eu')
    const b = await run('us,eu', 'us,eu,us')
    const answers = [...a, ...b]
    expect(answers.map((answer) => `${answer.asked} ${answer.got}`)).toEqual([
      'eu eu',
      'eu eu',
      'us us',
      'eu eu',
      'us us',
    ])
    // With distinct prefixes each application caches (us answered again from its entry).
    if (prefixed) expect(b[2]!.status).toMatch(/hit/)
    else for (const answer of answers) expect(answer.status).toContain('detail=site')
  })
})
