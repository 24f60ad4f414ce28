/**
 * Several Fastify apps on one Node server (`serverFactory` returning the same server, a listener
 * choosing the app of a request by its region): made by the same code, they describe alike, so
 * without a `keyPrefix` of their own they bypass (`detail=site`); with distinct ones each caches
 * under its prefix. Real servers, real HTTP; replicas are real processes on one real Redis.
 */
import { type ChildProcess, fork } from 'node:child_process'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { memoryBackend } from '@cache/memory'
import { type RedisServer, startRedis } from '@cache/test-servers'
import Fastify, { type FastifyInstance } from 'fastify'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { cachePlugin } from '../src/index.js'
import { get } from './http-get.js'

const REPLICA = new URL('./fixtures/regions-server.mjs', import.meta.url)

const apps: FastifyInstance[] = []
const servers: Server[] = []
afterEach(async () => {
  for (const server of servers.splice(0)) server.closeAllConnections()
  await Promise.all(apps.splice(0).map((app) => app.close()))
})

type Handler = (req: IncomingMessage, res: ServerResponse) => void

/** A server handing each request to the app of its `x-region` (`eu` unless `us`). */
function regionServer() {
  const server = createServer()
  servers.push(server)
  const handlers: Record<string, Handler> = {}
  server.on('request', (req, res) => handlers[req.headers['x-region'] === 'us' ? 'us' : 'eu']!(req, res))
  return { server, handlers }
}

/** The app of one region on `server`, made by the same code as every other region's. */
async function regionApp(
  { server, handlers }: ReturnType<typeof regionServer>,
  region: string,
  options: { keyPrefix?: string; backend?: ReturnType<typeof memoryBackend> } = {},
) {
  const made = Fastify({
    serverFactory: (handler) => {
      handlers[region] = handler
      return server
    },
  })
  apps.push(made)
  made.decorate('region', region)
  const { backend = memoryBackend(), keyPrefix } = options
  await made.register(cachePlugin, { backend, ...(keyPrefix === undefined ? {} : { keyPrefix }) })
  made.get('/products', { config: { cache: 60 } }, async function () {
    return { region: this.getDecorator<string>('region') }
  })
  return made
}

const ask = (base: string, region: string) => get(`${base}/products`, { 'x-region': region })

describe('two Fastify apps of one process on one server', () => {
  it('bypass without keyPrefixes of their own (detail=site), each answering its own region, warned once', async () => {
    const warnings: string[] = []
    const warn = console.warn
    console.warn = (...args: unknown[]) => void warnings.push(args.join(' '))
    try {
      const shared = regionServer()
      const backend = memoryBackend()
      const eu = await regionApp(shared, 'eu', { backend })
      const us = await regionApp(shared, 'us', { backend })
      const base = await eu.listen({ port: 0, host: '127.0.0.1' })
      await us.ready()
      for (const region of ['eu', 'us', 'eu', 'us']) {
        const answer = await ask(base, region)
        expect(answer.body).toBe(`{"region":"${region}"}`)
        expect(answer.cacheStatus).toContain('detail=site')
      }
      expect(warnings.filter((w) => w.includes('share one server'))).toHaveLength(1)
    } finally {
      console.warn = warn
    }
  })

  it('bypass when one keyPrefix is a prefix of the other', async () => {
    const shared = regionServer()
    const backend = memoryBackend()
    const eu = await regionApp(shared, 'eu', { backend, keyPrefix: 'shop' })
    const us = await regionApp(shared, 'us', { backend, keyPrefix: 'shop:us' })
    const base = await eu.listen({ port: 0, host: '127.0.0.1' })
    await us.ready()
    for (const region of ['us', 'eu', 'us', 'eu']) {
      const answer = await ask(base, region)
      expect(answer.body).toBe(`{"region":"${region}"}`)
      expect(answer.cacheStatus).toContain('detail=site')
    }
  })

  it('cache under distinct keyPrefixes, each app its own entries', async () => {
    const shared = regionServer()
    const backend = memoryBackend()
    const eu = await regionApp(shared, 'eu', { backend, keyPrefix: 'eu' })
    const us = await regionApp(shared, 'us', { backend, keyPrefix: 'us' })
    const base = await eu.listen({ port: 0, host: '127.0.0.1' })
    await us.ready()
    expect((await ask(base, 'eu')).body).toBe('{"region":"eu"}')
    const first = await ask(base, 'us')
    expect(first.body).toBe('{"region":"us"}')
    expect(first.cacheStatus).not.toMatch(/hit/)
    for (const region of ['us', 'eu']) {
      const again = await ask(base, region)
      expect(again.body).toBe(`{"region":"${region}"}`)
      expect(again.cacheStatus).toMatch(/hit/)
    }
  })

  it('an app whose cache is registered after the server serves bypasses behind a listener of the user', async () => {
    const shared = regionServer()
    const backend = memoryBackend()
    const eu = await regionApp(shared, 'eu', { backend, keyPrefix: 'eu' })
    const base = await eu.listen({ port: 0, host: '127.0.0.1' })
    await ask(base, 'eu')
    expect((await ask(base, 'eu')).cacheStatus).toMatch(/hit/)
    // Made once the server already serves: what else the server's listener calls cannot be told.
    const us = await regionApp(shared, 'us', { backend, keyPrefix: 'us' })
    await us.ready()
    for (const region of ['us', 'us']) {
      const answer = await ask(base, region)
      expect(answer.body).toBe('{"region":"us"}')
      expect(answer.cacheStatus).toContain('detail=site')
    }
  })
})

describe('replicas on one Redis whose apps are made in another order', () => {
  let redis: RedisServer
  beforeAll(async () => {
    redis = await startRedis()
  })
  afterAll(() => redis?.stop())

  /** Starts a replica (a real process) on `port`; resolves with its base URL and a stop function. */
  function replica(namespace: string, port: number, order: string, prefixed: boolean) {
    const child: ChildProcess = fork(
      REPLICA,
      [redis.url, namespace, String(port), order, prefixed ? 'prefixed' : 'plain'],
      { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] },
    )
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    return new Promise<{ base: string; port: number; stop(): Promise<void> }>((resolve, reject) => {
      child.once('error', reject)
      child.once('exit', (code) => reject(new Error(`regions-server.mjs exited with ${code}`)))
      child.once('message', (message) => {
        const listening = Number(String(message).split(' ')[1])
        resolve({
          base: `http://127.0.0.1:${listening}`,
          port: listening,
          async stop() {
            child.disconnect()
            await exited
            clearTimeout(timer)
          },
        })
      })
    })
  }

  it.each([
    ['without keyPrefixes', false],
    ['with a keyPrefix per region', true],
  ] as const)("never answer one region's request with the other's page (%s)", async (_name, prefixed) => {
    const namespace = `fastify-regions-${Math.random().toString(36).slice(2)}`
    // Replicas of one service listen at the same address: one after the other on one port here.
    const a = await replica(namespace, 0, 'eu,us', prefixed)
    const seen: string[] = []
    try {
      for (const region of ['eu', 'eu'])
        seen.push(`${region} ${JSON.parse((await ask(a.base, region)).body).region}`)
    } finally {
      await a.stop()
    }
    const b = await replica(namespace, a.port, 'us,eu', prefixed)
    try {
      for (const region of ['us', 'eu', 'us']) {
        const answer = await ask(b.base, region)
        seen.push(`${region} ${JSON.parse(answer.body).region}`)
        if (prefixed && region === 'eu') expect(answer.cacheStatus).toMatch(/hit/)
      }
    } finally {
      await b.stop()
    }
    expect(seen).toEqual(['eu eu', 'eu eu', 'us us', 'eu eu', 'us us'])
  })
})
