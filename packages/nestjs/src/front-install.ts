import type { Server } from 'node:http'
import { VersioningType } from '@nestjs/common'
import type { ApplicationConfig, HttpAdapterHost, ModulesContainer } from '@nestjs/core'
import { type CacheBackend, CacheConfigError } from '@cache/core'
import { toBackend } from '@cache/core/backend'
import { type CacheResponseOptions, cacheOptionsOf, httpCacheFor } from './cache-response.js'
import { FrontDoor } from './front.js'

/** Nest's metadata key for a route's path: a method that has it is a route handler. */
const PATH_METADATA = 'path'

/**
 * Puts a {@link FrontDoor} before the platform on the application's Node server, for the handlers
 * marked `frontSkipsAllMiddleware` (none: nothing is installed). Runs once routes are registered
 * and versioning is settled. Custom versioning picks a handler by a function of the platform's
 * request, which the front cannot run: a `CacheConfigError` stops the application.
 */
export function installFront(
  host: HttpAdapterHost,
  modules: ModulesContainer,
  config: ApplicationConfig,
  backend: CacheBackend,
): void {
  const flagged = flaggedHandlers(modules)
  if (flagged.length === 0) return
  const versioning = config.getVersioning()
  if (versioning?.type === VersioningType.CUSTOM)
    throw new CacheConfigError(
      'frontSkipsAllMiddleware',
      `${flagged[0]!.name} is marked frontSkipsAllMiddleware, but the application uses custom versioning: the handler of a URL is chosen by a function of the request that the front cannot run, so it could answer one version's request with another's entry. Remove the flag, or front: true from CacheModule`,
    )
  const routingHeaders =
    versioning?.type === VersioningType.HEADER
      ? [versioning.header.toLowerCase()]
      : versioning?.type === VersioningType.MEDIA_TYPE
        ? ['accept']
        : []
  const door = new FrontDoor(routingHeaders)
  for (const { options } of flagged) {
    const own = options.backend ?? backend
    // Only an in-process backend answers before the request goes on; the others leave it to Nest.
    if (toBackend(own).sync === undefined) continue
    door.add(httpCacheFor(options, own), own)
  }
  if (door.size === 0) return
  const server = host.httpAdapter?.getHttpServer() as Server | undefined
  if (server === undefined || typeof server.listeners !== 'function')
    throw new CacheConfigError(
      'front',
      'the application has no Node HTTP server to serve in front of (CacheModule front: true works on platform-express and platform-fastify)',
    )
  door.install(server)
}

/** The route handlers whose `@CacheResponse` (of the method, else of the controller) sets the flag. */
function flaggedHandlers(modules: ModulesContainer): { name: string; options: CacheResponseOptions }[] {
  const found: { name: string; options: CacheResponseOptions }[] = []
  const api = Reflect as unknown as { getMetadata?(key: unknown, target: object): unknown }
  for (const module of modules.values()) {
    for (const wrapper of module.controllers.values()) {
      const type = wrapper.metatype
      if (typeof type !== 'function' || api.getMetadata === undefined) continue
      const ofClass = cacheOptionsOf(type)
      const seen = new Set<string>()
      for (
        let proto = type.prototype;
        proto && proto !== Object.prototype;
        proto = Object.getPrototypeOf(proto)
      ) {
        for (const name of Object.getOwnPropertyNames(proto)) {
          if (name === 'constructor' || seen.has(name)) continue
          seen.add(name)
          const method = Object.getOwnPropertyDescriptor(proto, name)?.value
          if (typeof method !== 'function' || api.getMetadata(PATH_METADATA, method) === undefined) continue
          const options = cacheOptionsOf(method) ?? ofClass
          if (options?.frontSkipsAllMiddleware === true) found.push({ name: `${type.name}.${name}`, options })
        }
      }
    }
  }
  return found
}
