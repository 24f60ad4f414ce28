import { CacheNotANumberError } from '@cache/core'
import { type MemcachedServer, startMemcached } from '@cache/test-servers'
import { afterAll, describe, expect, it } from 'vitest'
import { memcachedBackend } from '../src/index.js'
import { ascii, serverKeys, storedKey } from './raw.js'
import { readdirSync, readFileSync } from 'node:fs'

const server = await startMemcached({ spawn: true })
afterAll(() => server.stop())

const MAX = Number.MAX_SAFE_INTEGER

/** Two backends with their own connections (two processes), sharing `namespace`. */
function pair(namespace: string) {
  return [0, 1].map(() => memcachedBackend(server.server, { namespace, timeout: 2 })) as [
    ReturnType<typeof memcachedBackend>,
    ReturnType<typeof memcachedBackend>,
  ]
}

/** Stores `raw` bytes under the item `key` of `namespace` as another client would (ASCII set, flags 0). */
async function writeRaw(
  cache: ReturnType<typeof memcachedBackend>,
  namespace: string,
  key: string,
  raw: string,
) {
  await cache.set(key, 0)
  const item = (await serverKeys(server.port)).find(
    (k) => k.startsWith(`${namespace}#`) && k.endsWith(`:${key}`),
  )
  if (item === undefined) throw new Error(`no item for ${key}`)
  expect(await ascii(server.port, `set ${item} 0 0 ${Buffer.byteLength(raw)}\r\n${raw}`)).toBe('STORED\r\n')
  return item
}

/** The bytes memcached holds for `item`. */
async function rawValue(item: string): Promise<string> {
  const reply = await ascii(server.port, `get ${item}`, /END\r\n$/)
  return reply.split('\r\n')[1] ?? ''
}

describe('a refused incr changes nothing anyone can see', () => {
  it('near MAX_SAFE_INTEGER, another client running atomicUpdate and get never sees a value past it, and the counter stays', async () => {
    const [a, b] = pair('overshoot')
    try {
      await a.set('c', MAX - 2)
      let refused = 0
      let seenPast = 0
      const incrs = async () => {
        for (let i = 0; i < 150; i++)
          await a.incr('c', 6).catch((error) => {
            if (!(error instanceof RangeError)) throw error
            refused++
          })
      }
      const others = async () => {
        for (let i = 0; i < 100; i++) {
          await b.atomicUpdate<number>('c', (v) => {
            if (v !== undefined && v > MAX) seenPast++
            return v as number
          })
          if (((await b.get<number>('c')) ?? 0) > MAX) seenPast++
        }
      }
      await Promise.all([incrs(), others()])
      expect(refused).toBe(150)
      expect(seenPast).toBe(0)
      expect(await b.get('c')).toBe(MAX - 2)
    } finally {
      await Promise.all([a.close(), b.close()])
    }
  })

  it('near MAX_SAFE_INTEGER, in-range steps of another client (both signs) are never refused while refused ones run', async () => {
    const [a, b] = pair('near-limit')
    try {
      await a.set('c', MAX - 2)
      const refusals = async () => {
        for (let i = 0; i < 150; i++) await expect(a.incr('c', 5)).rejects.toThrow(RangeError)
      }
      const steps = async () => {
        for (let i = 0; i < 150; i++) {
          expect(await b.incr('c', -1)).toBe(MAX - 3)
          expect(await b.incr('c', 1)).toBe(MAX - 2)
        }
      }
      await Promise.all([refusals(), steps()])
      expect(await a.get('c')).toBe(MAX - 2)
    } finally {
      await Promise.all([a.close(), b.close()])
    }
  })
})

describe('stored integers past the exact range', () => {
  it('refuses to count past 2^64 (no wrap), and leaves the stored number', async () => {
    const [cache] = pair('wrap')
    try {
      await cache.set('c', 18446744073709550000)
      await expect(cache.incr('c', 2000)).rejects.toThrow(RangeError)
      expect(await cache.get('c')).toBe(18446744073709550000)
      const item = await writeRaw(cache, 'wrap', 'raw', '18446744073709551615')
      await expect(cache.incr('raw', 1)).rejects.toThrow(RangeError)
      expect(await rawValue(item)).toBe('18446744073709551615')
    } finally {
      await cache.close()
    }
  })

  it.each([
    ['2^60 by -1', 2 ** 60, -1],
    ['2^60 by -2^53', 2 ** 60, -(2 ** 53)],
    ['-2^53 by 1', -(2 ** 53), 1],
    ['1e21 by 1', 1e21, 1],
    ['-1e21 by -1', -1e21, -1],
  ])('a stored %s rejects with RangeError and stays', async (_, stored, by) => {
    const [cache] = pair('odd')
    try {
      await cache.set('c', stored)
      await expect(cache.incr('c', by)).rejects.toThrow(RangeError)
      expect(await cache.get('c')).toBe(stored)
    } finally {
      await cache.close()
    }
  })
})

describe('values another client wrote', () => {
  it.each([
    ['+7', CacheNotANumberError],
    ['0x10', CacheNotANumberError],
    ['', CacheNotANumberError],
    ['7.5', CacheNotANumberError],
    ['-9007199254740993', RangeError],
    ['9007199254740993', RangeError],
  ])('%j rejects incr with the rule’s error and stays as it was', async (raw, type) => {
    const [cache] = pair('foreign')
    try {
      const item = await writeRaw(cache, 'foreign', 'c', raw)
      await expect(cache.incr('c', 1)).rejects.toThrow(type)
      expect(await rawValue(item)).toBe(raw)
    } finally {
      await cache.close()
    }
  })

  it('a counter another client wrote as digits (" 7", "007") counts like get() reads it', async () => {
    const [cache] = pair('digits')
    try {
      await writeRaw(cache, 'digits', 'a', '007')
      expect(await cache.incr('a', 1)).toBe(8)
      await writeRaw(cache, 'digits', 'b', ' 7')
      expect(await cache.get('b')).toBe(7)
      expect(await cache.incr('b', -10)).toBe(-3)
    } finally {
      await cache.close()
    }
  })
})

describe('a server without CAS (memcached -C)', () => {
  it('incr and atomicUpdate refuse with CacheError instead of overwriting other writers', async () => {
    const noCas = await startMemcached({ spawn: true, noCas: true })
    const cache = memcachedBackend(noCas.server, { namespace: 'nocas', timeout: 2 })
    try {
      await cache.set('n', 5)
      await expect(cache.incr('n', 1)).rejects.toMatchObject({ code: 'CACHE_ERROR', message: /-C/ })
      await expect(cache.atomicUpdate<number>('n', (v) => (v ?? 0) + 1)).rejects.toMatchObject({
        message: /-C/,
      })
      expect(await cache.get('n')).toBe(5)
    } finally {
      await cache.close()
      await noCas.stop()
    }
  })

  it('compareAndDelete refuses with CacheError instead of deleting without its CAS guard', async () => {
    const noCas = await startMemcached({ spawn: true, noCas: true })
    const cache = memcachedBackend(noCas.server, { namespace: 'nocas', timeout: 2, logger: false })
    try {
      await cache.set('lock', 'A')
      // Its delete would carry CAS 0, which the server ignores: a value another process wrote
      // after the read would be deleted.
      await expect(cache.compareAndDelete('lock', 'A')).rejects.toMatchObject({
        code: 'CACHE_ERROR',
        message: /-C/,
      })
      expect(await cache.get('lock')).toBe('A')
      // Nothing to delete, or another value: no write, so nothing to guard.
      expect(await cache.compareAndDelete('lock', 'B')).toBe(false)
      expect(await cache.compareAndDelete('absent', 'A')).toBe(false)
    } finally {
      await cache.close()
      await noCas.stop()
    }
  })

  it('add over an item past its expiry refuses with CacheError instead of replacing it unguarded', async () => {
    const noCas = await startMemcached({ spawn: true, noCas: true })
    const namespace = 'nocas-add'
    const writer = memcachedBackend(noCas.server, { namespace, timeout: 2, logger: false })
    // A clock 10 s ahead reads the writer's 1 s item as past its expiry, which memcached still holds.
    const later = memcachedBackend(noCas.server, {
      namespace,
      timeout: 2,
      logger: false,
      now: () => Date.now() + 10_000,
    })
    try {
      await writer.set('lock', 'old', 1)
      expect(await later.get('lock')).toBeUndefined()
      await expect(later.add('lock', 'mine', 30)).rejects.toMatchObject({
        code: 'CACHE_ERROR',
        message: /-C/,
      })
      expect(await writer.get('lock')).toBe('old')
      // ADD alone needs no CAS: an absent key is taken once, a live one refused.
      expect(await later.add('free', 'mine', 30)).toBe(true)
      expect(await writer.add('free', 'theirs', 30)).toBe(false)
    } finally {
      await writer.close()
      await later.close()
      await noCas.stop()
    }
  })
})

describe('a read-modify-write whose write times out', () => {
  it('incr: not followed by a DELETE of the counter (its write may count once; other increments stay)', async () => {
    const stored = await afterTimedOutWrite(10, (cache) => cache.incr('c', -1))
    expect(stored).toBe('9')
  })

  it('atomicUpdate: not followed by a DELETE of the key (its CAS write may land once; what others wrote stays)', async () => {
    const stored = await afterTimedOutWrite([1], (cache) =>
      cache.atomicUpdate<number[]>('c', (list = []) => [...list, 2], 60),
    )
    // The conditional write landed late (the list it read was unchanged): the update, not a hole.
    expect(stored).toContain('[1,2]')
  })
})

/**
 * Stores `initial` under `c`, then runs `call`, freezing the server between its read and its
 * write (the backend reads the clock there), so the call times out with its write unanswered.
 * Thaws the server and returns the stored bytes of `c` as text, or undefined if the key is gone.
 */
async function afterTimedOutWrite(
  initial: unknown,
  call: (cache: ReturnType<typeof memcachedBackend>) => Promise<unknown>,
): Promise<string | undefined> {
  const frozen = await startMemcached({ spawn: true })
  let freezeOnRead = false
  const now = () => {
    if (freezeOnRead) {
      freezeOnRead = false
      stopNow(frozen.process!.pid!)
    }
    return Date.now()
  }
  const cache = memcachedBackend(frozen.server, { namespace: 'late', timeout: 0.3, now })
  try {
    await cache.set('c', initial, 60)
    const [item] = (await serverKeys(frozen.port)).filter((k) => k.startsWith('late#') && k.endsWith(':c'))
    freezeOnRead = true
    await expect(call(cache)).rejects.toMatchObject({ code: 'CACHE_TIMEOUT' })
    frozen.process!.thaw()
    await new Promise((resolve) => setTimeout(resolve, 300))
    const reply = await ascii(frozen.port, `get ${item}`, /END\r\n$/)
    return reply.startsWith('VALUE ') ? reply.split('\r\n')[1] : undefined
  } finally {
    frozen.process!.thaw()
    await cache.close()
    await frozen.stop()
  }
}

/** SIGSTOP, and returns once every thread of `pid` is stopped (synchronously: nothing else runs first). */
function stopNow(pid: number): void {
  process.kill(pid, 'SIGSTOP')
  const deadline = Date.now() + 2000
  const stopped = () =>
    readdirSync(`/proc/${pid}/task`).every((task) =>
      /\) [Tt] /.test(readFileSync(`/proc/${pid}/task/${task}/stat`, 'utf8')),
    )
  while (!stopped()) if (Date.now() > deadline) throw new Error(`memcached ${pid} did not stop`)
}

describe('a server restarted with -C in the middle of an atomicUpdate', () => {
  it('reports the write that went in without a CAS guard through the error event (the call resolves: it was stored)', async () => {
    const first = await startMemcached({ spawn: true })
    const namespace = 'cas-restart'
    const cache = memcachedBackend(first.server, { namespace, timeout: 2, logger: false })
    const errors: Error[] = []
    cache.on('error', (event) => errors.push(event.error as Error))
    let restarted: MemcachedServer | undefined
    try {
      await cache.set('k', 'old')
      const mkey = await storedKey(first.port, namespace, 'k')
      const result = await cache.atomicUpdate<string>('k', async (current) => {
        if (restarted === undefined) {
          await first.stop()
          restarted = await startMemcached({ spawn: true, port: first.port, noCas: true })
          // Another writer stores the key meanwhile: a CAS guard would refuse the write below.
          await ascii(first.port, `set ${mkey} 0 0 6\r\ntheirs`)
        }
        return `${current}+mine`
      })
      expect(result).toBe('old+mine')
      expect(errors.map((error) => error.message)).toContainEqual(
        expect.stringMatching(/atomicUpdate.*without CAS guard/),
      )
    } finally {
      await cache.close()
      await restarted?.stop()
      await first.stop()
    }
  })
})
