import { describe, expect, it } from 'vitest'
import { cached, defineBackend, invalidateTags } from '../src/index.js'
import { mapBackend as syncCapableBackend } from './map-backend.js'

function mapBackend() {
  const rows = new Map<string, unknown>()
  return defineBackend({
    get: async <T>(key: string) => rows.get(key) as T | undefined,
    set: async (key: string, value: unknown) => void rows.set(key, value),
    delete: async (key: string) => rows.delete(key),
    clear: async () => rows.clear(),
  })
}

/** A function reading a mutable "database", held at a gate so a call can be caught in flight. */
function slowSource() {
  const db = { value: 'old' }
  const gates: (() => void)[] = []
  let runs = 0
  const load = async (_id: number) => {
    runs++
    const value = db.value
    await new Promise<void>((resolve) => gates.push(resolve))
    return value
  }
  const release = (call: number) => gates[call]!()
  const started = async (count: number) => {
    for (let i = 0; i < 100 && runs < count; i++) await new Promise((resolve) => setImmediate(resolve))
    expect(runs).toBe(count)
  }
  return { db, load, release, started, runs: () => runs }
}

const invalidations = {
  'invalidate()': (f: { invalidate(id: number): Promise<void> }, _backend: unknown, id = 1) =>
    f.invalidate(id),
  'clear()': (f: { clear(): Promise<void> }) => f.clear(),
  'invalidateTags()': (_f: unknown, backend: ReturnType<typeof mapBackend>) =>
    invalidateTags(['inflight'], { backend }),
}

describe.each(Object.entries(invalidations))('%s while a call is in flight', (label, invalidate) => {
  it('starts a new flight for calls made after it, and never stores the old result', async () => {
    const backend = mapBackend()
    const source = slowSource()
    const f = cached(source.load, { backend, name: `inflight ${label}`, tags: ['inflight'] })
    const before = f(1)
    await source.started(1)
    source.db.value = 'new'
    await invalidate(f as never, backend)
    const after = f(1)
    // The call made after the invalidation runs the function again instead of joining.
    await source.started(2)
    // The new call finishes first; the old one after it must not overwrite its result.
    source.release(1)
    expect(await after).toBe('new')
    source.release(0)
    expect(await before).toBe('old')
    // And what is stored is the new result, not the old flight's.
    expect(await f(1)).toBe('new')
    expect(source.runs()).toBe(2)
  })
})

describe.each(Object.entries(invalidations))(
  '%s made by the function while it computes',
  (label, invalidate) => {
    // A loader that changes what it read and invalidates its own entry (a lazy migration): once that
    // invalidation has resolved, its result is from before it and must not be answered again.
    for (const kind of ['sync', 'async'] as const) {
      it(`never stores the ${kind} result it computed before (an in-process backend)`, async () => {
        const backend = syncCapableBackend({ sync: true })
        const db = { value: 'old' }
        let invalidation: Promise<void> | undefined
        const compute = (id: number) => {
          const value = db.value
          if (invalidation === undefined) {
            db.value = 'new'
            invalidation = invalidate(read as never, backend as never, id)
          }
          return value
        }
        const read = cached(kind === 'sync' ? compute : async (id: number) => compute(id), {
          backend,
          name: `self-invalidating ${kind} ${label}`,
          tags: ['inflight'],
        })
        expect(await read(1)).toBe('old')
        await invalidation
        expect(await read(1)).toBe('new')
      })
    }
  },
)
