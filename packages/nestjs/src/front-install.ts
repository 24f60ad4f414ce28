import { createHash } from 'node:crypto'
import type { Server } from 'node:http'
import { VersioningType, type VersioningOptions } from '@nestjs/common'
import type { ApplicationConfig, HttpAdapterHost, ModulesContainer } from '@nestjs/core'
import { type CacheBackend, CacheConfigError } from '@cache/core'
import { toBackend } from '@cache/core/backend'
import { fastifyInstanceOptions } from '@cache/http'
import { type CacheResponseOptions, cacheOptionsOf, httpCacheFor } from './cache-response.js'
import { fastifyChoosingRoute } from './fastify-routes.js'
import { FrontDoor } from './front.js'
import { fingerprintValue, handlerFingerprint } from './handler-sites.js'
import { type RouteHandler, routeHandlers } from './route-handlers.js'
import { chosenByRequest } from './versioning.js'

/**
 * Puts a {@link FrontDoor} before the platform on the application's Node server, for the handlers
 * marked `frontSkipsAllMiddleware` (none: nothing is installed). Runs once routes are registered
 * and versioning is settled. Custom versioning picks a handler by a function of the platform's
 * request, which the front cannot run, as do Fastify's `rewriteUrl` and route constraints other
 * than `host`: a `CacheConfigError` stops the application.
 */
export function installFront(
  host: HttpAdapterHost,
  modules: ModulesContainer,
  config: ApplicationConfig,
  backend: CacheBackend,
): void {
  const handlers = routeHandlers(modules)
  const flagged = flaggedHandlers(handlers)
  if (flagged.length === 0) return
  const versioning = config.getVersioning()
  if (versioning?.type === VersioningType.CUSTOM)
    throw new CacheConfigError(
      'frontSkipsAllMiddleware',
      `${flagged[0]!.name} is marked frontSkipsAllMiddleware, but the application uses custom versioning: the handler of a URL is chosen by a function of the request that the front cannot run, so it could answer one version's request with another's entry. Remove the flag, or front: true from CacheModule`,
    )
  if (host.httpAdapter?.getType?.() === 'fastify')
    refuseFastifyRouting(
      host.httpAdapter.getInstance(),
      (host.httpAdapter as { versionConstraint?: unknown }).versionConstraint,
      handlers,
      flagged[0]!.name,
      versioning,
    )
  const routingHeaders =
    versioning?.type === VersioningType.HEADER
      ? [versioning.header.toLowerCase()]
      : versioning?.type === VersioningType.MEDIA_TYPE
        ? ['accept']
        : []
  const door = new FrontDoor(routingHeaders, applicationFingerprint(handlers, config))
  for (const { options } of flagged) {
    const own = options.backend ?? backend
    // Only an in-process backend answers before the request goes on; the others leave it to Nest.
    if (toBackend(own).sync === undefined) continue
    // Replayed as the interceptor replays: private when the versioning header chose the handler.
    door.add(httpCacheFor(options, own, chosenByRequest(versioning)), own)
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

/** Nest's metadata key for `@RouteConstraints` (platform-fastify). */
const FASTIFY_ROUTE_CONSTRAINTS = '__fastify_route_constraints__'

/**
 * On Fastify, routing that depends on the request in ways the front cannot see stops the
 * application: `rewriteUrl` (a function of the request that may send one URL to another handler
 * for some clients: the front would answer them with the entry of the URL as it arrived), and a
 * route constraint other than find-my-way's built-in `host` (the key holds the host; a strategy
 * of the application's own, on a header, even one named `host`, may route one URL to two
 * handlers). Besides `@RouteConstraints`, the routes as the router holds them (and as the module's
 * `onRoute` hook saw them) are read now and again once Fastify is ready (an `onRoute` hook may
 * have made a constraint of a route's config, a route declared on the instance or in a plugin
 * registered later may have one): `version` there is Nest's header or media-type versioning,
 * whose header the front's key holds; any other name, or `version` under another versioning,
 * makes `app.listen()` reject.
 */
function refuseFastifyRouting(
  instance: unknown,
  /** The `version` strategy Nest's FastifyAdapter made, which chooses by the versioning header. */
  adapterVersionStrategy: unknown,
  handlers: RouteHandler[],
  marked: string,
  versioning: VersioningOptions | undefined,
): void {
  if (fastifyInstanceOptions(instance)?.rewriteUrl !== undefined)
    throw new CacheConfigError(
      'frontSkipsAllMiddleware',
      `${marked} is marked frontSkipsAllMiddleware, but the Fastify instance has rewriteUrl: it may route a URL to another handler for some requests, before any route runs, and the front answers before it with the entry of the URL as it arrived. Remove the flag, front: true from CacheModule, or rewriteUrl`,
    )
  const api = Reflect as unknown as { getMetadata?(key: unknown, target: object): unknown }
  for (const { owner, name, handler } of handlers) {
    const constraints = api.getMetadata?.(FASTIFY_ROUTE_CONSTRAINTS, handler)
    if (constraints === null || typeof constraints !== 'object') continue
    const other = Object.keys(constraints).find((constraint) => constraint !== 'host')
    if (other !== undefined)
      throw new CacheConfigError(
        'frontSkipsAllMiddleware',
        `${marked} is marked frontSkipsAllMiddleware, but ${owner.name}.${name} has the route constraint ${other}: Fastify may route one URL to two handlers by a function of the request that the front cannot run, so it could answer a request with another handler's entry. Remove the flag, front: true from CacheModule, or the constraint`,
      )
  }
  // `version` constraints choose by the versioning header only through the strategy Nest's adapter
  // gives the Fastify it creates; on an instance of the app's own, find-my-way's built-in one, or
  // a strategy of the app's, chooses by something else (Accept-Version), which the key does not hold.
  const router = fastifyInstanceOptions(instance)?.routerOptions as
    | { constraints?: { version?: unknown } }
    | undefined
  const version = router?.constraints?.version
  const nestVersionStrategy = version !== undefined && version === adapterVersionStrategy
  const keyed =
    nestVersionStrategy &&
    (versioning?.type === VersioningType.HEADER || versioning?.type === VersioningType.MEDIA_TYPE)
  const check = () => refuseRouterConstraints(instance, marked, keyed)
  check()
  const fastify = instance as {
    addHook?(name: 'onReady', hook: (done: (error?: Error) => void) => void): void
  }
  try {
    fastify.addHook?.('onReady', (done) => {
      try {
        check()
        done()
      } catch (error) {
        done(error as Error)
      }
    })
  } catch {
    // Ready already: its routes were final for the check above.
  }
}

/**
 * Stops the application when a route of the router (listed, or seen by the `onRoute` hook the
 * module installs) has a constraint the front's key does not hold: any but find-my-way's built-in
 * `host` (a `host` strategy of the application's own too), and `version` unless keyed.
 */
function refuseRouterConstraints(instance: unknown, marked: string, versionKeyed: boolean): void {
  const choosing =
    instance !== null && typeof instance === 'object'
      ? fastifyChoosingRoute(instance, versionKeyed ? 'version' : undefined)
      : 'unreadable'
  if (choosing === 'unreadable')
    throw new CacheConfigError(
      'frontSkipsAllMiddleware',
      `${marked} is marked frontSkipsAllMiddleware, but the routes of the Fastify instance cannot be read (fastify.printRoutes() missing, or in a format this version of @cache/nestjs does not know, or a wildcard route declared on the Fastify instance before NestFactory.create, beside which the listing hides any other wildcard route and its constraints): whether Fastify routes one URL to two handlers by a constraint cannot be checked. Remove the flag or front: true from CacheModule, declare the instance's wildcard routes after NestFactory.create, or use the Fastify version this package is tested with`,
    )
  if (choosing !== undefined)
    throw new CacheConfigError(
      'frontSkipsAllMiddleware',
      `${marked} is marked frontSkipsAllMiddleware, but the Fastify route ${choosing.route} has a constraint ${choosing.constraint} (declared on the instance, by an onRoute hook, or with @RouteConstraints; host counts when the application's host strategy is its own): Fastify may route one URL to two handlers by a function of the request that the front cannot run, so it could answer a request with another handler's entry. Remove the flag, front: true from CacheModule, or the constraint`,
    )
}

/** The route handlers whose `@CacheResponse` (of the method, else of the controller) sets the flag. */
function flaggedHandlers(handlers: RouteHandler[]): { name: string; options: CacheResponseOptions }[] {
  const found: { name: string; options: CacheResponseOptions }[] = []
  for (const { owner, name, handler } of handlers) {
    const options = cacheOptionsOf(handler) ?? cacheOptionsOf(owner)
    if (options?.frontSkipsAllMiddleware === true) found.push({ name: `${owner.name}.${name}`, options })
  }
  return found
}

/**
 * What decides which handler answers a URL and what it answers, for the whole application: every
 * route handler in registration order (controller and method by name and code, every decorator's
 * metadata: path, version, host, guards, …; its module's path), the global prefix and versioning.
 * An application restarted in the process on the same address with other handlers (HMR, a test
 * suite reusing a port) gets another fingerprint, so its front never answers with the entries the
 * other one made; the same code restarted, or a replica, gets the same one.
 */
function applicationFingerprint(handlers: RouteHandler[], config: ApplicationConfig): string {
  const parts = [
    `prefix ${fingerprintValue(config.getGlobalPrefix())} ${fingerprintValue(config.getGlobalPrefixOptions())}`,
    `versioning ${fingerprintValue(config.getVersioning() ?? null)}`,
  ]
  for (const { owner, name, handler, modulePath } of handlers)
    parts.push(`${fingerprintValue(modulePath ?? null)} ${name} ${handlerFingerprint(owner, handler)}`)
  return createHash('sha256').update(parts.join('\n')).digest('base64url').slice(0, 22)
}
