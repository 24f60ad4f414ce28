import { createHash } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { sourceFingerprint } from '@cache/core/backend'
import { describeFunction as describe, listeningAt } from '@cache/http'
import { CACHE_RESPONSE_OPTIONS } from './tokens.js'

/**
 * Where a `@CacheResponse` handler's entries are made: fingerprints of controllers and methods by
 * their code and every decorator's metadata, so that two handlers, two deployments of different
 * code, or two applications of one process never share entries, while replicas of one app do.
 */

/** The identity of each handler (by controller, then method) as its site names it. */
const identities = new WeakMap<Function, WeakMap<Function, string>>()

/**
 * The order in which classes that describe alike (same name and source) received `@CacheResponse`
 * in this process: the same in every replica of an app (modules load in one order), different for
 * two copies of one class (a controller emitted once per version folder).
 */
const declared = new WeakMap<Function, number>()
const declaredCount = new Map<string, number>()

export function declare(target: object): void {
  const owner = typeof target === 'function' ? target : (target as { constructor?: unknown }).constructor
  if (typeof owner !== 'function' || declared.has(owner)) return
  const text = describe(owner)
  const n = declaredCount.get(text) ?? 0
  declaredCount.set(text, n + 1)
  declared.set(owner, n)
}

type MetadataApi = {
  getMetadata?(key: unknown, target: object, property?: string | symbol): unknown
  getMetadataKeys?(target: object, property?: string | symbol): unknown[]
}

/**
 * A stable text for a metadata value: functions (guards, interceptors, pipes, injected types) by
 * name and source, instances by class and own fields, plain values as they are. Bounded in depth
 * and width; cycles are cut.
 */
export function fingerprintValue(value: unknown, depth = 0, seen = new Set<object>()): string {
  // By code alone: Nest's `mixin()` (behind `AuthGuard('jwt')` and the like) gives each class a
  // random name per process, which replicas of one app would not agree on.
  if (typeof value === 'function') return `fn#${sourceFingerprint(value)}`
  if (typeof value === 'symbol') return `symbol(${value.description ?? ''})`
  if (typeof value === 'bigint') return `${value}n`
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'undefined'
  if (seen.has(value) || depth > 4) return '…'
  seen.add(value)
  try {
    if (Array.isArray(value))
      return `[${value
        .slice(0, 64)
        .map((item) => fingerprintValue(item, depth + 1, seen))
        .join(',')}]`
    if (value instanceof RegExp) return String(value)
    const ctor = (value as { constructor?: unknown }).constructor
    const kind = typeof ctor === 'function' && ctor !== Object ? describe(ctor) : ''
    const fields = Object.keys(value)
      .slice(0, 64)
      .map((key) => `${key}:${fingerprintValue((value as Record<string, unknown>)[key], depth + 1, seen)}`)
    return `${kind}{${fields.join(',')}}`
  } finally {
    seen.delete(value)
  }
}

/** Every metadata entry on `target` (and on `property` of it), except this package's own options. */
function metadataFingerprint(target: object, property?: string): string {
  const api = Reflect as unknown as MetadataApi
  if (typeof api.getMetadataKeys !== 'function' || typeof api.getMetadata !== 'function') return ''
  const keys =
    (property === undefined ? api.getMetadataKeys(target) : api.getMetadataKeys(target, property)) ?? []
  return keys
    .filter((key) => key !== CACHE_RESPONSE_OPTIONS)
    .map((key) => {
      const value =
        property === undefined ? api.getMetadata!(key, target) : api.getMetadata!(key, target, property)
      return `${fingerprintValue(key)}=${fingerprintValue(key === ROUTE_ARGS_METADATA ? routeArguments(value) : value)}`
    })
    .join(';')
}

/** Nest's metadata key for a handler's parameters (`@Param`, `@Query`, custom decorators, with their pipes). */
const ROUTE_ARGS_METADATA = '__routeArguments__'

/**
 * A handler's parameters without the random id that `createParamDecorator` puts in the name of
 * each custom parameter (one per process): the kind, index, data, pipes and factory remain.
 */
function routeArguments(value: unknown): unknown {
  if (value === null || typeof value !== 'object') return value
  const out: Record<string, unknown> = {}
  for (const [key, entry] of Object.entries(value)) out[key.replace(/^.*(?=__customRouteArgs__)/, '')] = entry
  return out
}

/**
 * Where an entry is made: the controller and the method by name and source, what their decorators
 * say (every metadata entry on both: path, version, host, method, guards, interceptors, pipes,
 * injected types; global guards are not in a route's metadata: they guard every route alike), the
 * controller's rank among copies of its class in this process and the address the server listens at
 * (two apps of one process never share entries; apps of one server, on platform-fastify, cache only
 * under distinct `keyPrefix`es). Replicas of one app in several processes run the same code with
 * the same decorators, so they share.
 */
export function siteOf(owner: Function, handler: Function, req: IncomingMessage): string {
  let byHandler = identities.get(owner)
  if (byHandler === undefined) {
    byHandler = new WeakMap()
    identities.set(owner, byHandler)
  }
  let identity = byHandler.get(handler)
  if (identity === undefined) {
    identity = `nest ${describe(owner)}.${describe(handler)} copy ${declared.get(owner) ?? 0} meta ${decoratorsHash(owner, handler)}`
    byHandler.set(handler, identity)
  }
  return `${identity} at ${listeningAt(req.socket)}`
}

/**
 * A route handler as the application's fingerprint counts it: the controller and the method by
 * name and code, and what their decorators recorded (as in {@link siteOf}, without the address
 * nor the copy rank: two copies of one class are told apart by where they stand in the
 * application).
 */
export function handlerFingerprint(owner: Function, handler: Function): string {
  return `${describe(owner)}.${describe(handler)} meta ${decoratorsHash(owner, handler)}`
}

/**
 * Every metadata entry of the controller and the method, hashed: once per handler for its site
 * (kept in its identity), and once for the application's fingerprint.
 */
function decoratorsHash(owner: Function, handler: Function): string {
  const decorators = [
    metadataFingerprint(owner),
    metadataFingerprint(handler),
    // Parameters (with their pipes) are kept on the class, their types on the prototype.
    handler.name === '' ? '' : metadataFingerprint(owner, handler.name),
    typeof owner.prototype === 'object' && owner.prototype !== null && handler.name !== ''
      ? metadataFingerprint(owner.prototype, handler.name)
      : '',
  ].join('|')
  return createHash('sha256').update(decorators).digest('base64url').slice(0, 22)
}
