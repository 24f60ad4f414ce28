import { describe, expect, it } from 'vitest'
import { CacheConflictError, CacheTimeoutError } from '../src/errors.js'
import { CONFLICT, retryConflicts, waitAtMost, withTimeout } from '../src/kit.js'

const later = <T>(ms: number, value: T) => new Promise<T>((resolve) => setTimeout(resolve, ms, value))
const timedOut = () => new CacheTimeoutError('test', 'get', 20)

describe('withTimeout', () => {
  it('gives the result of work that settles in time, and its rejection as is', async () => {
    await expect(withTimeout(later(1, 'v'), 200, timedOut)).resolves.toBe('v')
    const failure = new Error('refused')
    await expect(withTimeout(Promise.reject(failure), 200, timedOut)).rejects.toBe(failure)
  })

  it('rejects with the timeout error when work is slower, and a later settle changes nothing', async () => {
    const slow = later(80, 'late')
    const started = Date.now()
    await expect(withTimeout(slow, 20, timedOut)).rejects.toBeInstanceOf(CacheTimeoutError)
    expect(Date.now() - started).toBeLessThan(75)
    await slow
  })
})

describe('waitAtMost', () => {
  it('resolves undefined when the time runs out, the value otherwise', async () => {
    await expect(waitAtMost(later(100, 'late'), 10)).resolves.toBeUndefined()
    await expect(waitAtMost(later(1, 'soon'), 200)).resolves.toBe('soon')
  })

  it('passes a rejection of work through', async () => {
    const failure = new Error('closed')
    await expect(waitAtMost(Promise.reject(failure), 50)).rejects.toBe(failure)
  })
})

describe('retryConflicts', () => {
  it('runs attempts until one does not conflict, numbering them', async () => {
    const seen: number[] = []
    const result = await retryConflicts('k', { maxAttempts: 5, pause: () => 0 }, async (n) => {
      seen.push(n)
      return n < 3 ? CONFLICT : `done at ${n}`
    })
    expect(result).toBe('done at 3')
    expect(seen).toEqual([1, 2, 3])
  })

  it('gives up after maxAttempts conflicts with CacheConflictError naming the key', async () => {
    let runs = 0
    const run = retryConflicts('profile:7', { maxAttempts: 4, pause: () => 0 }, async () => {
      runs++
      return CONFLICT
    })
    await expect(run).rejects.toBeInstanceOf(CacheConflictError)
    await expect(run).rejects.toMatchObject({ key: 'profile:7' })
    expect(runs).toBe(4)
  })

  it('ends with the error an attempt throws, without another attempt', async () => {
    let runs = 0
    const failure = new Error('server gone')
    const run = retryConflicts('k', { maxAttempts: 10 }, async () => {
      runs++
      throw failure
    })
    await expect(run).rejects.toBe(failure)
    expect(runs).toBe(1)
  })

  it('pauses between conflicting attempts as told', async () => {
    const pauses: number[] = []
    const started = Date.now()
    await retryConflicts(
      'k',
      {
        maxAttempts: 3,
        pause: (n) => {
          pauses.push(n)
          return 15
        },
      },
      async (n) => (n < 3 ? CONFLICT : 'ok'),
    )
    expect(pauses).toEqual([1, 2])
    expect(Date.now() - started).toBeGreaterThanOrEqual(28)
  })

  it('a stored value equal to nothing special is a result, not a conflict', async () => {
    await expect(retryConflicts('k', { maxAttempts: 1 }, async () => undefined)).resolves.toBeUndefined()
    await expect(retryConflicts('k', { maxAttempts: 1 }, async () => false)).resolves.toBe(false)
  })
})
