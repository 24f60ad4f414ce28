import {
  type DynamicModule,
  type FactoryProvider,
  Inject,
  Injectable,
  type ModuleMetadata,
  type OnApplicationBootstrap,
  type OnApplicationShutdown,
} from '@nestjs/common'
import { ApplicationConfig, HttpAdapterHost, ModulesContainer } from '@nestjs/core'
import {
  type CacheBackend,
  CacheConfigError,
  type ConfigureOptions,
  configureCache,
  getBackend,
  type MinimalBackend,
  resetCache,
} from '@cache/core'
import {
  assertKnownOptions,
  readOptions,
  CONFIGURE_OPTION_HINTS,
  CONFIGURE_OPTION_NAMES,
  isMinimalBackend,
  optionNames,
} from '@cache/core/backend'
import { noteArrivals } from '@cache/http'
import { watchFastifyRoutes } from './fastify-routes.js'
import { installFront } from './front-install.js'
import { noteFastifyApplication, routeHandlers } from './route-handlers.js'
import { CACHE_BACKEND } from './tokens.js'
import { moduleBackendTarget } from './invalidation-targets.js'
import { noteVersioning } from './versioning.js'

/**
 * What {@link CacheModule.forRoot} accepts: `configureCache`'s options from `@cache/core` — a
 * `backend` instance or a spec string (`'memory,redis'`, read with the same rules as
 * `CACHE_BACKEND`), `namespace`, `defaultTtl`, `redisUrl`, … — plus how the module is seen.
 */
export interface CacheModuleOptions extends ConfigureOptions {
  /**
   * Provide the backend to every module of the application, without importing `CacheModule`
   * into each (as `@nestjs/cache-manager`'s `isGlobal`). Default: `false`.
   */
  isGlobal?: boolean
  /**
   * Close the backend when the application shuts down (`app.close()`, or a signal with
   * `enableShutdownHooks()`). A backend never closes a client you passed into it. Default: `true`.
   */
  closeOnShutdown?: boolean
  /**
   * Serve fresh hits of the handlers marked `@CacheResponse({ frontSkipsAllMiddleware: true })`
   * in front of Nest: when the application starts (`app.init()` / `app.listen()`), a listener is
   * put before the platform's on the Node server (`app.getHttpServer()`), which answers those hits
   * from an in-process backend (memory) before Nest and Express or Fastify see the request —
   * **skipping every middleware, guard, interceptor, pipe and filter** — and hands every other
   * request on untouched. See the README, "Serving hits in front of Nest". Default: `false`.
   */
  front?: boolean
}

/**
 * What a `forRootAsync` factory may return: what `forRoot` accepts, without `isGlobal` (which goes
 * beside `useFactory`).
 */
export type CacheModuleFactoryResult =
  | Omit<CacheModuleOptions, 'isGlobal'>
  | CacheBackend
  | MinimalBackend
  | string

/** What {@link CacheModule.forRootAsync} accepts: a factory of the options, as Nest's other modules take. */
export interface CacheModuleAsyncOptions extends Pick<ModuleMetadata, 'imports'> {
  /** Builds the options from the providers in `inject` (a `ConfigService`, …). May be async. */
  useFactory: (...args: any[]) => CacheModuleFactoryResult | Promise<CacheModuleFactoryResult>
  /** Providers handed to `useFactory`, in order. Default: none. */
  inject?: FactoryProvider['inject']
  /** As {@link CacheModuleOptions.isGlobal}; decided here because Nest must know it before the factory runs. Default: `false`. */
  isGlobal?: boolean
}

/** `configureCache()`'s option names, which pass through, and the module's own. */
const MODULE_OPTION_NAMES = optionNames<CacheModuleOptions>({
  ...CONFIGURE_OPTION_NAMES,
  isGlobal: true,
  closeOnShutdown: true,
  front: true,
})

const ASYNC_OPTION_NAMES = optionNames<CacheModuleAsyncOptions>({
  imports: true,
  useFactory: true,
  inject: true,
  isGlobal: true,
})

/** The backend a module built, and whether it closes it. */
interface ModuleCache {
  backend: CacheBackend
  closeOnShutdown: boolean
  front: boolean
}
const MODULE_CACHE = Symbol.for('@cache/nestjs:module-cache')

/**
 * What `forRoot` was given, or `forRootAsync`'s factory returned, as the module's options: a
 * backend instance or a spec string (`'memory,redis'`) is `{ backend }`; options are checked for
 * names that are not options. Anything else is a `CacheConfigError` saying what it was.
 *
 * @param source the words before what was given: `CacheModule.forRoot() was given`
 * @param where what the options are of, for the error naming one that is not an option
 */
function moduleOptions(given: unknown, source: string, where: string): CacheModuleOptions {
  if (typeof given === 'string' || isMinimalBackend(given))
    return { backend: given as CacheModuleOptions['backend'] }
  const expected =
    "expected an options object ({ backend, namespace, … }), a backend instance or a spec string ('memory,redis')"
  if (given === null || typeof given !== 'object' || Array.isArray(given))
    throw new CacheConfigError('CacheModule', `${source} ${describeGiven(given)}: ${expected}`)
  const prototype = Object.getPrototypeOf(given)
  const plain = prototype === Object.prototype || prototype === null
  // A service or client returned by mistake (the injected ConfigService, an ioredis client): its
  // fields are not misspelt options, so the error names what it is.
  if (!plain && Object.keys(given).some((name) => !MODULE_OPTION_NAMES.has(name)))
    throw new CacheConfigError('CacheModule', `${source} ${describeGiven(given)}: ${expected}`)
  // Read by name into a plain copy (a settings class's getters, inherited and non-enumerable
  // properties): only the copy is used below, where it is destructured and spread.
  return readOptions(given, MODULE_OPTION_NAMES, where, CONFIGURE_OPTION_HINTS) as CacheModuleOptions
}

function describeGiven(value: unknown): string {
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'function') return 'a function'
  if (value !== null && typeof value === 'object') {
    const name = Object.getPrototypeOf(value)?.constructor?.name
    if (typeof name === 'string' && name !== '')
      return `${/^[AEIOU]/.test(name) ? 'an' : 'a'} ${name} instance`
  }
  return typeof value === 'symbol' || typeof value === 'bigint' ? `a ${typeof value}` : String(value)
}

/** Builds the backend from checked options and makes it the process's default cache. */
function createModuleCache(options: CacheModuleOptions): ModuleCache {
  const { isGlobal: _global, closeOnShutdown = true, front = false, ...configure } = options
  if (typeof closeOnShutdown !== 'boolean')
    throw new CacheConfigError('closeOnShutdown', `expected a boolean, got ${String(closeOnShutdown)}`)
  if (typeof front !== 'boolean')
    throw new CacheConfigError('front', `expected a boolean, got ${String(front)}`)
  // `@cache` methods, `cached()` functions and responses without a `backend` of their own use this one.
  const backend = configureCache(configure)
  return { backend, closeOnShutdown, front }
}

/** Closes the module's backend when the application shuts down. */
class CacheLifecycle implements OnApplicationShutdown {
  constructor(private readonly cache: ModuleCache) {}

  async onApplicationShutdown(): Promise<void> {
    if (!this.cache.closeOnShutdown) return
    // Still the default cache: forget it too, so nothing later uses a closed backend.
    if (getBackend() === this.cache.backend) await resetCache()
    else await this.cache.backend.close()
  }
}
Injectable()(CacheLifecycle)
Inject(MODULE_CACHE)(CacheLifecycle, undefined as never, 0)

/**
 * Once the application's routes are registered: notes its versioning for its controllers, and
 * installs the front door (`front: true`).
 */
class FrontInstaller implements OnApplicationBootstrap {
  constructor(
    private readonly cache: ModuleCache,
    private readonly adapterHost: HttpAdapterHost,
    private readonly modules: ModulesContainer,
    private readonly config: ApplicationConfig,
  ) {}

  onApplicationBootstrap(): void {
    // On platform-express, the server notes the target each request arrives with from the start
    // (the interceptor bypasses a request rewritten before Express, or one it was not noted of).
    const adapter = this.adapterHost.httpAdapter
    if (adapter?.getType?.() === 'express') noteArrivals(adapter.getHttpServer())
    // For interceptors made with `new`, which have no application config to read it from.
    noteVersioning(
      routeHandlers(this.modules).map((route) => route.owner),
      this.config,
    )
    if (!this.cache.front) return
    installFront(this.adapterHost, this.modules, this.config, this.cache.backend)
  }
}
Injectable()(FrontInstaller)
Inject(MODULE_CACHE)(FrontInstaller, undefined as never, 0)
Inject(HttpAdapterHost)(FrontInstaller, undefined as never, 1)
Inject(ModulesContainer)(FrontInstaller, undefined as never, 2)
Inject(ApplicationConfig)(FrontInstaller, undefined as never, 3)

/**
 * On platform-fastify, notes each request's target as sent and as routed before any hook of the
 * app runs (Fastify's `rewriteUrl`, a hook rewriting `request.raw.url`): `@CacheResponse` keys on
 * the target as sent and bypasses a rewritten one. Installed as the module is created, before Nest
 * registers middleware and routes (the instances it encapsulates copy the root's hooks). The
 * application is noted on its server with its cached handlers' `keyPrefix`es, and its routes are
 * watched from here on (`watchFastifyRoutes`: constraints, a `host` strategy of its own).
 */
class FastifyTargets {
  constructor(adapterHost: HttpAdapterHost, modules: ModulesContainer) {
    const adapter = adapterHost?.httpAdapter
    if (adapter?.getType?.() !== 'fastify') return
    noteFastifyApplication(adapter.getInstance(), modules)
    watchFastifyRoutes(adapter.getInstance())
  }
}
Injectable()(FastifyTargets)
Inject(HttpAdapterHost)(FastifyTargets, undefined as never, 0)
Inject(ModulesContainer)(FastifyTargets, undefined as never, 1)

/**
 * The cache of a Nest application: builds the backend, makes it the default cache (the one
 * `@cache` methods and `@CacheResponse` handlers use unless given their own), provides it to
 * services as {@link CACHE_BACKEND} / `@InjectCache()`, and closes it on shutdown.
 *
 * ```ts
 * @Module({ imports: [CacheModule.forRoot({ backend: 'memory,redis', isGlobal: true })] })
 * export class AppModule {}
 * ```
 */
// biome-ignore lint/complexity/noStaticOnlyClass: Nest modules are classes, configured by static forRoot methods
export class CacheModule {
  /**
   * @param options a backend instance, a spec string (`'memory,redis'`), or
   *   {@link CacheModuleOptions}. Nothing: built from `CACHE_BACKEND` and the other `CACHE_*`
   *   variables (default `memory`).
   */
  static forRoot(options: CacheModuleOptions | CacheBackend | MinimalBackend | string = {}): DynamicModule {
    // Checked now, while the application's modules are declared; built when Nest creates them.
    const resolved = moduleOptions(options, 'CacheModule.forRoot() was given', 'CacheModule.forRoot()')
    return dynamicModule(
      { provide: MODULE_CACHE, useFactory: () => createModuleCache(resolved) },
      resolved.isGlobal === true,
      [],
    )
  }

  /**
   * As {@link forRoot}, with options built by a factory from other providers. The factory may
   * return what `forRoot` accepts (options, a backend instance, a spec string); `isGlobal` goes
   * beside `useFactory`, since Nest decides it before the factory runs (a factory that returns a
   * different `isGlobal` is refused).
   */
  static forRootAsync(options: CacheModuleAsyncOptions): DynamicModule {
    if (typeof options?.useFactory !== 'function')
      throw new CacheConfigError('useFactory', 'CacheModule.forRootAsync needs a useFactory function')
    assertKnownOptions(options, ASYNC_OPTION_NAMES, 'CacheModule.forRootAsync()')
    return dynamicModule(
      {
        provide: MODULE_CACHE,
        useFactory: async (...args: unknown[]) => {
          const resolved = moduleOptions(
            await options.useFactory(...args),
            'the factory of CacheModule.forRootAsync() returned',
            'the options of CacheModule.forRootAsync()',
          )
          // Ignored if it differed from the decision already made: refused then.
          if (resolved.isGlobal !== undefined && (resolved.isGlobal === true) !== (options.isGlobal === true))
            throw new CacheConfigError(
              'isGlobal',
              'returned by the factory comes too late (Nest decides it before the factory runs): isGlobal goes beside useFactory in forRootAsync({ isGlobal, useFactory })',
            )
          return createModuleCache(resolved)
        },
        inject: options.inject ?? [],
      },
      options.isGlobal === true,
      options.imports ?? [],
    )
  }
}

/**
 * The module `forRoot` and `forRootAsync` return (a function outside the class: a class naming
 * itself in its body is renamed by the bundler, and Nest knows modules by their class name).
 */
function dynamicModule(
  cache: FactoryProvider,
  global: boolean,
  imports: NonNullable<ModuleMetadata['imports']>,
): DynamicModule {
  return {
    module: CacheModule,
    global,
    imports,
    providers: [
      cache,
      {
        provide: CACHE_BACKEND,
        useFactory: (c: ModuleCache) => moduleBackendTarget(c.backend),
        inject: [MODULE_CACHE],
      },
      CacheLifecycle,
      FrontInstaller,
      FastifyTargets,
    ],
    exports: [CACHE_BACKEND],
  }
}
