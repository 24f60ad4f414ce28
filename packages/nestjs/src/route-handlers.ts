import type { ModulesContainer } from '@nestjs/core'
import { declareFastifyAppPrefixes, noteFastifyTargets, resolveHttpCacheOptions } from '@cache/http'
import { CACHE_RESPONSE_OPTIONS } from './tokens.js'

/** Nest's metadata key for a route's path: a method that has it is a route handler. */
const PATH_METADATA = 'path'
/** Nest's metadata key for a module's path (`RouterModule`), alone or followed by the application's id. */
const MODULE_PATH = '__module_path__'

/** A route handler of the application: its controller, its method's name and function, its module's path. */
export interface RouteHandler {
  owner: Function
  name: string
  handler: Function
  modulePath: unknown
}

/** Every route handler of the application, in the order Nest registers their routes. */
export function routeHandlers(modules: ModulesContainer): RouteHandler[] {
  const found: RouteHandler[] = []
  const api = Reflect as unknown as { getMetadata?(key: unknown, target: object): unknown }
  if (api.getMetadata === undefined) return found
  for (const module of modules.values()) {
    // As Nest's RoutesResolver reads it: a RouterModule path for this application, else the module's own.
    const modulePath =
      api.getMetadata(MODULE_PATH + modules.applicationId, module.metatype) ??
      api.getMetadata(MODULE_PATH, module.metatype)
    for (const wrapper of module.controllers.values()) {
      const owner = wrapper.metatype
      if (typeof owner !== 'function') continue
      const seen = new Set<string>()
      for (
        let proto = owner.prototype;
        proto && proto !== Object.prototype;
        proto = Object.getPrototypeOf(proto)
      ) {
        for (const name of Object.getOwnPropertyNames(proto)) {
          if (name === 'constructor' || seen.has(name)) continue
          seen.add(name)
          const handler = Object.getOwnPropertyDescriptor(proto, name)?.value
          if (typeof handler !== 'function' || api.getMetadata(PATH_METADATA, handler) === undefined) continue
          found.push({ owner, name, handler, modulePath })
        }
      }
    }
  }
  return found
}

/**
 * The `keyPrefix` of every handler of the application that `@CacheResponse` caches (of the
 * method, else of the controller), known before any request.
 */
export function cachedKeyPrefixes(modules: ModulesContainer): Set<string> {
  const api = Reflect as unknown as { getMetadata?(key: unknown, target: object): unknown }
  const prefixes = new Set<string>()
  for (const { owner, handler } of routeHandlers(modules)) {
    const options = (api.getMetadata?.(CACHE_RESPONSE_OPTIONS, handler) ??
      api.getMetadata?.(CACHE_RESPONSE_OPTIONS, owner)) as { keyPrefix?: string } | undefined
    if (options !== undefined)
      prefixes.add(resolveHttpCacheOptions({ keyPrefix: options.keyPrefix }).keyPrefix)
  }
  return prefixes
}

/**
 * On platform-fastify: notes each request's target before any hook of the application runs, and
 * the application on its server with the prefixes of its cached handlers (applications sharing a
 * server cache only under distinct ones). Without the modules the prefixes are unknown.
 */
export function noteFastifyApplication(instance: unknown, modules: ModulesContainer | undefined): void {
  noteFastifyTargets(instance)
  if (modules !== undefined) declareFastifyAppPrefixes(instance, cachedKeyPrefixes(modules))
}
