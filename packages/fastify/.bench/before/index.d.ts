import { IncomingHttpHeaders } from 'node:http';
import { Duration } from '@cache/core';
import { HttpCacheOptions, HttpCache } from '@cache/http';
export { invalidateResponse, invalidateResponsePrefix, invalidateTags } from '@cache/http';
import { FastifyRequest, FastifyPluginCallback } from 'fastify';

/**
 * Options of one route's cache, in `config: { cache }` (and defaults for every route in the
 * plugin's options): the options of `@cache/http`, the same as `@cache/express`'s. The `key`,
 * `tags` and `bypass` functions receive the Fastify request.
 */
type RouteCacheOptions = HttpCacheOptions<FastifyRequest>;
/**
 * A route's `config.cache`: `true` (the plugin's defaults), a TTL (`60`, `'5m'`), options, or
 * `false` (not cached, the default for a route without it).
 */
type RouteCacheConfig = boolean | Duration | RouteCacheOptions;
/** Options of {@link cachePlugin}: defaults for every cached route, and where the API goes. */
interface CachePluginOptions extends RouteCacheOptions {
    /**
     * The name of the instance decorator holding {@link FastifyResponseCache}. Another plugin that
     * decorates `cache` (`@fastify/caching` does) makes registration fail with a
     * `CacheConfigError` naming this option; choose another name then (typed as `cache` only).
     * Default: `'cache'`.
     */
    decorateAs?: string;
}
/** `fastify.cache`: invalidation across every cached route. */
interface FastifyResponseCache {
    /**
     * Removes the stored responses of a URL (`https://host/path?query`, or a path with `host`),
     * every variant (of the response's `Vary` and of the headers of the routes' `vary` option),
     * under every `keyPrefix` and backend of the app's cached routes, in every process sharing the
     * backend. `headers` name the variant whose entry is deleted at once to free its space (the
     * others stop being served). Reaches the plugin's backend (its `backend` option, else the default
     * cache) too, with no cached route resolved yet (a writer service, a call before `ready()`).
     *
     * Resolves `true` when this process deleted a stored entry of the URL: one made at a site this
     * process has seen (its own routes', or those of another app of this process). `false` says
     * nothing about other processes: their entries of the URL stop being served all the same (the
     * URL's generation is renewed in the backend), but this process cannot tell whether they had
     * one, so a writer service invalidating its readers' pages gets `false`.
     */
    invalidate(url: string, options?: {
        host?: string;
        headers?: IncomingHttpHeaders;
    }): Promise<boolean>;
    /**
     * Invalidates every response stored under `prefix` (`api` reaches `api:users`, not `apiv2`), in
     * the backends of the cached routes and the plugin's own (see {@link invalidate}).
     */
    invalidatePrefix(prefix: string): Promise<void>;
    /**
     * Invalidates every response stored with one of these tags, in the backends of the cached routes
     * and the plugin's own (see {@link invalidate}).
     */
    invalidateTags(tags: readonly string[]): Promise<void>;
    /** The caches of the routes, one per `config.cache` (stats, events, `invalidateKey`). */
    readonly routes: ReadonlyMap<string, HttpCache<FastifyRequest>>;
}
declare module 'fastify' {
    interface FastifyContextConfig {
        /** Cache this route's responses: `true`, a TTL, or options (see `@cache/fastify`). */
        cache?: RouteCacheConfig;
    }
    interface FastifyInstance {
        /** Invalidation of the responses the cache plugin stored. */
        cache: FastifyResponseCache;
    }
}
/**
 * The response cache for Fastify 5. Register it before the routes it caches (it sees routes
 * through `onRoute`); a route is cached when its `config.cache` is set:
 *
 * ```ts
 * await app.register(cachePlugin, { backend: memoryBackend() })
 * app.get('/products', { config: { cache: { ttl: 60, tags: ['products'] } } }, handler)
 * ```
 *
 * A hit is answered in the route's last `preHandler` hook, once every hook before it (guards
 * included) let the request through, with one write of the stored status, headers and bytes.
 * Storability is decided on the response as the client receives it, after every `onSend` hook.
 */
declare const plugin: FastifyPluginCallback<CachePluginOptions>;

export { type CachePluginOptions, type FastifyResponseCache, type RouteCacheConfig, type RouteCacheOptions, plugin as cachePlugin, plugin as default };
