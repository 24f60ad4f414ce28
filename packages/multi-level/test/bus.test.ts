import { type ChildProcess, spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { type RedisServer, startRedis } from '@cache/test-servers'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const PEER = fileURLToPath(new URL('./fixtures/bus-peer.mjs', import.meta.url))

/** A child process running a cache chain with the bus; `call` sends it one command. */
function startPeer(url: string, namespace: string) {
  const child: ChildProcess = spawn(process.execPath, [PEER, url, namespace], {
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  const waiting = new Map<number, (reply: { result?: unknown; error?: string }) => void>()
  let ready: () => void
  const started = new Promise<void>((resolve) => {
    ready = resolve
  })
  let next = 0
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const reply = JSON.parse(line)
    if (reply.ready) return ready()
    waiting.get(reply.id)?.(reply)
    waiting.delete(reply.id)
  })
  const call = (op: string, args: Record<string, unknown> = {}) =>
    new Promise<unknown>((resolve, reject) => {
      const id = ++next
      waiting.set(id, (reply) => (reply.error ? reject(new Error(reply.error)) : resolve(reply.result)))
      child.stdin!.write(`${JSON.stringify({ id, op, ...args })}\n`)
    })
  return { child, started, call }
}

/** Polls `check` until it holds, for at most `ms`. */
async function eventually(check: () => Promise<boolean>, ms = 2000): Promise<boolean> {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (await check()) return true
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  return false
}

let redis: RedisServer
let a: ReturnType<typeof startPeer>
let b: ReturnType<typeof startPeer>
let spy: Redis
const seen: string[] = []

beforeAll(async () => {
  redis = await startRedis()
  const namespace = `bus${Date.now()}`
  spy = new Redis(redis.url)
  spy.on('message', (_channel: string, text: string) => seen.push(text))
  await spy.subscribe('@cache/multi-level:invalidate')
  a = startPeer(redis.url, namespace)
  b = startPeer(redis.url, namespace)
  await Promise.all([a.started, b.started])
}, 20_000)

afterAll(async () => {
  await Promise.allSettled([a?.call('close'), b?.call('close')])
  a?.child.kill()
  b?.child.kill()
  spy?.disconnect()
  await redis?.stop()
})

describe('the Redis invalidation bus between two processes', () => {
  it('a set in one process evicts the key from the other’s L1', async () => {
    await a.call('set', { key: 'k', value: 'v1' })
    // The write does not wait for its message: b may read v1 before that message evicts it.
    const cached = async () =>
      (await b.call('get', { key: 'k' })) === 'v1' && (await b.call('l1has', { key: 'k' })) === true
    expect(await eventually(cached)).toBe(true)
    await a.call('set', { key: 'k', value: 'v2' })
    expect(await eventually(async () => (await b.call('l1has', { key: 'k' })) === false)).toBe(true)
    expect(await b.call('get', { key: 'k' })).toBe('v2')
  })

  it('a delete in one process evicts the key from the other’s L1', async () => {
    await a.call('set', { key: 'd', value: 1 })
    expect(await b.call('get', { key: 'd' })).toBe(1)
    await a.call('delete', { key: 'd' })
    expect(await eventually(async () => (await b.call('l1has', { key: 'd' })) === false)).toBe(true)
    expect(await b.call('get', { key: 'd' })).toBeNull()
  })

  it('a clear in one process empties the other’s L1', async () => {
    await b.call('set', { key: 'c1', value: 1 })
    expect(await b.call('l1has', { key: 'c1' })).toBe(true)
    await a.call('clear')
    expect(await eventually(async () => (await b.call('l1has', { key: 'c1' })) === false)).toBe(true)
  })

  it('a process ignores its own messages: its L1 keeps what it just wrote', async () => {
    await a.call('set', { key: 'own', value: 'mine' })
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(await a.call('l1has', { key: 'own' })).toBe(true)
  })

  it('messages carry keys, never values', async () => {
    seen.length = 0
    await a.call('set', { key: 'secret-key', value: 'secret-value-123' })
    expect(await eventually(async () => seen.length > 0)).toBe(true)
    expect(seen.join('\n')).toContain('secret-key')
    expect(seen.join('\n')).not.toContain('secret-value-123')
  })
})
