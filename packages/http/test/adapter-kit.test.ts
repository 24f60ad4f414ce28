import { CacheConfigError } from '@cache/core'
import { describe, expect, it } from 'vitest'
import {
  describeFunction,
  fastifyInstanceOptions,
  HANDLER_ERROR,
  onHandlerError,
  resolveSkippedOnHits,
  sentHostPart,
} from '@cache/http'

describe('pieces shared by the adapters', () => {
  it('keys the Host header as sent only when the framework resolved another host', () => {
    expect(sentHostPart('shop.test', 'shop.test')).toBeUndefined()
    expect(sentHostPart('shop.test', 'evil.test')).toBe('@host="evil.test"')
    // No `Host` behind a forwarded host: the handler reads none, which is part of the key too.
    expect(sentHostPart('shop.test', undefined)).toBe('@host=-')
  })

  it('checks middlewareSkippedOnHits once, naming the option', () => {
    const fn = () => {}
    expect([...resolveSkippedOnHits({ middlewareSkippedOnHits: [fn] })]).toEqual([fn])
    expect(resolveSkippedOnHits(60).size).toBe(0)
    expect(() => resolveSkippedOnHits({ middlewareSkippedOnHits: ['x' as never] })).toThrow(CacheConfigError)
    expect(() => resolveSkippedOnHits({ middlewareSkippedOnHits: ['x' as never] })).toThrow(
      /middlewareSkippedOnHits/,
    )
  })

  it('names two functions of one name with different code apart', () => {
    const a = function handler() {
      return 1
    }
    const b = function handler() {
      return 2
    }
    expect(describeFunction(a)).toMatch(/^handler#/)
    expect(describeFunction(a)).not.toBe(describeFunction(b))
    expect(describeFunction(a)).toBe(describeFunction(a))
  })

  it("reads a Fastify instance's options through its prototype chain", () => {
    const symbol = Symbol('fastify.options')
    const root = { [symbol]: { rewriteUrl: 1 } }
    const child = Object.create(root)
    expect(fastifyInstanceOptions(root)).toEqual({ rewriteUrl: 1 })
    expect(fastifyInstanceOptions(child)).toEqual({ rewriteUrl: 1 })
    expect(fastifyInstanceOptions({})).toBeUndefined()
    expect(fastifyInstanceOptions(null)).toBeUndefined()
  })

  it("tells when a handler's observable fails, and passes its values and errors on", () => {
    const failed: string[] = []
    const source = (fail: boolean) => ({
      subscribe(observer: { next(v: unknown): void; error(e: unknown): void; complete(): void }) {
        observer.next(1)
        if (fail) observer.error(new Error('boom'))
        else observer.complete()
      },
    })
    const seen: unknown[] = []
    const observer = {
      next: (v: unknown) => seen.push(v),
      error: (e: unknown) => seen.push((e as Error).message),
      complete: () => seen.push('done'),
    }
    const subscribeTo = (wrapped: unknown) =>
      (wrapped as Record<string, () => { subscribe(o: typeof observer): void }>)['@@observable']!().subscribe(
        observer,
      )
    subscribeTo(onHandlerError(source(false), () => failed.push(HANDLER_ERROR)))
    subscribeTo(onHandlerError(source(true), () => failed.push(HANDLER_ERROR)))
    expect(seen).toEqual([1, 'done', 1, 'boom'])
    expect(failed).toEqual(['handler-error'])
    expect(onHandlerError(42, () => {})).toBe(42)
  })
})
