/**
 * `@cacheResponse` on NestJS handlers (Express platform) that fail once: whatever answers the
 * error afterwards (a global exception filter, a global interceptor's `catchError`), even with a
 * 200 and a fallback body, is that failure's answer and never stored. Real Nest app, real HTTP.
 */
import 'reflect-metadata'
import type { CacheBackend } from '@cache/core'
import { afterEach, describe, expect, it } from 'vitest'
import { memory, request } from './http.js'

interface ErrorsFixture {
  startErrorsNest(
    answer: 'filter' | 'interceptor',
    backend: CacheBackend,
  ): Promise<{ app: { close(): Promise<void> }; port: number }>
  startUnserializableNest(
    how: 'bigint' | 'circular' | 'toJSON' | 'replacer' | 'serializer',
    backend: CacheBackend,
  ): Promise<{ app: { close(): Promise<void> }; port: number }>
}
// A path the TC39-mode typecheck of this file does not follow into the legacy-mode fixture.
const FIXTURE: string = './fixtures/nest/errors.js'

let app: { close(): Promise<void> } | undefined
afterEach(async () => {
  await app?.close()
  app = undefined
})

describe.each([
  ['a global exception filter (APP_FILTER)', 'filter'],
  ["a global interceptor's catchError fallback", 'interceptor'],
] as const)('an error of a @cacheResponse Nest handler answered 200 by %s', (_, answer) => {
  it.each([
    ['throws', '/prices/throw'],
    ['rejects', '/prices/reject'],
    // With `@Res()`, Nest sends no interceptor's result: only a filter answers that error.
    ...(answer === 'filter' ? [['throws before writing with @Res()', '/prices/res']] : []),
  ])('is never stored when the handler %s', async (_how, path) => {
    const { startErrorsNest } = (await import(FIXTURE)) as ErrorsFixture
    const started = await startErrorsNest(answer, memory())
    app = started.app
    const first = await request(started.port, path)
    expect(first.status).toBe(200)
    expect(JSON.parse(first.body.toString())).toEqual({ degraded: true })
    expect(first.headers['cache-status']).toMatch(/detail=handler-error/)
    const second = await request(started.port, path)
    expect(JSON.parse(second.body.toString())).toEqual({ price: 10 })
    expect(second.headers['cache-status']).toMatch(/stored/)
    const third = await request(started.port, path)
    expect(third.headers['cache-status']).toMatch(/hit/)
  })
})

describe('a @cacheResponse Nest result that fails on its way into the response, answered 200 by a global filter', () => {
  it.each([
    ['a BigInt', 'bigint'],
    ['a circular object', 'circular'],
    ['an object whose toJSON throws', 'toJSON'],
    ["an object Express's json replacer throws on", 'replacer'],
    ['an object a global serializing interceptor throws on', 'serializer'],
  ] as const)('is never stored when the handler returns %s', async (_what, how) => {
    const { startUnserializableNest } = (await import(FIXTURE)) as ErrorsFixture
    const started = await startUnserializableNest(how, memory())
    app = started.app
    const first = await request(started.port, '/stats')
    expect(first.status).toBe(200)
    expect(JSON.parse(first.body.toString())).toEqual({ degraded: true })
    expect(first.headers['cache-status']).toMatch(/detail=handler-error/)
    const second = await request(started.port, '/stats')
    expect(JSON.parse(second.body.toString())).toEqual({ orders: 42 })
    expect(second.headers['cache-status']).toMatch(/stored/)
    const third = await request(started.port, '/stats')
    expect(JSON.parse(third.body.toString())).toEqual({ orders: 42 })
    expect(third.headers['cache-status']).toMatch(/hit/)
  })
})
