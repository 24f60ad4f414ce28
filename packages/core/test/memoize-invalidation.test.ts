import { describe, expect, it } from 'vitest'
import { cached, defineBackend, invalidateTags } from '../src/index.js'

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
  'invalidate()': (f: { invalidate(id: number): Promise<void> }) => f.invalidate(1),
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
