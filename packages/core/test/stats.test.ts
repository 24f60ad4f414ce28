import { describe, expect, it, vi } from 'vitest'
import { CacheObserver } from '../src/stats.js'

describe('CacheObserver', () => {
  it('counts without building or emitting events while nobody listens', () => {
    const observer = new CacheObserver('test')
    const emit = vi.spyOn(observer, 'emit')
    observer.hit('a')
    observer.miss('b')
    observer.set('c')
    observer.delete('d')
    expect(emit).not.toHaveBeenCalled()
    expect(observer.stats).toMatchObject({ hits: 1, misses: 1, sets: 1, deletes: 1 })
  })

  it('emits while a listener is attached, and stops once it is removed', () => {
    const observer = new CacheObserver('test')
    const seen: unknown[] = []
    const listener = (event: unknown) => seen.push(event)
    observer.on('hit', listener)
    observer.hit('a')
    observer.off('hit', listener)
    const emit = vi.spyOn(observer, 'emit')
    observer.hit('b')
    expect(seen).toEqual([{ backend: 'test', key: 'a' }])
    expect(emit).not.toHaveBeenCalled()
  })
})
