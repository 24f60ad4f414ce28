import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { CacheBackend } from '@cache/core'
import { memoryBackend } from '@cache/memory'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type DiskBackend, diskBackend } from '../src/index.js'

/*
 * Call order within one tick: a write-ish operation followed, before it resolves, by a read or a
 * write of the same key. The disk backend must answer what the memory backend answers when the
 * same two calls are made one after the other (each awaited): the answer call order gives.
 */

let dir: string
let cells = 0

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'cache-disk-order-'))
})

afterAll(() => {
  rmSync(dir, { recursive: true, force: true })
})

const K = 'lock'
const OTHER = 'other'
/** Long enough to go to a value file when the threshold is 64 bytes. */
const LONG = 'L'.repeat(200)

/** Both backends compared have every optional operation. */
type Backend = CacheBackend & Required<Pick<CacheBackend, 'compareAndDelete'>>
type Op = (b: Backend) => Promise<unknown>

/** What the key holds before the two calls. */
const states: Record<string, Record<string, unknown>> = {
  absent: {},
  'the token': { [K]: 'tokA', [OTHER]: 'o0' },
  'a counter': { [K]: 5, [OTHER]: 'o0' },
  'a long token (a value file)': { [K]: `tokA${LONG}`, [OTHER]: 'o0' },
}

/** The token a lock holder releases: what the key holds when that is a string. */
function token(initial: Record<string, unknown>): string {
  return typeof initial[K] === 'string' ? (initial[K] as string) : 'tokA'
}

/** The first call: every operation that writes. */
const writes: Record<string, (initial: Record<string, unknown>) => Op> = {
  set: () => (b) => b.set(K, `w${LONG}`),
  'set (short)': () => (b) => b.set(K, 'w'),
  'setMany (key second)': () => (b) =>
    b.setMany([
      { key: OTHER, value: 'o1' },
      { key: K, value: `w${LONG}` },
    ]),
  add: () => (b) => b.add(K, 'w'),
  delete: () => (b) => b.delete(K),
  'deleteMany (key second)': () => (b) => b.deleteMany([OTHER, K]),
  incr: () => (b) => b.incr(K, 2),
  compareAndDelete: (initial) => (b) => b.compareAndDelete(K, token(initial)),
  'compareAndDelete (wrong token)': () => (b) => b.compareAndDelete(K, 'tokZ'),
  atomicUpdate: () => (b) => b.atomicUpdate(K, (v) => `${String(v)}+u`),
  'atomicUpdate (async fn)': () => (b) =>
    b.atomicUpdate(K, async (v) => {
      await sleep(5)
      return `${String(v)}+u`
    }),
  clear: () => (b) => b.clear(),
}

/** The second call, issued in the same tick: every read, and the writes a lock holder issues next. */
const follows: Record<string, Op> = {
  get: (b) => b.get(K),
  getMany: (b) => b.getMany([OTHER, K]),
  has: (b) => b.has(K),
  getEntry: (b) => b.getEntry(K),
  set: (b) => b.set(K, 'f'),
  add: (b) => b.add(K, 'f'),
}

/** A result, or the name of the error it failed with. */
async function settle(promise: Promise<unknown>): Promise<unknown> {
  try {
    return { ok: await promise }
  } catch (error) {
    return { error: (error as Error).name }
  }
}

async function seed(b: Backend, initial: Record<string, unknown>): Promise<void> {
  for (const [key, value] of Object.entries(initial)) await b.set(key, value)
}

/** First and second result, then what both keys hold. */
async function run(b: Backend, first: Op, second: Op, sameTick: boolean): Promise<unknown[]> {
  let results: unknown[]
  if (sameTick) {
    results = await Promise.all([settle(first(b)), settle(second(b))])
  } else {
    results = [await settle(first(b)), await settle(second(b))]
  }
  return [...results, await b.get(K), await b.get(OTHER)]
}

function disk(inline: boolean): DiskBackend {
  return diskBackend({
    path: dir,
    namespace: `cell${cells++}`,
    pruneInterval: false,
    ...(inline ? {} : { inlineThreshold: 64 }),
  })
}

describe.each([
  ['inline values', true],
  ['values in files', false],
])('one tick, %s: a write-ish call, then another call, answer as if awaited one by one', (_, inline) => {
  for (const [writeName, write] of Object.entries(writes)) {
    for (const [followName, follow] of Object.entries(follows)) {
      it(`${writeName} then ${followName}`, async () => {
        const wrong: string[] = []
        for (const [stateName, initial] of Object.entries(states)) {
          const memory = memoryBackend()
          await seed(memory, initial)
          const expected = await run(memory, write(initial), follow, false)
          await memory.close()
          const d = disk(inline)
          try {
            await seed(d, initial)
            const got = await run(d, write(initial), follow, true)
            if (JSON.stringify(got) !== JSON.stringify(expected)) {
              wrong.push(`${stateName}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(got)}`)
            }
          } finally {
            await d.close()
          }
        }
        expect(wrong).toEqual([])
      })
    }
  }
})

describe('call order, the lock pattern and long chains', () => {
  it('releasing a lock and taking it again in one tick: the release succeeds and the new holder wins', async () => {
    const d = disk(true)
    try {
      await d.set(K, 'tokA')
      // The release and everything issued after it: each sees the ones before it.
      const [released, taken, holder, other, has] = await Promise.all([
        d.compareAndDelete(K, 'tokA'),
        d.add(K, 'tokB'),
        d.get(K),
        d.add(K, 'tokC'),
        d.has(K),
      ])
      expect([released, taken, holder, other, has]).toEqual([true, true, 'tokB', false, true])
      expect(await d.get(K)).toBe('tokB')
    } finally {
      await d.close()
    }
  })

  it('a setMany of 300 keys is seen whole by a getMany issued right after it', async () => {
    const d = disk(true)
    try {
      const keys = Array.from({ length: 300 }, (_, i) => `k${i}`)
      await d.setMany(keys.map((key) => ({ key, value: 'old' })))
      const [, read, present] = await Promise.all([
        d.setMany(keys.map((key) => ({ key, value: 'new' }))),
        d.getMany(keys),
        d.has('k299'),
      ])
      expect(read.filter((value) => value !== 'new')).toEqual([])
      expect(present).toBe(true)
    } finally {
      await d.close()
    }
  })

  it('a large value set before a small one in one tick is overwritten by it, not the other way round', async () => {
    const d = disk(false)
    try {
      const [, , read] = await Promise.all([d.set(K, `big${LONG}`), d.set(K, 'small'), d.get(K)])
      expect(read).toBe('small')
      expect(await d.get(K)).toBe('small')
    } finally {
      await d.close()
    }
  })

  it('5 000 operations on one key in one tick, behind a compareAndDelete, keep their order', async () => {
    const d = disk(true)
    try {
      await d.set(K, 'tokA')
      const calls: Promise<unknown>[] = [d.compareAndDelete(K, 'tokA')]
      for (let i = 0; i < 5000; i++) calls.push(i % 2 === 0 ? d.set(K, i) : d.get(K))
      const results = await Promise.all(calls)
      expect(results[0]).toBe(true)
      // Each get (odd positions) reads the set issued just before it.
      const misread = []
      for (let i = 2; i < results.length; i += 2) if (results[i] !== i - 2) misread.push([i, results[i]])
      expect(misread).toEqual([])
      expect(await d.get(K)).toBe(4998)
    } finally {
      await d.close()
    }
  })

  it('an atomicUpdate with a slow fn holds back only its own key', async () => {
    const d = disk(true)
    try {
      let release = () => {}
      const gate = new Promise<void>((resolve) => {
        release = resolve
      })
      const update = d.atomicUpdate(K, async () => {
        await gate
        return 'updated'
      })
      const after = d.get(K)
      // Another key is written and read while fn is still waiting.
      await d.set(OTHER, 'free')
      expect(await d.get(OTHER)).toBe('free')
      release()
      expect(await update).toBe('updated')
      expect(await after).toBe('updated')
    } finally {
      await d.close()
    }
  })

  it('an atomicUpdate whose fn reads the cache, the same key included, does not wait for itself', async () => {
    const d = disk(true)
    try {
      await d.set(K, 1)
      const later = d.set(K, 10)
      const update = d.atomicUpdate<number>(K, async (current) => {
        const seen = await d.get<number>(K)
        const many = await d.getMany<number>([K])
        return (current ?? 0) + (seen ?? 0) + (many[0] ?? 0)
      })
      const read = d.get(K)
      const outcome = await Promise.race([
        Promise.all([later, update, read]),
        sleep(5000).then(() => 'stuck'),
      ])
      expect(outcome).toEqual([undefined, 30, 30])
    } finally {
      await d.close()
    }
  })

  it('clear, then set and get in one tick: the set survives the clear', async () => {
    const d = disk(true)
    try {
      // More entries than one clear step deletes (500), so the clear takes several steps.
      await d.setMany(Array.from({ length: 1200 }, (_, i) => ({ key: `k${i}`, value: i })))
      const [, , read, many] = await Promise.all([
        d.clear(),
        d.set('k5', 'kept'),
        d.get('k5'),
        d.getMany(['k4', 'k5']),
      ])
      expect(read).toBe('kept')
      expect(many).toEqual([undefined, 'kept'])
      expect(await d.get('k5')).toBe('kept')
      const left: string[] = []
      for await (const key of d.keys()) left.push(key)
      expect(left).toEqual(['k5'])
    } finally {
      await d.close()
    }
  })
})
