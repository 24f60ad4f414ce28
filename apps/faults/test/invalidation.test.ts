/**
 * Two real application processes share a cache built by configureCache; one invalidates a
 * memoized function (clear, invalidate, invalidateTags), the other must never return a result
 * computed before the invalidation resolved. On every chain configureCache builds, without and
 * with an invalidation bus, after memcached evicted the invalidation state, and after a Redis
 * outage the chain repaired.
 */
import { type ChildProcess, fork } from 'node:child_process'
import { Socket } from 'node:net'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { cached } from '@cache/core'
import { generationKey } from '@cache/core/backend'
import { memcachedBackend } from '@cache/memcached'
import { memoryBackend } from '@cache/memory'
import { multiLevel } from '@cache/multi-level'
import { redisBackend } from '@cache/redis'
import { type MemcachedServer, type RedisServer, startMemcached, startRedis } from '@cache/test-servers'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { sleep, timeUntil, within } from './support/bounded.js'
import { recordFigures } from './support/figures.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const PEER = join(root, 'scripts', 'memo-peer.mjs')

interface PeerSpec {
  chain?: string
  bus?: boolean
  build?: 'v1' | 'v2'
  namespace: string
  redisUrl?: string
  memcachedServers?: string
  diskPath?: string
}

/** An application process, driven over IPC. */
class Peer {
  private seq = 0
  private readonly waiting = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>()

  private constructor(private readonly child: ChildProcess) {
    child.on('message', (message: { seq: number; ok: boolean; result?: unknown; error?: Error }) => {
      const pending = this.waiting.get(message.seq)
      this.waiting.delete(message.seq)
      if (message.ok) pending?.resolve(message.result)
      else pending?.reject(Object.assign(new Error(message.error!.message), { name: message.error!.name }))
    })
  }

  static async start(spec: PeerSpec): Promise<Peer> {
    const child = fork(PEER, [JSON.stringify(spec)], {
      cwd: root,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    await within(
      10_000,
      new Promise<void>((resolve, reject) => {
        child.once('message', () => resolve())
        child.once('exit', (code) => reject(new Error(`peer exited with ${code} before it was ready`)))
      }),
      'peer start',
    )
    return new Peer(child)
  }

  request<T = unknown>(op: string, ...args: unknown[]): Promise<T> {
    const seq = ++this.seq
    const answer = new Promise<T>((resolve, reject) =>
      this.waiting.set(seq, { resolve: resolve as (v: unknown) => void, reject }),
    )
    this.child.send({ seq, op, args })
    return within(10_000, answer, `peer ${op}`)
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return
    const exited = new Promise((resolve) => this.child.once('exit', resolve))
    await this.request('close').catch(() => this.child.kill('SIGKILL'))
    await within(5_000, exited, 'peer exit').catch(() => this.child.kill('SIGKILL'))
  }
}

/** Both processes see the same database: tell them both (row 1 unless told otherwise). */
async function setRow(
  peers: Peer[],
  ...change: [version: string] | [row: string, value: unknown]
): Promise<void> {
  const [row, value] = change.length === 1 ? [1, change[0]] : change
  await Promise.all(peers.map((peer) => peer.request('db', row, value)))
}

const INVALIDATIONS = [
  ['clear', []],
  ['invalidate', [1]],
  ['invalidateTags', [1]],
] as const

let redis: RedisServer
let memcached: MemcachedServer
const dirs: string[] = []
let run = 0
const namespace = () => `inval${process.pid}x${++run}`
beforeAll(async () => {
  ;[redis, memcached] = await Promise.all([startRedis(), startMemcached()])
})
afterAll(async () => {
  await Promise.all([redis?.stop(), memcached?.stop()])
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})

function diskPath(): string {
  const dir = mkdtempSync(join(tmpdir(), 'cache-faults-inval-'))
  dirs.push(dir)
  return dir
}

const CHAINS: [string, () => PeerSpec][] = [
  ['memory,redis', () => ({ chain: 'memory,redis', namespace: namespace(), redisUrl: redis.url })],
  ['memory,disk', () => ({ chain: 'memory,disk', namespace: namespace(), diskPath: diskPath() })],
  [
    'memory,disk,redis',
    () => ({ chain: 'memory,disk,redis', namespace: namespace(), diskPath: diskPath(), redisUrl: redis.url }),
  ],
  [
    'memory,memcached',
    () => ({ chain: 'memory,memcached', namespace: namespace(), memcachedServers: memcached.server }),
  ],
]

describe.each(CHAINS)('two processes on %s, no bus', (_chain, spec) => {
  it('once an invalidation resolves in one process, the other returns the new result at once', async () => {
    const settings = spec()
    const peers = await Promise.all([Peer.start(settings), Peer.start(settings)])
    const [a, b] = peers as [Peer, Peer]
    try {
      await setRow(peers, 'v0')
      expect(await a.request('call', 1)).toBe('v0')
      expect(await b.request('call', 1)).toBe('v0')
      // Keys are the same in both processes: b was served what a computed.
      expect(await b.request('runs')).toBe(0)
      // Two rounds of each: the first invalidation creates state that the later ones change.
      let version = 0
      for (const [op, args] of [...INVALIDATIONS, ...INVALIDATIONS]) {
        const next = `v${++version}`
        expect(await b.request('call', 1)).toBe(`v${version - 1}`) // held in b's L1
        await setRow(peers, next)
        await a.request(op, ...args)
        expect(await b.request('call', 1)).toBe(next)
        expect(await a.request('call', 1)).toBe(next)
      }
    } finally {
      await Promise.all(peers.map((peer) => peer.close()))
    }
  })
})

describe('two processes on memory,redis with an invalidation bus', () => {
  it('the other process returns the new result within the bus delivery time', async () => {
    const settings = { bus: true, namespace: namespace(), redisUrl: redis.url }
    const peers = await Promise.all([Peer.start(settings), Peer.start(settings)])
    const [a, b] = peers as [Peer, Peer]
    const delays: number[] = []
    try {
      await setRow(peers, 'v0')
      expect(await a.request('call', 1)).toBe('v0')
      expect(await b.request('call', 1)).toBe('v0')
      let version = 0
      for (const [op, args] of [...INVALIDATIONS, ...INVALIDATIONS]) {
        const next = `v${++version}`
        expect(await b.request('call', 1)).toBe(`v${version - 1}`)
        await setRow(peers, next)
        await a.request(op, ...args)
        // stateTtl is 1 s with a bus: the bus evicts b's copy of the state long before.
        delays.push(await timeUntil(async () => (await b.request('call', 1)) === next, 1500, 5))
        expect(await b.request('call', 1)).toBe(next)
      }
    } finally {
      await Promise.all(peers.map((peer) => peer.close()))
    }
    recordFigures({
      scenario: 'invalidation: memory,redis with a bus',
      metric: 'other process returns the new result after (ms, worst of 6)',
      value: Math.max(...delays).toFixed(0),
      bar: '< 1000 (stateTtl)',
      ok: Math.max(...delays) < 1000,
    })
  })
})

describe('memory,memcached after memcached evicted the invalidation state', () => {
  let small: MemcachedServer
  beforeAll(async () => {
    small = await startMemcached({ spawn: true, memoryMb: 2 })
  })
  afterAll(async () => {
    await small?.stop()
  })

  it('never returns a result from before clear(): a missing generation is a new one', async () => {
    const settings = { chain: 'memory,memcached', namespace: namespace(), memcachedServers: small.server }
    const a = await Peer.start(settings)
    let b: Peer | undefined
    // The flood touches the namespace generation on every operation, so only other keys age out.
    const raw = memcachedBackend(small.server, { namespace: settings.namespace, generationTtl: 0 })
    try {
      await a.request('db', 1, 'v0')
      expect(await a.request('call', 1)).toBe('v0')
      await a.request('db', 1, 'v1')
      await a.request('clear')
      // Fill memcached with small items while keeping the stored result recently used: the
      // generation clear() wrote is evicted, the result from before it is not.
      const entry = (await a.request('key', 1)) as string
      for (let i = 0; i < 30; i++) {
        await Promise.all(
          Array.from({ length: 1000 }, (_, j) => raw.set(`__v:filler:${i}:${j}`, 100_000_000_000 + j)),
        )
        await raw.get(entry)
      }
      expect(await raw.get(entry)).toBeDefined()
      expect(await raw.get(generationKey('fn', 'memo', 'row'))).toBeUndefined()
      b = await Peer.start(settings)
      await b.request('db', 1, 'v1')
      expect(await b.request('call', 1)).toBe('v1')
      expect(await a.request('call', 1)).toBe('v1')
    } finally {
      await Promise.all([a.close(), b?.close(), raw.close()])
    }
  })
})

describe('memory,redis after a Redis outage', () => {
  let durable: RedisServer
  beforeAll(async () => {
    // Redis keeps what it held across the kill, as a production server with AOF would.
    durable = await startRedis({ spawn: true, args: ['--appendonly', 'yes', '--appendfsync', 'always'] })
  })
  afterAll(async () => {
    await durable?.stop()
  })

  it('an invalidation made during the outage is reported, and reaches the other process once repaired', async () => {
    const settings = { chain: 'memory,redis', namespace: namespace(), redisUrl: durable.url }
    const peers = await Promise.all([Peer.start(settings), Peer.start(settings)])
    const [a, b] = peers as [Peer, Peer]
    try {
      await setRow(peers, 'v0')
      expect(await a.request('call', 1)).toBe('v0')
      expect(await b.request('call', 1)).toBe('v0')
      await durable.process!.kill()
      await setRow(peers, 'v1')
      const during = await a.request('clear').then(
        () => 'resolved',
        (error: Error) => error.name,
      )
      // Redis did not take it: the caller is told, and this process no longer serves v0.
      expect(during).toBe('CacheUnavailableError')
      expect(await a.request('call', 1)).toBe('v1')
      await durable.process!.start()
      // a's chain repairs Redis (deletes the generation it could not write) before using it.
      await timeUntil(async () => {
        await a.request('call', 1)
        const shared = (await a.request<{ state: string; pendingKeys: number }[]>('levels'))[1]!
        return shared.state === 'closed' && shared.pendingKeys === 0
      }, 10_000)
      expect(await b.request('call', 1)).toBe('v1')
      expect(await a.request('call', 1)).toBe('v1')
    } finally {
      await Promise.all(peers.map((peer) => peer.close()))
    }
  })
})

/** Sends one command over memcached's text protocol; resolves with the reply. */
function memcachedCommand(port: number, command: string): Promise<string> {
  return within(
    2_000,
    new Promise<string>((resolve, reject) => {
      const socket = new Socket()
      socket.once('data', (chunk) => {
        socket.destroy()
        resolve(String(chunk))
      })
      socket.on('error', reject)
      socket.connect(port, '127.0.0.1', () => socket.write(`${command}\r\n`))
    }),
    `memcached ${command}`,
  )
}

describe('memcached after it lost the namespace generation', () => {
  let small: MemcachedServer
  beforeAll(async () => {
    small = await startMemcached({ spawn: true })
  })
  afterAll(async () => {
    await small?.stop()
  })

  it('another process invalidate() resolves: this one returns the new result at once', async () => {
    const settings = { chain: 'memcached', namespace: namespace(), memcachedServers: small.server }
    const peers = await Promise.all([Peer.start(settings), Peer.start(settings)])
    const [a, b] = peers as [Peer, Peer]
    try {
      await setRow(peers, 'v0')
      expect(await a.request('call', 1)).toBe('v0')
      // Older than the 1 s a process used to trust its copy of the generation: a reads it again.
      await sleep(1100)
      expect(await a.request('call', 1)).toBe('v0')
      // What an eviction leaves behind: the counter is gone (deleted here, deterministically;
      // memcached's LRU decides when it evicts a key the processes read on every operation).
      // Real eviction is what the test of the invalidation state above does.
      expect(await memcachedCommand(small.port, `delete ${settings.namespace}#g`)).toBe('DELETED\r\n')
      await setRow(peers, 'v1')
      await b.request('invalidate', 1)
      expect(await a.request('call', 1)).toBe('v1')
      expect(await b.request('call', 1)).toBe('v1')
      // And a clear() of the whole backend, then of the function, in the other process.
      await setRow(peers, 'v2')
      await b.request('backendClear')
      await b.request('clear')
      expect(await a.request('call', 1)).toBe('v2')
    } finally {
      await Promise.all(peers.map((peer) => peer.close()))
    }
  })
})

describe('memory,redis: what a process computed while Redis was down never outlives the outage', () => {
  let fresh: RedisServer
  beforeAll(async () => {
    // No persistence: Redis comes back empty, as a restarted cache server does.
    fresh = await startRedis({ spawn: true })
  })
  afterAll(async () => {
    await fresh?.stop()
  })

  it('after the restart, and during a second outage, once another process invalidated', async () => {
    const settings = { chain: 'memory,redis', namespace: namespace(), redisUrl: fresh.url }
    const a = await Peer.start(settings)
    let b: Peer | undefined
    try {
      await a.request('db', 1, 'v0')
      expect(await a.request('call', 1)).toBe('v0')
      await fresh.process!.kill()
      await a.request('db', 1, 'v1')
      for (let i = 0; i < 4; i++) expect(await a.request('call', 1)).toBe('v1')
      await fresh.process!.start()
      b = await Peer.start(settings)
      await setRow([a, b], 'v2')
      await b.request('invalidate', 1)
      await b.request('clear')
      await b.request('invalidateTags', 1)
      expect(await b.request('call', 1)).toBe('v2')
      // Past the breaker's open period: a's next call finds Redis back.
      await sleep(1200)
      expect(await a.request('call', 1)).toBe('v2')
      // Unrelated work until a's breaker is closed, then another invalidation and a second outage.
      await timeUntil(async () => {
        await a.request('other', 1)
        return (await a.request<{ state: string }[]>('levels'))[1]!.state === 'closed'
      }, 5_000)
      await setRow([a, b], 'v3')
      await b.request('clear')
      await fresh.process!.kill()
      for (let i = 0; i < 3; i++) {
        expect(await a.request('call', 1)).toBe('v3')
        await sleep(300)
      }
    } finally {
      if (!fresh.process!.running) await fresh.process!.start()
      await Promise.all([a.close(), b?.close()])
    }
  })

  it('with a bus, when Redis hangs (SIGSTOP) instead of dying', async () => {
    const settings = { bus: true, namespace: namespace(), redisUrl: fresh.url }
    const peers = await Promise.all([Peer.start(settings), Peer.start(settings)])
    const [a, b] = peers as [Peer, Peer]
    const pid = fresh.process!.pid!
    try {
      await setRow(peers, 'v0')
      expect(await a.request('call', 1)).toBe('v0')
      process.kill(pid, 'SIGSTOP')
      await setRow(peers, 'v1')
      for (let i = 0; i < 3; i++) expect(await a.request('call', 1)).toBe('v1')
      process.kill(pid, 'SIGCONT')
      await sleep(1200)
      await timeUntil(async () => {
        await a.request('other', 1)
        return (await a.request<{ state: string }[]>('levels'))[1]!.state === 'closed'
      }, 5_000)
      await setRow(peers, 'v2')
      await b.request('clear')
      await b.request('invalidateTags', 1)
      await sleep(200)
      process.kill(pid, 'SIGSTOP')
      for (let i = 0; i < 3; i++) {
        expect(await a.request('call', 1)).toBe('v2')
        await sleep(300)
      }
    } finally {
      process.kill(pid, 'SIGCONT')
      await Promise.all(peers.map((peer) => peer.close()))
    }
  })
})

describe.each([['redis'], ['memory,redis']])(
  'two builds of the application on %s (a rolling deploy)',
  (chain) => {
    it("invalidate() and clear() of a decorated method in the new build reach the old build's results", async () => {
      const base = { chain, namespace: namespace(), redisUrl: redis.url }
      const [old, neu] = await Promise.all([
        Peer.start({ ...base, build: 'v1' }),
        Peer.start({ ...base, build: 'v2' }),
      ])
      try {
        await setRow([old, neu], 'price', 10)
        expect(await old.request('quote', 'A')).toBe(10)
        expect(await neu.request('quote', 'A')).toBe(10) // each build its own key: their code differs
        await setRow([old, neu], 'price', 12)
        await neu.request('quoteInvalidate', 'A')
        expect(await old.request('quote', 'A')).toBe(12)
        await setRow([old, neu], 'price', 13)
        await neu.request('quoteClear')
        expect(await old.request('quote', 'A')).toBe(13)
        expect(await neu.request('quote', 'A')).toBe(13)
      } finally {
        await Promise.all([old.close(), neu.close()])
      }
    })
  },
)

describe('single-flight against real servers', () => {
  it.each([
    ['redis', () => redisBackend(redis.url, { namespace: namespace() })],
    ['memcached', () => memcachedBackend(memcached.server, { namespace: namespace() })],
    ['memory,redis', () => multiLevel(memoryBackend(), redisBackend(redis.url, { namespace: namespace() }))],
  ])(
    '%s: 100 concurrent misses run the function once, and a failure reaches every waiter',
    async (_label, make) => {
      const backend = make()
      try {
        let runs = 0
        const load = cached(
          async (id: number) => {
            runs++
            await sleep(5)
            return { id, run: runs }
          },
          { backend, name: 'concurrent', ttl: 60 },
        )
        const results = await Promise.all(Array.from({ length: 100 }, () => load(1)))
        expect(runs).toBe(1)
        expect(new Set(results.map((r) => r.run)).size).toBe(1)
        let failures = 0
        const boom = cached(
          async (_id: number) => {
            failures++
            await sleep(5)
            throw new Error(`failure #${failures}`)
          },
          { backend, name: 'failing', ttl: 60 },
        )
        const outcomes = await Promise.allSettled(Array.from({ length: 100 }, () => boom(1)))
        expect(failures).toBe(1)
        expect(new Set(outcomes.map((o) => (o as PromiseRejectedResult).reason.message))).toEqual(
          new Set(['failure #1']),
        )
      } finally {
        await backend.close()
      }
    },
  )
})
