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

describe('CacheObserver error listeners', () => {
  it('a listener that throws neither escapes nor silences the others, and is reported once through the logger', () => {
    const lines: string[] = []
    const logger = {
      warn: (m: string) => void lines.push(`warn ${m}`),
      error: (m: string) => void lines.push(m),
    }
    const observer = new CacheObserver('test', logger)
    const heard: string[] = []
    observer.on('error', () => {
      throw new Error('listener boom')
    })
    observer.once('error', (event: { operation?: string }) => void heard.push(`once ${event.operation}`))
    observer.on('error', (event: { operation?: string }) => void heard.push(`${event.operation}`))
    expect(() => observer.error('get', new Error('down'), 'a')).not.toThrow()
    expect(() => observer.error('connection', new Error('down'))).not.toThrow()
    expect(heard).toEqual(['once get', 'get', 'connection'])
    expect(observer.stats.errors).toBe(2)
    expect(lines).toEqual([
      "[@cache] test: an 'error' listener threw: listener boom (the get failure it was told of still reached its caller; reported once per listener)",
    ])
  })

  it('reports through the process-wide logger when the observer has no logger of its own, and not at all with logger: false', async () => {
    const { setCacheLogger } = await import('../src/logger.js')
    const lines: string[] = []
    setCacheLogger({ warn: () => {}, error: (m: string) => void lines.push(m) })
    try {
      const quiet = new CacheObserver('quiet', false)
      quiet.on('error', () => {
        throw new Error('quiet boom')
      })
      quiet.error('get', new Error('down'))
      const loud = new CacheObserver('loud')
      loud.on('error', () => {
        throw new Error('loud boom')
      })
      loud.error('get', new Error('down'))
      expect(lines).toEqual([expect.stringMatching(/^\[@cache\] loud: an 'error' listener threw: loud boom/)])
    } finally {
      setCacheLogger(undefined)
    }
  })
})

describe('CacheObserver error listeners with a logger that throws too', () => {
  it('still never throws, and still calls the other listeners', () => {
    const logger = {
      warn: () => {},
      error: () => {
        throw new Error('logger boom')
      },
    }
    const observer = new CacheObserver('test', logger)
    const heard: string[] = []
    observer.on('error', () => {
      throw new Error('listener boom')
    })
    observer.on('error', (event: { operation?: string }) => void heard.push(`${event.operation}`))
    expect(() => observer.error('get', new Error('down'), 'a')).not.toThrow()
    expect(heard).toEqual(['get'])
  })
})
