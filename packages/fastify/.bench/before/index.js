// src/plugin.ts
import { createHash, randomUUID } from "crypto";
import {
  CacheConfigError,
  CacheMissingPackageError,
  getBackend,
  invalidateTags
} from "@cache/core";
import {
  assertKnownOptions,
  isOptionsObject,
  nearestName,
  optionNames,
  optionValue,
  settingNames,
  toBackend
} from "@cache/core/backend";
import {
  answerFromResult,
  describeFunction,
  fastifyArrivedLines,
  fastifyHostKeyPart,
  fastifyParsesQueriesItself,
  fastifyQueryReplaced,
  fastifyRewrite,
  fastifySharedServerBypass,
  fastifyTarget,
  HANDLER_ERROR,
  HTTP_CACHE_OPTION_NAMES,
  HttpCache,
  invalidateResponse,
  invalidateResponsePrefix,
  injectRefresh,
  noteFastifyAppPrefix,
  noteFastifyQueryBeforeValidation,
  noteFastifyTargets,
  recordNodeResponse,
  refreshArrivedLines,
  resolveHttpCacheOptions,
  takeFastifyRefresh,
  trackFastifyReplyHeaders
} from "@cache/http";
import fp from "fastify-plugin";
var PLUGIN_OPTION_NAMES = optionNames({
  ...HTTP_CACHE_OPTION_NAMES,
  decorateAs: true,
  prefix: true,
  logLevel: true,
  logSerializers: true,
  skipOverride: true
});
var ROUTE_OPTION_NAMES = optionNames(HTTP_CACHE_OPTION_NAMES);
var INVALIDATE_NAMES = optionNames({
  host: true,
  headers: true
});
var register = (fastify, options, done) => {
  let defaults;
  let pluginBackend;
  let decorateAs;
  try {
    ;
    ({ defaults, backend: pluginBackend } = pluginDefaults(options));
    const name = options.decorateAs ?? "cache";
    if (typeof name !== "string" || name === "")
      throw new CacheConfigError("decorateAs", `expected a non-empty string, got ${JSON.stringify(name)}`);
    if (fastify.hasDecorator(name))
      throw new CacheConfigError(
        "decorateAs",
        `fastify.${name} is already decorated by another plugin (@fastify/caching decorates "cache"): choose another name`
      );
    decorateAs = name;
  } catch (error) {
    done(error);
    return;
  }
  const ownQueryParser = fastifyParsesQueriesItself(fastify);
  noteFastifyTargets(fastify);
  const caches = /* @__PURE__ */ new Map();
  const routeCaches = [];
  let uncached = [];
  const refreshHeader = `x-cache-refresh-${randomUUID()}`;
  const refreshes = /* @__PURE__ */ new Map();
  fastify.addHook("onRoute", function(route) {
    if (!Object.hasOwn(route, CACHED_BY)) dropCopiedHooks(route);
    if (!answersGet(route)) return;
    const config = route.config?.cache;
    if (config === void 0 || config === false) {
      uncached.push({ route, announced: route.url });
      return;
    }
    const owner = route[CACHED_BY];
    if (owner !== void 0)
      throw new CacheConfigError(
        "decorateAs",
        `route ${methodsOf(route)} ${route.url} is cached by the cachePlugin decorated as ${JSON.stringify(owner)} and by the one decorated as ${JSON.stringify(decorateAs)}: a route is cached by one cachePlugin only; remove one registration, or register them in sibling contexts`
      );
    Object.defineProperty(route, CACHED_BY, { value: decorateAs, configurable: true });
    const known = { names: ROUTE_OPTION_NAMES, where: `config.cache of route ${route.url}` };
    const keyedNow = resolveHttpCacheOptions(routeCacheOptions(defaults, config, route.url), known).key !== void 0;
    const routeCache = {
      route,
      announced: route.url,
      cache: void 0,
      site: unready,
      refuseOwnParser: false,
      refuseReplaced: false,
      settled: false,
      group: [],
      options: void 0,
      name: void 0
    };
    routeCaches.push(routeCache);
    noteFastifyTargets(this);
    const varyEncoding = this.hasReplyDecorator("compress");
    const lookup = lookupHook(fastify, routeCache, settle, varyEncoding, refreshHeader, refreshes);
    lookups.add(lookup);
    if (!keyedNow) keepLast(route, "preValidation", noteFastifyQueryBeforeValidation);
    keepLast(route, "preHandler", lookup);
  });
  fastify.addHook("onReady", (hookDone) => {
    try {
      for (const { route, announced } of uncached) {
        const config = route.config?.cache;
        if (config !== void 0 && config !== false)
          throw new CacheConfigError(
            "config.cache",
            `route ${announced}: set by an onRoute hook that runs after cachePlugin's, which reads only the routes it saw cached; register the plugin that sets it before cachePlugin, or set config.cache on the route`
          );
      }
      uncached = [];
      const groups = /* @__PURE__ */ new Map();
      for (const routeCache of routeCaches) {
        const { site, description } = siteOf(fastify, routeCache.route);
        routeCache.site = site;
        let group = groups.get(description);
        if (group === void 0) groups.set(description, group = []);
        group.push(routeCache);
        routeCache.group = group;
      }
      for (const group of groups.values()) resolveGroup(group);
    } catch (error) {
      hookDone(error);
      return;
    }
    hookDone();
  });
  function resolveGroup(group) {
    const planned = [];
    const byHolder = /* @__PURE__ */ new Map();
    let first;
    for (const routeCache of group) {
      const { route } = routeCache;
      const config = route.config?.cache;
      if (config === void 0 || config === false) {
        planned.push({ routeCache });
        continue;
      }
      const holder = route.config;
      let made = byHolder.get(holder);
      if (made === void 0) {
        const known = { names: ROUTE_OPTION_NAMES, where: `config.cache of route ${route.url}` };
        const given = routeCacheOptions(defaults, config, route.url);
        const options2 = snapshotOf(given);
        const kept = routeCache.cache !== void 0 && routeCache.options !== void 0 && sameSnapshot(routeCache.options, options2);
        let cache;
        if (kept) cache = routeCache.cache;
        else {
          const settings2 = resolveHttpCacheOptions(given, known);
          settings2.hiddenSelection = chosenByRequest(route);
          cache = new HttpCache({}, settings2, routeCache.cache);
        }
        made = { cache, options: options2 };
        byHolder.set(holder, made);
      }
      const settings = made.cache.settings;
      if (first === void 0) first = { routeCache, settings };
      else if (!sameAudience(first.settings, settings)) throw notOneAudience(first.routeCache, routeCache);
      planned.push({ routeCache, cache: made.cache, options: made.options });
    }
    const named = /* @__PURE__ */ new Set();
    for (const { routeCache, cache, options: options2 } of planned) {
      routeCache.cache = cache;
      routeCache.options = options2;
      if (cache === void 0) {
        if (routeCache.name !== void 0) caches.delete(routeCache.name);
        routeCache.name = void 0;
        continue;
      }
      const keyed = cache.settings.key !== void 0;
      routeCache.refuseOwnParser = ownQueryParser && !keyed;
      routeCache.refuseReplaced = !keyed;
      if (named.has(cache)) {
        routeCache.name = void 0;
        continue;
      }
      named.add(cache);
      const url = routeCache.route.url;
      routeCache.name ??= `${url}${caches.has(url) ? ` #${caches.size}` : ""}`;
      caches.set(routeCache.name, cache);
      noteFastifyAppPrefix(fastify, cache.settings.keyPrefix);
    }
  }
  function settle(routeCache) {
    resolveGroup(routeCache.group);
    for (const member of routeCache.group) member.settled = true;
  }
  const distinct = () => {
    const seen = /* @__PURE__ */ new Map();
    const backends = /* @__PURE__ */ new Set();
    for (const cache of caches.values()) {
      const s = cache.settings;
      backends.add(s.backend ?? getBackend());
      seen.set(`${s.keyPrefix}
${s.vary.join(",")}
${backendId(s.backend)}`, cache);
    }
    for (const { cache, route } of routeCaches) {
      const config = route.config?.cache;
      if (cache !== void 0 || !isOptionsObject(config) || !("backend" in config)) continue;
      const backend = optionValue(config, "backend");
      if (backend !== void 0) backends.add(toBackend(backend));
    }
    if (pluginBackend !== void 0) backends.add(pluginBackend);
    else {
      try {
        backends.add(getBackend());
      } catch (error) {
        if (!(error instanceof CacheMissingPackageError) || backends.size === 0) throw error;
      }
    }
    return { caches: [...seen.values()], backends: [...backends] };
  };
  fastify.addHook("onError", (_request, reply, _error, hookDone) => {
    const miss = misses.get(reply.raw);
    if (miss !== void 0) {
      failed.add(reply.raw);
      miss.recorder.refuse(HANDLER_ERROR);
    }
    hookDone();
  });
  const api = {
    async invalidate(url, invalidateOptions = {}) {
      assertKnownOptions(invalidateOptions, INVALIDATE_NAMES, "app.cache.invalidate()");
      const { caches: reached, backends } = distinct();
      const { host, headers } = invalidateOptions;
      const others = backends.filter((backend) => !reached.some((cache) => cache.backend() === backend));
      const results = await Promise.all([
        ...reached.map((cache) => cache.invalidate(url, invalidateOptions)),
        ...others.map(
          (backend) => invalidateResponse(url, {
            backend,
            ...defaults.keyPrefix === void 0 ? {} : { keyPrefix: defaults.keyPrefix },
            ...host === void 0 ? {} : { host },
            ...headers === void 0 ? {} : { headers }
          })
        )
      ]);
      return results.some(Boolean);
    },
    async invalidatePrefix(prefix) {
      await Promise.all(distinct().backends.map((backend) => invalidateResponsePrefix(prefix, { backend })));
    },
    async invalidateTags(tags) {
      await Promise.all(distinct().backends.map((backend) => invalidateTags([...tags], { backend })));
    },
    routes: caches
  };
  fastify.decorate(decorateAs, api);
  done();
};
var plugin = fp(
  cachePlugin,
  { fastify: "5.x", name: "@cache/fastify" }
);
function cachePlugin(fastify, options, done) {
  register(fastify, options, done);
}
function pluginDefaults(options) {
  if (!isOptionsObject(options))
    throw new CacheConfigError("options", `expected an object, got ${String(options)}`);
  for (const name of settingNames(options)) if (!PLUGIN_OPTION_NAMES.has(name)) throw notAPluginOption(name);
  const defaults = {};
  for (const name of ROUTE_OPTION_NAMES) if (name in options) defaults[name] = optionValue(options, name);
  const checked = new HttpCache(defaults);
  return { defaults, backend: checked.settings.backend };
}
function notAPluginOption(name) {
  const near = nearestName(name, PLUGIN_OPTION_NAMES);
  return new CacheConfigError(
    name,
    `not an option of cachePlugin; ${near === void 0 ? "" : `did you mean \`${near}\`? `}if it is one of @fastify/autoload's shared \`options\`, meant for other plugins, register cachePlugin from a file in plugins/ as fp(async (app) => app.register(cachePlugin, { ...its own options }))`
  );
}
function routeCacheOptions(defaults, config, url) {
  if (config === true) return defaults;
  if (typeof config === "number" || typeof config === "string") return { ...defaults, ttl: config };
  if (!isOptionsObject(config))
    throw new CacheConfigError(
      "config.cache",
      `route ${url}: expected true, a TTL or cache options, got ${JSON.stringify(config)}`
    );
  const where = `config.cache of route ${url}`;
  assertKnownOptions(config, ROUTE_OPTION_NAMES, where);
  const options = { ...defaults };
  for (const name of ROUTE_OPTION_NAMES) {
    if (!(name in config)) continue;
    const value = optionValue(config, name);
    if (value === void 0)
      throw new CacheConfigError(
        name,
        `given as undefined in ${where}; leave the name out to keep the plugin's setting`
      );
    options[name] = value;
  }
  return options;
}
function snapshotOf(value) {
  const copy = (v) => Array.isArray(v) ? v.map(copy) : isPlainObject(v) ? snapshotOf(v) : v;
  const out = {};
  for (const name of Object.keys(value)) out[name] = copy(value[name]);
  return out;
}
function sameSnapshot(a, b) {
  if (Object.is(a, b)) return true;
  if (Array.isArray(a) && Array.isArray(b))
    return a.length === b.length && a.every((v, i) => sameSnapshot(v, b[i]));
  if (isPlainObject(a) && isPlainObject(b)) {
    const x = a;
    const y = b;
    const names = Object.keys(x);
    return names.length === Object.keys(y).length && names.every((n) => n in y && sameSnapshot(x[n], y[n]));
  }
  return false;
}
function isPlainObject(value) {
  if (value === null || typeof value !== "object") return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}
function sameAudience(a, b) {
  const vary = (s) => s.vary.map((name) => name.toLowerCase()).sort().join(",");
  return vary(a) === vary(b) && a.key === b.key && a.bypass === b.bypass && a.allowAuthorized === b.allowAuthorized && a.allowCookies === b.allowCookies;
}
function notOneAudience(first, second) {
  const named = ({ route, announced }) => `${methodsOf(route)} ${announced}`;
  return new CacheConfigError(
    "config.cache",
    `routes ${named(first)} and ${named(second)} share their cached responses, but onRoute hooks left them different vary, key, bypass, allowAuthorized or allowCookies; give both the same (Fastify announces a prefixed plugin's '/' route to onRoute hooks as GET /api, which serves /api/ too, HEAD /api and HEAD /api/: a hook filtering by URL must match both /api and /api/)`
  );
}
var CACHED_BY = /* @__PURE__ */ Symbol.for("@cache/fastify.cachedBy");
var unready = () => "";
function methodsOf(route) {
  return toList(route.method).join(",");
}
function answersGet(route) {
  const methods = Array.isArray(route.method) ? route.method : [route.method];
  return methods.some((method) => method === "GET" || method === "HEAD");
}
function siteOf(fastify, route) {
  const methods = [...new Set(toList(route.method).map((m) => m === "HEAD" ? "GET" : m))].sort();
  const functions = (value) => toList(value).map((fn) => typeof fn === "function" ? describeFunction(fn) : "?").join(",");
  const description = [
    methods.join(","),
    route.url,
    describeConstraints(route.constraints, `${methods.join(",")} ${route.url}`),
    functions(route.handler),
    ...ROUTE_HOOKS.map((hook) => `${hook}=${functions(route[hook])}`)
  ].join("\n");
  const server = fastify.server;
  const hash = (at) => createHash("sha256").update(`${at}
${description}`).digest("hex").slice(0, 12);
  let listening;
  let unlistened;
  const site = () => {
    const address = server.listening ? server.address() : null;
    if (address === null) return unlistened ??= hash(`instance ${instanceOf(server)}`);
    const at = typeof address === "string" ? address : `${address.address}:${address.port}`;
    if (listening?.at !== at) listening = { at, site: hash(at) };
    return listening.site;
  };
  return { site, description };
}
function describeConstraints(constraints, route) {
  const describe = (value, path) => {
    if (value instanceof RegExp && Object.getPrototypeOf(value) === RegExp.prototype)
      return { RegExp: String(value) };
    if (value === null || value === void 0) return value;
    const type = typeof value;
    if (type === "string" || type === "boolean") return value;
    if (type === "number") return Number.isFinite(value) ? value : String(value);
    if (Array.isArray(value) && !Object.hasOwn(value, "toJSON"))
      return value.map((item, i) => describe(item, `${path}[${i}]`));
    if (type === "object") {
      const proto = Object.getPrototypeOf(value);
      if ((proto === Object.prototype || proto === null) && !Object.hasOwn(value, "toJSON")) {
        const out = {};
        for (const key of Object.keys(value).sort())
          out[key] = describe(value[key], `${path}.${key}`);
        return out;
      }
    }
    const what = type === "function" ? "a function" : type === "symbol" ? "a Symbol" : type === "object" ? Object.hasOwn(value, "toJSON") || typeof value.toJSON === "function" ? "a value with its own toJSON" : `an instance of ${value.constructor?.name || "a class"}` : `a ${type}`;
    throw new CacheConfigError(
      "config.cache",
      `route ${route}: its constraint ${path} is ${what}, which the cache cannot describe by content, the same in every process: two routes of one URL told apart by such values could answer each other's requests from one entry. Give the constraint strategy plain values (strings, numbers, plain objects), or leave the route uncached`
    );
  };
  return JSON.stringify(describe(constraints ?? {}, "constraints"));
}
function chosenByRequest(route) {
  const constraints = route.constraints;
  if (constraints === null || typeof constraints !== "object") return false;
  return Object.keys(constraints).some((name) => name !== "host");
}
var ROUTE_HOOKS = ["onRequest", "preParsing", "preValidation", "preHandler"];
var instances = /* @__PURE__ */ new WeakMap();
function instanceOf(server) {
  let id = instances.get(server);
  if (id === void 0) {
    id = randomUUID();
    instances.set(server, id);
  }
  return id;
}
var backendIds = /* @__PURE__ */ new WeakMap();
var nextBackendId = 1;
function backendId(backend) {
  if (backend === void 0) return 0;
  let id = backendIds.get(backend);
  if (id === void 0) {
    id = nextBackendId++;
    backendIds.set(backend, id);
  }
  return id;
}
function toList(value) {
  if (value === void 0) return [];
  return Array.isArray(value) ? [...value] : [value];
}
function keepLast(route, name, hook) {
  const others = (fn) => fn !== hook && !lookups.has(fn);
  let list = [...toList(route[name]).filter(others), hook];
  Object.defineProperty(route, name, {
    configurable: true,
    enumerable: true,
    get() {
      const at = list.indexOf(hook);
      if (at !== list.length - 1) {
        if (at !== -1) list.splice(at, 1);
        list.push(hook);
      }
      return list;
    },
    set(value) {
      list = [...toList(value).filter(others), hook];
    }
  });
}
var lookups = /* @__PURE__ */ new WeakSet();
function dropCopiedHooks(route) {
  const handlers = toList(route.preHandler);
  if (handlers.some((fn) => lookups.has(fn)))
    route.preHandler = handlers.filter((fn) => !lookups.has(fn));
  const validators = toList(route.preValidation);
  if (validators.includes(noteFastifyQueryBeforeValidation))
    route.preValidation = validators.filter(
      (fn) => fn !== noteFastifyQueryBeforeValidation
    );
}
function lookupHook(fastify, routeCache, settle, varyEncoding, refreshHeader, refreshes) {
  return function cacheLookup(request, reply, done) {
    if (!routeCache.settled) {
      try {
        settle(routeCache);
      } catch (error) {
        done(error);
        return;
      }
    }
    const cache = routeCache.cache;
    if (cache === void 0) {
      done();
      return;
    }
    const view = viewOf(request, routeCache.site(), refreshHeader, refreshes);
    if (routeCache.refuseOwnParser && /[?;]/.test(view.url) || routeCache.refuseReplaced && fastifyQueryReplaced(request))
      view.bypass = "querystring-parser";
    const rewritten = fastifyRewrite(request.raw);
    if (rewritten !== void 0) view.bypass = rewritten;
    if (request.raw.httpVersionMajor >= 2) view.bypass = "http2";
    view.bypass ??= fastifySharedServerBypass(fastify, cache.settings.keyPrefix);
    const context = {
      verdict: () => failed.has(reply.raw) ? HANDLER_ERROR : void 0,
      // The copy comes from the client's address over the client's protocol, so that the app
      // resolves it as the request it refreshes; another key is refused by the cache and counted.
      revalidate: (refresh) => injectRefresh(fastify, request.raw, view.url, refresh, refreshes, refreshHeader)
    };
    let result;
    try {
      result = cache.lookup(view, context);
    } catch (error) {
      done(error);
      return;
    }
    if (result instanceof Promise) result.then((settled) => act(settled, reply, varyEncoding, done), done);
    else act(result, reply, varyEncoding, done);
  };
}
var misses = /* @__PURE__ */ new WeakMap();
var failed = /* @__PURE__ */ new WeakSet();
function act(result, reply, varyEncoding, done) {
  if (result.kind === "hit" || result.kind === "not-modified") {
    reply.hijack();
    for (const [name, value] of Object.entries(reply.getHeaders()))
      if (value !== void 0) reply.raw.setHeader(name, value);
    answerFromResult(reply.raw, result);
    done();
    return;
  }
  if (result.kind === "miss") {
    misses.set(reply.raw, result);
    record(reply, result, varyEncoding);
  }
  answerFromResult(reply.raw, result);
  done();
}
function record(reply, miss, varyEncoding) {
  const res = reply.raw;
  const earlier = reply.getHeaders();
  for (const [name, value] of Object.entries(earlier)) if (value !== void 0) res.setHeader(name, value);
  const touched = trackFastifyReplyHeaders(reply);
  recordNodeResponse(res, miss, touched);
  const writeHead = res.writeHead;
  res.writeHead = function(code, ...rest) {
    const at = typeof rest[0] === "string" ? 1 : 0;
    const given = rest[at];
    if (given !== null && typeof given === "object" && !Array.isArray(given)) {
      const kept = {};
      for (const [name, value] of Object.entries(given)) {
        const lower = name.toLowerCase();
        const before = earlier[lower];
        if (before === void 0 || touched.has(lower) || String(before) !== String(value)) kept[name] = value;
      }
      rest[at] = kept;
    }
    if (varyEncoding) {
      const headers = rest[at];
      const vary = headers?.vary ?? res.getHeader("vary");
      const list = vary === void 0 ? "" : String(vary);
      if (!/(^|,)\s*(accept-encoding|\*)\s*(,|$)/i.test(list)) {
        const value = list === "" ? "Accept-Encoding" : `${list}, Accept-Encoding`;
        if (headers !== null && typeof headers === "object" && !Array.isArray(headers)) headers.vary = value;
        else res.setHeader("vary", value);
      }
    }
    return writeHead.call(this, code, ...rest);
  };
}
function viewOf(request, site, refreshHeader, refreshes) {
  const taken = takeFastifyRefresh(request.raw, request.headers, refreshHeader, refreshes);
  const refresh = taken === false ? void 0 : taken;
  const host = request.host;
  const keyExtra = fastifyHostKeyPart(host, request.raw, request.headers);
  return {
    method: request.method,
    // The target as the client sent it; a rewritten one bypasses (see `fastifyRewrite`).
    url: fastifyTarget(request.raw)?.sent ?? request.url,
    headers: request.headers,
    // The credentials the client sent, whatever the hooks before the cache did to the headers.
    rawHeaders: request.raw.rawHeaders,
    // The credential and body lines as the server emitted the request (under `inject()`, as the
    // cache's first hook found them): a hook may strip a line from `rawHeaders` too.
    arrivedLines: fastifyArrivedLines(request.raw) ?? (refresh === void 0 ? void 0 : refreshArrivedLines(refresh)),
    protocol: request.protocol,
    host,
    ...keyExtra === void 0 ? {} : { keyExtra },
    site,
    raw: request,
    ...refresh === void 0 ? {} : { refresh },
    // The copy of a refresh that is over (abandoned while a slow hook ran): neither answered
    // from the stale entry (which would start another refresh) nor stored.
    ...taken === false ? { bypass: "refresh-over" } : {}
  };
}

// src/index.ts
import { invalidateResponse as invalidateResponse2, invalidateResponsePrefix as invalidateResponsePrefix2, invalidateTags as invalidateTags2 } from "@cache/http";
export {
  plugin as cachePlugin,
  plugin as default,
  invalidateResponse2 as invalidateResponse,
  invalidateResponsePrefix2 as invalidateResponsePrefix,
  invalidateTags2 as invalidateTags
};
//# sourceMappingURL=index.js.map