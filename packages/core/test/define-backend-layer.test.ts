import { describe, expect, it } from 'vitest'
import {
  CacheClosedError,
  CacheConfigError,
  type CacheEvent,
  CacheSerializationError,
  CacheTimeoutError,
  CacheUnavailableError,
  defineBackend,
  listKeys,
  type MinimalBackend,
} from '../src/index.js'
import { CacheObserver, waitAtMost } from '../src/kit.js'

/**
 * What the layer in front of a store does for every store: a time limit per call to the store,
 * the store's failures told apart (the store is down, or the caller erred), counted and emitted.
 */

const never = () => new Promise<never>(() => {})
const turn = () => new Promise((resolve) => setImmediate(resolve))

function mapStore(rows = new Map<string, unknown>()) {
  return {
    name: 'rows',
    get: async (key: string) => rows.get(key),
    set: async (key: string, value: unknown) => {
      rows.set(key, value)
    },
    delete: async (key: string) => rows.delete(key),
    clear: async () => rows.clear(),
  }
}

function errorsOf(backend: { on?: (name: 'error', listener: (event: CacheEvent) => void) => unknown }) {
  const events: CacheEvent[] = []
  backend.on!('error', (event) => events.push(event))
  return events
}

describe('defineBackend: timeout', () => {
  it('fails a call to the store that takes longer with CacheTimeoutError, counted as a timeout', async () => {
    const backend = defineBackend({ ...mapStore(), get: never }, { timeout: '50ms' })
    const events = errorsOf(backend)
    const started = Date.now()
    const error = await waitAtMost(
      backend.get('k').catch((e) => e),
      2000,
    )
    expect(error).toBeInstanceOf(CacheTimeoutError)
    expect(Date.now() - started).toBeLessThan(1000)
    expect(backend.stats).toMatchObject({ errors: 1, timeouts: 1 })
    expect(events.map((e) => [e.operation, e.key])).toEqual([['get', 'k']])
  })

  it('bounds each call of a read-then-write fallback, named after the operation', async () => {
    const backend = defineBackend({ ...mapStore(), set: never }, { timeout: 0.05 })
    const error = await waitAtMost(
      backend.incr('n').catch((e) => e),
      2000,
    )
    expect(error).toBeInstanceOf(CacheTimeoutError)
    expect((error as Error).message).toContain('incr')
  })

  it('bounds each step of a listing: a store whose keys() stops answering fails with CacheTimeoutError, and its iterator is closed', async () => {
    let closed = 0
    let answer = true
    const store = {
      ...mapStore(),
      keys(): AsyncIterableIterator<string> {
        let step = 0
        return {
          [Symbol.asyncIterator]() {
            return this
          },
          // The first step answers; the second waits for a server that stopped answering.
          next: () => (++step === 1 && answer ? Promise.resolve({ value: 'a', done: false }) : never()),
          return: async () => {
            closed++
            return { value: undefined, done: true }
          },
        }
      },
    }
    const backend = defineBackend(store, { timeout: '50ms' })
    const events = errorsOf(backend)
    const listed: string[] = []
    const started = Date.now()
    const error = await waitAtMost(
      (async () => {
        for await (const key of listKeys(backend)) listed.push(key)
      })().catch((e) => e),
      2000,
    )
    expect(error).toBeInstanceOf(CacheTimeoutError)
    expect(Date.now() - started).toBeLessThan(1000)
    expect(listed).toEqual(['a'])
    expect(backend.stats).toMatchObject({ errors: 1, timeouts: 1 })
    expect(events.map((e) => e.operation)).toEqual(['keys'])
    expect(closed).toBe(1)
    // The first step too (an async generator that hangs before its first key).
    answer = false
    const first = await waitAtMost(
      backend.keys!()
        .next()
        .catch((e) => e),
      2000,
    )
    expect(first).toBeInstanceOf(CacheTimeoutError)
    expect(backend.stats!.timeouts).toBe(2)
  })

  it('closes the store’s iterator when the caller stops listing early, and not after a listing that ended', async () => {
    let closed = 0
    const store = {
      ...mapStore(),
      async *keys() {
        try {
          yield 'a'
          yield 'b'
        } finally {
          closed++
        }
      },
    }
    const backend = defineBackend(store, { timeout: '1s' })
    for await (const key of backend.keys!()) if (key === 'a') break
    expect(closed).toBe(1)
    const all: string[] = []
    for await (const key of backend.keys!()) all.push(key)
    expect(all).toEqual(['a', 'b'])
    expect(closed).toBe(2)
    expect(backend.stats!.errors).toBe(0)
  })

  it('sets no timer without the option, or with false; a bad value throws CacheConfigError naming it', async () => {
    for (const timeout of [undefined, false] as const) {
      const backend = defineBackend(
        {
          ...mapStore(),
          get: () => new Promise((resolve) => setTimeout(resolve, 80, 'late')),
        },
        { timeout },
      )
      expect(await backend.get('k')).toBe('late')
    }
    expect(() => defineBackend(mapStore(), { timeout: 'soon' as never })).toThrow(
      expect.objectContaining({ name: 'CacheConfigError', setting: 'timeout' }) as never,
    )
    expect(() => defineBackend(mapStore(), { timeout: -1 })).toThrow(CacheConfigError)
  })
})

describe('defineBackend: classifyError', () => {
  /** A store whose writes fail as its client would: `refused` when down, `TypeError` for a bad value. */
  function failingStore(): MinimalBackend {
    return {
      ...mapStore(),
      set: async (_key: string, value: unknown) => {
        if (value === 'bad') throw new TypeError('cannot encode this value')
        throw new Error('connect ECONNREFUSED')
      },
    }
  }
  const classifyError = (error: unknown, operation: string) =>
    error instanceof TypeError
      ? new CacheSerializationError(`rows: ${error.message}`, '$', { cause: error })
      : new CacheUnavailableError('rows', `rows: ${operation} failed`, { cause: error })

  it('throws what the store classifies as unavailable, counted and emitted with its operation and key', async () => {
    const backend = defineBackend(failingStore(), { classifyError })
    const events = errorsOf(backend)
    const error = await backend.set('k', 'fine').catch((e) => e)
    expect(error).toBeInstanceOf(CacheUnavailableError)
    expect((error as Error).cause).toEqual(new Error('connect ECONNREFUSED'))
    expect(await backend.add('a', 1).catch((e) => e)).toBeInstanceOf(CacheUnavailableError)
    expect(backend.stats!.errors).toBe(2)
    expect(events.map((e) => [e.operation, e.key])).toEqual([
      ['set', 'k'],
      ['add', 'a'],
    ])
  })

  it('throws what it classifies as the caller’s error without counting the store as down', async () => {
    const backend = defineBackend(failingStore(), { classifyError })
    const events = errorsOf(backend)
    expect(await backend.set('k', 'bad').catch((e) => e)).toBeInstanceOf(CacheSerializationError)
    expect(await backend.atomicUpdate('k', () => 'bad').catch((e) => e)).toBeInstanceOf(
      CacheSerializationError,
    )
    expect(backend.stats!.errors).toBe(0)
    expect(events).toEqual([])
  })

  it('leaves the errors of an atomicUpdate function alone: thrown as they are, not counted', async () => {
    const seen: unknown[] = []
    const failure = new Error('fn failed')
    const fn = () => {
      throw failure
    }
    for (const store of [mapStore(), { ...mapStore(), atomicUpdate: async (_k: string, f: any) => f(1) }]) {
      const backend = defineBackend(store, {
        classifyError: (error) => {
          seen.push(error)
          return new CacheUnavailableError('rows', 'down', { cause: error })
        },
      })
      expect(await backend.atomicUpdate('k', fn).catch((e) => e)).toBe(failure)
      expect(backend.stats!.errors).toBe(0)
    }
    expect(seen).toEqual([])
  })

  it('classifies a failure while listing keys, and counts it', async () => {
    const backend = defineBackend(
      {
        ...mapStore(),
        async *keys() {
          yield 'a'
          throw new Error('connection reset')
        },
      },
      { classifyError: (error) => new CacheUnavailableError('rows', 'rows: keys failed', { cause: error }) },
    )
    const listed: string[] = []
    const error = await (async () => {
      for await (const key of backend.keys!()) listed.push(key)
    })().catch((e) => e)
    expect(listed).toEqual(['a'])
    expect(error).toBeInstanceOf(CacheUnavailableError)
    expect(backend.stats!.errors).toBe(1)
  })

  it('counts a CacheUnavailableError the store throws itself, without the option', async () => {
    const down = new CacheUnavailableError('rows', 'rows: down')
    const backend = defineBackend({
      ...mapStore(),
      get: async () => {
        throw down
      },
    })
    expect(await backend.get('k').catch((e) => e)).toBe(down)
    expect(backend.stats!.errors).toBe(1)
  })

  it('keeps its stats in the observer it is given, where the store reports failures of its own', async () => {
    const observer = new CacheObserver('rows')
    const backend = defineBackend(mapStore(), { observer })
    observer.error('client', new Error('reconnecting'))
    await backend.set('k', 1)
    expect(backend.stats).toMatchObject({ errors: 1, sets: 1 })
  })
})

describe('defineBackend: decided once, at definition', () => {
  it('runs a method the store gains afterwards as it was defined (its fallback, which completes)', async () => {
    const store: MinimalBackend = mapStore()
    const backend = defineBackend(store)
    store.add = async () => false
    expect(await waitAtMost(backend.add('k', 1), 2000)).toBe(true)
    expect(await backend.get('k')).toBe(1)
  })
})

describe('defineBackend: closed', () => {
  it('lets no call queued behind a read-then-write reach the store after close()', async () => {
    const calls: string[] = []
    const rows = new Map<string, unknown>()
    let open!: () => void
    const gate = new Promise<void>((resolve) => {
      open = resolve
    })
    const backend = defineBackend({
      ...mapStore(rows),
      get: async (key: string) => {
        calls.push(`get ${key}`)
        await gate
        return rows.get(key)
      },
      set: async (key: string, value: unknown) => {
        calls.push(`set ${key}`)
        rows.set(key, value)
      },
    })
    const first = backend.incr('k').catch((e) => e)
    const second = backend.add('k', 1).catch((e) => e)
    await turn()
    expect(calls).toEqual(['get k'])
    // close() waits for the read in flight, then refuses the write that would follow it.
    const closed = backend.close()
    open()
    await closed
    expect(await first).toBeInstanceOf(CacheClosedError)
    expect(await second).toBeInstanceOf(CacheClosedError)
    expect(calls).toEqual(['get k'])
    expect(backend.stats!.errors).toBe(0)
  })
})

describe('defineBackend: close() with calls in flight', () => {
  /** A store whose client refuses every call once closed, as a database handle does. */
  function closingStore() {
    const rows = new Map<string, unknown>()
    const gates: (() => void)[] = []
    let closed = false
    const slow = async <R>(run: () => R): Promise<R> => {
      await new Promise<void>((resolve) => gates.push(resolve))
      if (closed) throw new CacheUnavailableError('rows', 'rows: the handle is closed')
      return run()
    }
    const store: MinimalBackend = {
      name: 'rows',
      get: (key: string) => slow(() => rows.get(key)),
      set: (key: string, value: unknown) => slow(() => void rows.set(key, value)),
      delete: (key: string) => slow(() => rows.delete(key)),
      clear: () => slow(() => rows.clear()),
      getMany: <T>(keys: readonly string[]) => slow(() => keys.map((key) => rows.get(key) as T)),
      setMany: (items: readonly { key: string; value: unknown }[]) =>
        slow(() => {
          for (const item of items) rows.set(item.key, item.value)
        }),
      close: async () => {
        closed = true
      },
    }
    const release = () => {
      for (const open of gates.splice(0)) open()
    }
    return { store, rows, release }
  }

  it('lets the calls in flight settle with their real result before the store is closed (not counted as errors)', async () => {
    const { store, rows, release } = closingStore()
    for (const key of ['old', 'g', 'd']) rows.set(key, 1)
    const backend = defineBackend(store)
    const events = errorsOf(backend)
    const settled = (call: Promise<unknown>) =>
      call.then(
        (value) => ({ value }),
        (error: Error) => ({ error: error.message }),
      )
    const calls = [
      backend.set('k', 'new'),
      backend.delete('old'),
      backend.setMany([{ key: 'm', value: 2 }]),
      backend.get('g'),
      backend.getMany(['g', 'none']),
      backend.deleteMany(['d']),
    ].map(settled)
    const closed = backend.close()
    await turn()
    release()
    await closed
    expect(await Promise.all(calls)).toEqual([
      { value: undefined },
      { value: true },
      { value: undefined },
      { value: 1 },
      { value: [1, undefined] },
      { value: 1 },
    ])
    expect([...rows]).toEqual([
      ['g', 1],
      ['k', 'new'],
      ['m', 2],
    ])
    expect(backend.stats!.errors).toBe(0)
    expect(events).toEqual([])
    await expect(backend.set('later', 1)).rejects.toBeInstanceOf(CacheClosedError)

    const other = closingStore()
    other.rows.set('x', 1)
    const cleared = defineBackend(other.store)
    const clear = settled(cleared.clear())
    const closing = cleared.close()
    await turn()
    other.release()
    await closing
    expect(await clear).toEqual({ value: undefined })
    expect(other.rows.size).toBe(0)
    expect(cleared.stats!.errors).toBe(0)
  })

  it('waits no longer than the timeout for a call that never settles', async () => {
    const backend = defineBackend({ ...mapStore(), get: never, close: async () => {} }, { timeout: '50ms' })
    const read = backend.get('k').catch((error) => error)
    const started = Date.now()
    await backend.close()
    expect(Date.now() - started).toBeLessThan(1000)
    expect(await read).toBeInstanceOf(CacheTimeoutError)
  })

  it('waits no longer than the timeout for a store whose close() never settles: resolves, the timeout counted', async () => {
    const backend = defineBackend({ ...mapStore(), close: never }, { timeout: '50ms' })
    const events = errorsOf(backend)
    const started = Date.now()
    const outcome = await waitAtMost(
      backend.close().then(
        () => 'resolved',
        (error) => error,
      ),
      2000,
    )
    expect(outcome).toBe('resolved')
    expect(Date.now() - started).toBeLessThan(1000)
    expect(backend.stats).toMatchObject({ errors: 1, timeouts: 1 })
    expect(events.map((e) => [e.operation, (e.error as Error).constructor.name])).toEqual([
      ['close', 'CacheTimeoutError'],
    ])
    await expect(backend.get('k')).rejects.toBeInstanceOf(CacheClosedError)
    expect(await backend.close()).toBeUndefined() // idempotent: the same outcome, counted once
    expect(backend.stats!.timeouts).toBe(1)
  })

  it('still rejects with what a store’s close() throws', async () => {
    const backend = defineBackend(
      {
        ...mapStore(),
        close: async () => {
          throw new CacheUnavailableError('rows', 'rows: close failed')
        },
      },
      { timeout: '1s' },
    )
    await expect(backend.close()).rejects.toBeInstanceOf(CacheUnavailableError)
  })
})

describe('defineBackend: a stored undefined is a hit', () => {
  it('counts it as a hit in get and getMany when the store reads entries (getEntry, getManyEntries)', async () => {
    const rows = new Map<string, { value: unknown }>([['u', { value: undefined }]])
    const batches: string[][] = []
    const backend = defineBackend({
      ...mapStore(),
      get: async (key: string) => rows.get(key)?.value,
      getEntry: async <T>(key: string) => rows.get(key) as { value: T } | undefined,
      getMany: async <T>(keys: readonly string[]) => keys.map((key) => rows.get(key)?.value as T),
      getManyEntries: async (keys: readonly string[]) => {
        batches.push([...keys])
        return keys.map((key) => rows.get(key))
      },
    } as MinimalBackend)
    expect(await backend.get('u')).toBeUndefined()
    expect(await backend.getMany(['u', 'none'])).toEqual([undefined, undefined])
    expect(batches).toEqual([['u', 'none']])
    expect(backend.stats).toMatchObject({ hits: 2, misses: 1 })
  })
})

describe('defineBackend: what it is given', () => {
  it('refuses what is no store, a missing method and a method that is not a function, when defined', () => {
    // Before: a TypeError from inside at the first call ("source.get is not a function"), or
    // a TypeError reading null's prototype.
    for (const given of [null, undefined, 'redis://', 5])
      expect(() => defineBackend(given as never)).toThrow(/defineBackend\(\) takes an object/)
    const { get: _get, ...withoutGet } = mapStore()
    expect(() => defineBackend(withoutGet as never)).toThrow(/no get method \(get: missing\)/)
    expect(() => defineBackend({ ...mapStore(), set: 1 } as never)).toThrow(/no set method \(set: number\)/)
    expect(() => defineBackend({ ...mapStore(), has: true } as never)).toThrow(
      /has is a boolean, not a method/,
    )
    for (const bad of [withoutGet, { ...mapStore(), has: true }])
      expect(() => defineBackend(bad as never)).toThrow(CacheConfigError)
  })

  it('refuses a classifyError that is no function and an observer that is no CacheObserver', () => {
    // Before: accepted, and the store's real error hidden behind "classify is not a function".
    expect(() => defineBackend(mapStore(), { classifyError: 5 as never })).toThrow(
      /classifyError: expected a function, got number/,
    )
    expect(() => defineBackend(mapStore(), { observer: 5 as never })).toThrow(
      /observer: expected a CacheObserver/,
    )
    expect(defineBackend(mapStore(), { observer: new CacheObserver('rows') }).stats?.hits).toBe(0)
  })

  it('says where shared, hostOnly and classifyError go when they are given in the other place', () => {
    // Before: shared in the options was refused as unknown, without saying where it goes, and
    // classifyError on the store was silently ignored.
    expect(() => defineBackend(mapStore(), { shared: true } as never)).toThrow(
      /shared: the store says it of itself: put `shared` on the object given to defineBackend/,
    )
    expect(() => defineBackend(mapStore(), { hostOnly: true } as never)).toThrow(
      /put `hostOnly` on the object/,
    )
    expect(() =>
      defineBackend({ ...mapStore(), classifyError: (error: unknown) => error as Error } as never),
    ).toThrow(/classifyError: an option of defineBackend\(\), not a method of the store/)
  })

  it('names what a switch was given in its refusal', () => {
    // Before: `[true]` and `new Boolean(true)` read "got true".
    for (const [given, named] of [
      [[true], 'an Array'],
      [Object(true), 'a Boolean'],
      ['false', 'the string "false"'],
    ] as const)
      expect(() => defineBackend({ ...mapStore(), shared: given as never })).toThrow(
        `shared: expected true or false (whether other processes see the store's entries), got ${named}`,
      )
  })
})
