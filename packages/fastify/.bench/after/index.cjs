"use strict";
var __create = Object.create;
var __defProp = Object.defineProperty;
var __getOwnPropDesc = Object.getOwnPropertyDescriptor;
var __getOwnPropNames = Object.getOwnPropertyNames;
var __getProtoOf = Object.getPrototypeOf;
var __hasOwnProp = Object.prototype.hasOwnProperty;
var __export = (target, all) => {
  for (var name in all)
    __defProp(target, name, { get: all[name], enumerable: true });
};
var __copyProps = (to, from, except, desc) => {
  if (from && typeof from === "object" || typeof from === "function") {
    for (let key of __getOwnPropNames(from))
      if (!__hasOwnProp.call(to, key) && key !== except)
        __defProp(to, key, { get: () => from[key], enumerable: !(desc = __getOwnPropDesc(from, key)) || desc.enumerable });
  }
  return to;
};
var __toESM = (mod, isNodeMode, target) => (target = mod != null ? __create(__getProtoOf(mod)) : {}, __copyProps(
  // If the importer is in node compatibility mode or this is not an ESM
  // file that has been converted to a CommonJS file using a Babel-
  // compatible transform (i.e. "__esModule" has not been set), then set
  // "default" to the CommonJS "module.exports" for node compatibility.
  isNodeMode || !mod || !mod.__esModule ? __defProp(target, "default", { value: mod, enumerable: true }) : target,
  mod
));
var __toCommonJS = (mod) => __copyProps(__defProp({}, "__esModule", { value: true }), mod);

// src/index.ts
var src_exports = {};
__export(src_exports, {
  cachePlugin: () => plugin,
  default: () => plugin,
  invalidateResponse: () => import_http2.invalidateResponse,
  invalidateResponsePrefix: () => import_http2.invalidateResponsePrefix,
  invalidateTags: () => import_http2.invalidateTags
});
module.exports = __toCommonJS(src_exports);

// src/plugin.ts
var import_node_crypto = require("crypto");
var import_core = require("@cache/core");
var import_backend = require("@cache/core/backend");
var import_http = require("@cache/http");
var import_fastify_plugin = __toESM(require("fastify-plugin"), 1);
var PLUGIN_OPTION_NAMES = (0, import_backend.optionNames)({
  ...import_http.HTTP_CACHE_OPTION_NAMES,
  decorateAs: true,
  prefix: true,
  logLevel: true,
  logSerializers: true,
  skipOverride: true
});
var ROUTE_OPTION_NAMES = (0, import_backend.optionNames)(import_http.HTTP_CACHE_OPTION_NAMES);
var INVALIDATE_NAMES = (0, import_backend.optionNames)({
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
      throw new import_core.CacheConfigError("decorateAs", `expected a non-empty string, got ${JSON.stringify(name)}`);
    if (fastify.hasDecorator(name))
      throw new import_core.CacheConfigError(
        "decorateAs",
        `fastify.${name} is already decorated by another plugin (@fastify/caching decorates "cache"): choose another name`
      );
    decorateAs = name;
  } catch (error) {
    done(error);
    return;
  }
  const ownQueryParser = (0, import_http.fastifyParsesQueriesItself)(fastify);
  (0, import_http.noteFastifyTargets)(fastify);
  const caches = /* @__PURE__ */ new Map();
  const routeCaches = [];
  let uncached = [];
  const refreshHeader = `x-cache-refresh-${(0, import_node_crypto.randomUUID)()}`;
  const refreshes = /* @__PURE__ */ new Map();
  fastify.addHook("onRoute", function(route) {
    if (!Object.hasOwn(route, CACHED_BY)) {
      dropCopiedHooks(route);
      disownCopiedMark(route);
    }
    if (!answersGet(route)) return;
    const config = route.config?.cache;
    if (config === void 0 || config === false) {
      uncached.push({ route, announced: route.url });
      return;
    }
    const owner = route[CACHED_BY];
    if (owner !== void 0)
      throw new import_core.CacheConfigError(
        "decorateAs",
        `route ${methodsOf(route)} ${route.url} is cached by the cachePlugin decorated as ${JSON.stringify(owner)} and by the one decorated as ${JSON.stringify(decorateAs)}: a route is cached by one cachePlugin only; remove one registration, or register them in sibling contexts`
      );
    Object.defineProperty(route, CACHED_BY, { value: decorateAs, configurable: true });
    const known = { names: ROUTE_OPTION_NAMES, where: `config.cache of route ${route.url}` };
    const keyedNow = (0, import_http.resolveHttpCacheOptions)(routeCacheOptions(defaults, config, route.url), known).key !== void 0;
    const routeCache = {
      route,
      // Before any later hook can copy it (see `markRoute`).
      mark: markRoute(route),
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
    (0, import_http.noteFastifyTargets)(this);
    const varyEncoding = this.hasReplyDecorator("compress");
    const lookup = lookupHook(fastify, routeCache, settle, varyEncoding, refreshHeader, refreshes);
    const standIn = function cacheLookupStandIn(_request, _reply, standInDone) {
      standInDone();
    };
    lookups.add(lookup);
    lookups.add(standIn);
    if (!keyedNow) keepLast(route, "preValidation", import_http.noteFastifyQueryBeforeValidation);
    keepLast(route, "preHandler", lookup, standIn, () => routeCache.mark.reads === void 0);
  });
  fastify.addHook("onReady", (hookDone) => {
    try {
      for (const { route, announced } of uncached) {
        const config = route.config?.cache;
        if (config !== void 0 && config !== false)
          throw new import_core.CacheConfigError(
            "config.cache",
            `route ${announced}: set by an onRoute hook that runs after cachePlugin's, which reads only the routes it saw cached; register the plugin that sets it before cachePlugin, or set config.cache on the route`
          );
      }
      uncached = [];
      for (const { route, announced, mark } of routeCaches)
        if (mark.lost)
          throw new import_core.CacheConfigError(
            "config.cache",
            `route ${methodsOf(route)} ${announced}: an onRoute hook replaced its config other than by assigning route.config (delete, Object.defineProperty), without what cachePlugin gave it, or frozen: its requests cannot be told from those of a copy of the route, which would answer from its entries. Assign the new config instead (route.config = { ...route.config, ... })`
          );
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
      const holder = route.config === routeCache.mark.own ? routeCache.mark.holder : route.config;
      let made = byHolder.get(holder);
      if (made === void 0) {
        const known = { names: ROUTE_OPTION_NAMES, where: `config.cache of route ${route.url}` };
        const given = routeCacheOptions(defaults, config, route.url);
        const options2 = snapshotOf(given);
        const kept = routeCache.cache !== void 0 && routeCache.options !== void 0 && sameSnapshot(routeCache.options, options2);
        let cache;
        if (kept) cache = routeCache.cache;
        else {
          const settings2 = (0, import_http.resolveHttpCacheOptions)(given, known);
          settings2.hiddenSelection = chosenByRequest(route);
          cache = new import_http.HttpCache({}, settings2, routeCache.cache);
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
      (0, import_http.noteFastifyAppPrefix)(fastify, cache.settings.keyPrefix);
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
      backends.add(s.backend ?? (0, import_core.getBackend)());
      seen.set(`${s.keyPrefix}
${s.vary.join(",")}
${backendId(s.backend)}`, cache);
    }
    for (const { cache, route } of routeCaches) {
      const config = route.config?.cache;
      if (cache !== void 0 || !(0, import_backend.isOptionsObject)(config) || !("backend" in config)) continue;
      const backend = (0, import_backend.optionValue)(config, "backend");
      if (backend !== void 0) backends.add((0, import_backend.toBackend)(backend));
    }
    if (pluginBackend !== void 0) backends.add(pluginBackend);
    else {
      try {
        backends.add((0, import_core.getBackend)());
      } catch (error) {
        if (!(error instanceof import_core.CacheMissingPackageError) || backends.size === 0) throw error;
      }
    }
    return { caches: [...seen.values()], backends: [...backends] };
  };
  fastify.addHook("onError", (_request, reply, _error, hookDone) => {
    const miss = misses.get(reply.raw);
    if (miss !== void 0) {
      failed.add(reply.raw);
      miss.recorder.refuse(import_http.HANDLER_ERROR);
    }
    hookDone();
  });
  const api = {
    async invalidate(url, invalidateOptions = {}) {
      (0, import_backend.assertKnownOptions)(invalidateOptions, INVALIDATE_NAMES, "app.cache.invalidate()");
      const { caches: reached, backends } = distinct();
      const { host, headers } = invalidateOptions;
      const others = backends.filter((backend) => !reached.some((cache) => cache.backend() === backend));
      const results = await Promise.all([
        ...reached.map((cache) => cache.invalidate(url, invalidateOptions)),
        ...others.map(
          (backend) => (0, import_http.invalidateResponse)(url, {
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
      await Promise.all(distinct().backends.map((backend) => (0, import_http.invalidateResponsePrefix)(prefix, { backend })));
    },
    async invalidateTags(tags) {
      await Promise.all(distinct().backends.map((backend) => (0, import_core.invalidateTags)([...tags], { backend })));
    },
    routes: caches
  };
  fastify.decorate(decorateAs, api);
  done();
};
var plugin = (0, import_fastify_plugin.default)(
  cachePlugin,
  { fastify: "5.x", name: "@cache/fastify" }
);
function cachePlugin(fastify, options, done) {
  register(fastify, options, done);
}
function pluginDefaults(options) {
  if (!(0, import_backend.isOptionsObject)(options))
    throw new import_core.CacheConfigError("options", `expected an object, got ${String(options)}`);
  for (const name of (0, import_backend.settingNames)(options)) if (!PLUGIN_OPTION_NAMES.has(name)) throw notAPluginOption(name);
  const defaults = {};
  for (const name of ROUTE_OPTION_NAMES) if (name in options) defaults[name] = (0, import_backend.optionValue)(options, name);
  const checked = new import_http.HttpCache(defaults);
  return { defaults, backend: checked.settings.backend };
}
function notAPluginOption(name) {
  const near = (0, import_backend.nearestName)(name, PLUGIN_OPTION_NAMES);
  return new import_core.CacheConfigError(
    name,
    `not an option of cachePlugin; ${near === void 0 ? "" : `did you mean \`${near}\`? `}if it is one of @fastify/autoload's shared \`options\`, meant for other plugins, register cachePlugin from a file in plugins/ as fp(async (app) => app.register(cachePlugin, { ...its own options }))`
  );
}
function routeCacheOptions(defaults, config, url) {
  if (config === true) return defaults;
  if (typeof config === "number" || typeof config === "string") return { ...defaults, ttl: config };
  if (!(0, import_backend.isOptionsObject)(config))
    throw new import_core.CacheConfigError(
      "config.cache",
      `route ${url}: expected true, a TTL or cache options, got ${JSON.stringify(config)}`
    );
  const where = `config.cache of route ${url}`;
  (0, import_backend.assertKnownOptions)(config, ROUTE_OPTION_NAMES, where);
  const options = { ...defaults };
  for (const name of ROUTE_OPTION_NAMES) {
    if (!(name in config)) continue;
    const value = (0, import_backend.optionValue)(config, name);
    if (value === void 0)
      throw new import_core.CacheConfigError(
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
  return new import_core.CacheConfigError(
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
  const functions = (value) => toList(value).map((fn) => typeof fn === "function" ? (0, import_http.describeFunction)(fn) : "?").join(",");
  const description = [
    methods.join(","),
    route.url,
    describeConstraints(route.constraints, `${methods.join(",")} ${route.url}`),
    functions(route.handler),
    ...ROUTE_HOOKS.map((hook) => `${hook}=${functions(route[hook])}`)
  ].join("\n");
  const server = fastify.server;
  const hash = (at) => (0, import_node_crypto.createHash)("sha256").update(`${at}
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
    throw new import_core.CacheConfigError(
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
    id = (0, import_node_crypto.randomUUID)();
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
function keepLast(route, name, hook, standIn = hook, declared = () => true) {
  const ours = (fn) => fn === hook || fn === standIn;
  const others = (fn) => !ours(fn) && !lookups.has(fn);
  const last = () => declared() ? hook : standIn;
  let list = [...toList(route[name]).filter(others), last()];
  Object.defineProperty(route, name, {
    configurable: true,
    enumerable: true,
    get() {
      const now = last();
      if (list.findIndex(ours) !== list.length - 1 || list[list.length - 1] !== now) {
        for (let at = list.length - 1; at >= 0; at--) if (ours(list[at])) list.splice(at, 1);
        list.push(now);
      }
      return list;
    },
    set(value) {
      list = [...toList(value).filter(others), last()];
    }
  });
}
var lookups = /* @__PURE__ */ new WeakSet();
function dropCopiedHooks(route) {
  const handlers = toList(route.preHandler);
  if (handlers.some((fn) => lookups.has(fn)))
    route.preHandler = handlers.filter((fn) => !lookups.has(fn));
  const validators = toList(route.preValidation);
  if (validators.includes(import_http.noteFastifyQueryBeforeValidation))
    route.preValidation = validators.filter(
      (fn) => fn !== import_http.noteFastifyQueryBeforeValidation
    );
}
var ROUTE_MARK = /* @__PURE__ */ Symbol("@cache/fastify.route");
var tokenOwners = /* @__PURE__ */ new WeakMap();
function markRoute(route) {
  const announced = route.url;
  const mark = {
    token: void 0,
    prefixedToken: void 0,
    reads: [],
    holder: route.config,
    own: void 0
  };
  const read = () => {
    const token = {};
    if (mark.reads !== void 0) {
      mark.reads.push({ token, url: route.url });
      tokenOwners.set(token, mark);
    }
    return token;
  };
  mark.own = ownConfig(route.config, read);
  const getOwn = () => mark.own;
  Object.defineProperty(route, "config", {
    configurable: true,
    enumerable: true,
    get: getOwn,
    set(value) {
      mark.holder = value;
      mark.own = ownConfig(value, read);
    }
  });
  queueMicrotask(() => {
    const reads = mark.reads ?? [];
    mark.reads = void 0;
    if (Object.getOwnPropertyDescriptor(route, "config")?.get === getOwn) {
      for (const { token: token2, url } of reads) {
        if (url === announced) mark.token = token2;
        else mark.prefixedToken = token2;
      }
      return;
    }
    const config = route.config;
    const held = config !== null && typeof config === "object" ? Object.getOwnPropertyDescriptor(config, ROUTE_MARK) : void 0;
    const token = held !== void 0 && "value" in held ? held.value : void 0;
    try {
      if (token === null || typeof token !== "object" || tokenOwners.get(token) !== mark) throw new Error();
      Object.defineProperty(config, ROUTE_MARK, { configurable: true, enumerable: true, get: () => ({}) });
      mark.token = token;
    } catch {
      mark.lost = true;
    }
  });
  return mark;
}
function ownConfig(config, read) {
  if (config === null || typeof config !== "object") return config;
  const descriptors = Object.getOwnPropertyDescriptors(config);
  delete descriptors[ROUTE_MARK];
  descriptors[ROUTE_MARK] = { configurable: true, enumerable: true, get: read };
  return Object.create(Object.getPrototypeOf(config), descriptors);
}
function disownCopiedMark(route) {
  const config = route.config;
  if (config === null || typeof config !== "object") return;
  const held = Object.getOwnPropertyDescriptor(config, ROUTE_MARK);
  if (held === void 0 || !("value" in held) || held.value === null || typeof held.value !== "object")
    return;
  const owner = tokenOwners.get(held.value);
  if (owner?.reads !== void 0) owner.reads = owner.reads.filter(({ token }) => token !== held.value);
}
var lookedUp = /* @__PURE__ */ new WeakSet();
function routeConfigOf(request) {
  return request.routeOptions.config;
}
function lookupHook(fastify, routeCache, settle, varyEncoding, refreshHeader, refreshes) {
  const { mark } = routeCache;
  return function cacheLookup(request, reply, done) {
    const token = routeConfigOf(request)?.[ROUTE_MARK];
    if (token !== mark.token && token !== mark.prefixedToken || token === void 0 || lookedUp.has(request)) {
      done();
      return;
    }
    lookedUp.add(request);
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
    if (routeCache.refuseOwnParser && /[?;]/.test(view.url) || routeCache.refuseReplaced && (0, import_http.fastifyQueryReplaced)(request))
      view.bypass = "querystring-parser";
    const rewritten = (0, import_http.fastifyRewrite)(request.raw);
    if (rewritten !== void 0) view.bypass = rewritten;
    if (request.raw.httpVersionMajor >= 2) view.bypass = "http2";
    view.bypass ??= (0, import_http.fastifySharedServerBypass)(fastify, cache.settings.keyPrefix);
    const context = {
      verdict: () => failed.has(reply.raw) ? import_http.HANDLER_ERROR : void 0,
      // The copy comes from the client's address over the client's protocol, so that the app
      // resolves it as the request it refreshes; another key is refused by the cache and counted.
      revalidate: (refresh) => (0, import_http.injectRefresh)(fastify, request.raw, view.url, refresh, refreshes, refreshHeader)
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
    (0, import_http.answerFromResult)(reply.raw, result);
    done();
    return;
  }
  if (result.kind === "miss") {
    misses.set(reply.raw, result);
    record(reply, result, varyEncoding);
  }
  (0, import_http.answerFromResult)(reply.raw, result);
  done();
}
function record(reply, miss, varyEncoding) {
  const res = reply.raw;
  const earlier = reply.getHeaders();
  for (const [name, value] of Object.entries(earlier)) if (value !== void 0) res.setHeader(name, value);
  const touched = (0, import_http.trackFastifyReplyHeaders)(reply);
  (0, import_http.recordNodeResponse)(res, miss, touched);
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
  const taken = (0, import_http.takeFastifyRefresh)(request.raw, request.headers, refreshHeader, refreshes);
  const refresh = taken === false ? void 0 : taken;
  const host = request.host;
  const keyExtra = (0, import_http.fastifyHostKeyPart)(host, request.raw, request.headers);
  return {
    method: request.method,
    // The target as the client sent it; a rewritten one bypasses (see `fastifyRewrite`).
    url: (0, import_http.fastifyTarget)(request.raw)?.sent ?? request.url,
    headers: request.headers,
    // The credentials the client sent, whatever the hooks before the cache did to the headers.
    rawHeaders: request.raw.rawHeaders,
    // The credential and body lines as the server emitted the request (under `inject()`, as the
    // cache's first hook found them): a hook may strip a line from `rawHeaders` too.
    arrivedLines: (0, import_http.fastifyArrivedLines)(request.raw) ?? (refresh === void 0 ? void 0 : (0, import_http.refreshArrivedLines)(refresh)),
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
var import_http2 = require("@cache/http");
// Annotate the CommonJS export names for ESM import in node:
0 && (module.exports = {
  cachePlugin,
  invalidateResponse,
  invalidateResponsePrefix,
  invalidateTags
});
//# sourceMappingURL=index.cjs.map