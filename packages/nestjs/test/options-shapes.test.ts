/**
 * Options are read by name, whatever object holds them: a `vary`, `key` or `bypass` given through a
 * settings class (a getter, a method), a subclass, `Object.create`, a frozen instance, a Proxy or
 * an own non-enumerable property must apply as it would in a plain object literal. Dropped, bob
 * is served alice's body (`@CacheResponse`), or two applications sharing one backend read each
 * other's keys (`CacheModule`).
 */
import 'reflect-metadata'
import { resetCache } from '@cache/core'
import { memoryBackend } from '@cache/memory'
import { configErrorOf } from '@cache/testing'
import { Controller, Get, Headers, type INestApplication, Module } from '@nestjs/common'
import { NestFactory } from '@nestjs/core'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import {
  CACHE_BACKEND,
  CacheModule,
  type CacheModuleOptions,
  CacheResponse,
  type CacheResponseOptions,
} from '../src/index.js'
import { PLATFORMS, send, startApp } from './harness.js'

type Req = { headers: Record<string, string | string[] | undefined> }
const VARY = ['x-user']
const perUser = (req: Req) => `me:${String(req.headers['x-user'])}`
/** Bob's requests are not cached: before the fix, a dropped `bypass` served him alice's entry. */
const bobBypasses = (req: Req) => req.headers['x-user'] === 'bob'

function nonEnumerable(name: string, value: unknown, getter = false): object {
  const options = { ttl: 60 }
  Object.defineProperty(options, name, getter ? { get: () => value } : { value })
  return options
}

class VaryGetter {
  ttl = 60
  get vary() {
    return VARY
  }
}
class VarySubclass extends VaryGetter {}
class KeyMethod {
  ttl = 60
  key(req: Req) {
    return perUser(req)
  }
}
class KeyGetter {
  ttl = 60
  get key() {
    return perUser
  }
}
const HEADER = Symbol('header')
/** A key method reading its own state through `this` (a symbol field): a copy of the options lacks it. */
class KeyMethodWithState {
  ttl = 60
  readonly [HEADER] = 'x-user'
  key(req: Req) {
    return `me:${String(req.headers[this[HEADER]])}`
  }
}
class BypassMethod {
  ttl = 60
  bypass(req: Req) {
    return bobBypasses(req)
  }
}

/** Each shape, and whether bob's requests bypass the cache (rather than get their own entry). */
const SHAPES: [string, () => object, 'vary' | 'key' | 'bypass'][] = [
  ['a plain object (control)', () => ({ ttl: 60, vary: VARY }), 'vary'],
  ['a settings class with a vary getter', () => new VaryGetter(), 'vary'],
  ['a subclass of a settings class', () => new VarySubclass(), 'vary'],
  ['a frozen settings class instance', () => Object.freeze(new VaryGetter()), 'vary'],
  ['a Proxy of a settings class instance', () => new Proxy(new VaryGetter(), {}), 'vary'],
  ['Object.create({ vary })', () => Object.create({ ttl: 60, vary: VARY }), 'vary'],
  [
    'Object.create of a null-prototype object',
    () => Object.create(Object.assign(Object.create(null), { ttl: 60, vary: VARY })),
    'vary',
  ],
  ['a null-prototype object', () => Object.assign(Object.create(null), { ttl: 60, vary: VARY }), 'vary'],
  ['a frozen object', () => Object.freeze({ ttl: 60, vary: VARY }), 'vary'],
  ['a Proxy of an object', () => new Proxy({ ttl: 60, vary: VARY }, {}), 'vary'],
  [
    'a get-only Proxy with a has trap',
    () => {
      const plain: Record<string | symbol, unknown> = { ttl: 60, vary: VARY }
      return new Proxy({}, { get: (_, name) => plain[name], has: (_, name) => name in plain })
    },
    'vary',
  ],
  [
    'a get-only Proxy without a has trap',
    () => {
      const plain: Record<string | symbol, unknown> = { ttl: 60, vary: VARY }
      return new Proxy({}, { get: (_, name) => plain[name] })
    },
    'vary',
  ],
  ['an own non-enumerable vary', () => nonEnumerable('vary', VARY), 'vary'],
  ['an own non-enumerable vary getter', () => nonEnumerable('vary', VARY, true), 'vary'],
  ['a settings class with a key method', () => new KeyMethod(), 'key'],
  ['a settings class with a key getter', () => new KeyGetter(), 'key'],
  ['a settings class whose key method reads this', () => new KeyMethodWithState(), 'key'],
  ['Object.create({ key })', () => Object.create({ ttl: 60, key: perUser }), 'key'],
  ['an own non-enumerable key', () => nonEnumerable('key', perUser), 'key'],
  ['a settings class with a bypass method', () => new BypassMethod(), 'bypass'],
  ['Object.create({ bypass })', () => Object.create({ ttl: 60, bypass: bobBypasses }), 'bypass'],
  ['an own non-enumerable bypass getter', () => nonEnumerable('bypass', bobBypasses, true), 'bypass'],
]

/** One controller with a handler per shape, at `/shape<i>`, each answering the user's own secret. */
function shapesModule(): new () => unknown {
  class ShapesController {}
  const proto = ShapesController.prototype as unknown as Record<string, unknown>
  SHAPES.forEach(([, make], i) => {
    const name = `shape${i}`
    proto[name] = (user: string) => ({ user, secret: `${user}-ssn-${i}` })
    const descriptor = Object.getOwnPropertyDescriptor(proto, name)!
    Get(name)(proto, name, descriptor)
    CacheResponse(make() as CacheResponseOptions)(proto, name, descriptor)
    Headers('x-user')(proto, name, 0)
  })
  Controller()(ShapesController)
  class ShapesModule {}
  Module({ imports: [CacheModule.forRoot({ backend: 'memory' })], controllers: [ShapesController] })(
    ShapesModule,
  )
  return ShapesModule
}

describe.each(PLATFORMS)('@CacheResponse options of any shape, on %s', (platform) => {
  let app: INestApplication
  let url: string
  beforeAll(async () => {
    ;({ app, url } = await startApp(platform, shapesModule()))
  })
  afterAll(async () => {
    await app?.close()
    await resetCache()
  })

  it.each(SHAPES.map(([label, , kind], i) => [label, i, kind] as const))(
    'never serves alice’s body to bob when the %s carries the option',
    async (_label, i, kind) => {
      const as = (user: string) => send(url, `/shape${i}`, { headers: { 'x-user': user } })
      const alice = await as('alice')
      expect(JSON.parse(alice.text)).toEqual({ user: 'alice', secret: `alice-ssn-${i}` })
      const bob = await as('bob')
      // Before: the option was dropped, and bob got alice's body with `@cache; hit`.
      expect(JSON.parse(bob.text)).toEqual({ user: 'bob', secret: `bob-ssn-${i}` })
      expect(bob.headers['cache-status']).toMatch(kind === 'bypass' ? /bypass/ : /fwd=(uri-)?miss/)
      // The handler is cached all the same: alice's second request is her own entry.
      const again = await as('alice')
      expect(JSON.parse(again.text)).toEqual({ user: 'alice', secret: `alice-ssn-${i}` })
      expect(again.headers['cache-status']).toMatch(/hit/)
    },
  )
})

describe('option names are checked whatever holds them', () => {
  it('refuses a misspelt own non-enumerable option of @CacheResponse(), naming vary', () => {
    const options = { ttl: 60 }
    Object.defineProperty(options, 'varyy', { value: VARY })
    const error = configErrorOf(() => CacheResponse(options))
    expect(error.message).toBe('varyy: not an option of @CacheResponse(); did you mean `vary`?')
  })

  it('refuses frontSkipsAllMiddleware beside a key method of a settings class', () => {
    class FrontKey extends KeyMethod {
      frontSkipsAllMiddleware = true
    }
    expect(configErrorOf(() => CacheResponse(new FrontKey())).setting).toBe('frontSkipsAllMiddleware')
  })
})

describe('CacheModule with a backend instance and a non-enumerable namespace', () => {
  afterEach(async () => {
    await resetCache()
  })

  function withHiddenNamespace(backend: object, namespace: string): CacheModuleOptions {
    const options = { backend } as CacheModuleOptions
    Object.defineProperty(options, 'namespace', { get: () => namespace })
    return options
  }

  it.each(['forRoot', 'forRootAsync'] as const)(
    'refuses it (%s), as an enumerable one is: the shop application never reads billing’s value',
    async (form) => {
      const shared = memoryBackend()
      const apps: INestApplication[] = []
      const errors: unknown[] = []
      try {
        for (const tenant of ['billing', 'shop']) {
          const options = () => withHiddenNamespace(shared, tenant)
          @Module({
            imports: [
              form === 'forRoot'
                ? CacheModule.forRoot(options())
                : CacheModule.forRootAsync({ useFactory: options }),
            ],
          })
          class TenantModule {}
          try {
            apps.push(
              (await NestFactory.createApplicationContext(TenantModule, {
                logger: false,
                abortOnError: false,
              })) as unknown as INestApplication,
            )
          } catch (error) {
            errors.push(error)
          }
        }
        if (apps.length === 2) {
          const [billing, shop] = apps.map((app) => app.get(CACHE_BACKEND))
          await billing!.set('config', 'billing-secret', 60)
          expect(await shop!.get('config')).toBeUndefined()
        }
        expect(errors).toHaveLength(2)
        // Before: both started, and shop read 'billing-secret'.
        expect(errors.map((error) => (error as { setting?: string }).setting)).toEqual([
          'namespace',
          'namespace',
        ])
      } finally {
        for (const app of apps) await app.close()
      }
    },
  )
})
