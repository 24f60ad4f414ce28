import { CacheConfigError } from '@cache/core'
import { nearestName, settingNames } from '@cache/core/backend'

/**
 * How an adapter is handed its options: the one argument of `cacheResponse()` and
 * `@CacheResponse()`, and the plugin-level options of a framework that may share them between
 * plugins (Fastify with `@fastify/autoload`). Checked once, when the app is built.
 */

/**
 * The options of a call such as `cacheResponse(options)`: an options object, a TTL alone (the
 * documented shorthand, `cacheResponse(60)`), or nothing. Anything else is a `CacheConfigError`
 * (setting `options`): `null`, `true`, a list; and a second argument, which would be dropped with
 * what it holds (`cacheResponse(60, { vary })`, apicache's `cache('5 minutes', …)` habit, would
 * serve one tenant's page to another). The message shows the call written as one options object.
 *
 * @param args the arguments as given (a rest parameter: plain JavaScript passes any number)
 * @param call what was called, as written in code: `cacheResponse`, `@CacheResponse`
 */
export function optionsArgument<O extends object>(args: readonly unknown[], call: string): O {
  const [options] = args
  if (args.length > 1)
    throw new CacheConfigError(
      'options',
      `${call}() takes one argument, its options (or a TTL alone); a second argument would be ignored with every option in it: write ${call}(${oneObject(args)})`,
    )
  if (options === undefined) return {} as O
  if (typeof options === 'number' || typeof options === 'string') return { ttl: options } as O
  if (options === null || typeof options !== 'object' || Array.isArray(options))
    throw new CacheConfigError(
      'options',
      `${call}() expected an options object or a TTL (60, '5m'), got ${describeValue(options)}`,
    )
  return options as O
}

/** The arguments of a call written as one options object, e.g. `{ ttl: 60, vary: ["x-tenant"] }`. */
function oneObject(args: readonly unknown[]): string {
  const parts: string[] = []
  let unread = false
  for (const arg of args) {
    if (typeof arg === 'number' || typeof arg === 'string') parts.push(`ttl: ${JSON.stringify(arg)}`)
    else if (isPlainObject(arg))
      for (const [name, value] of Object.entries(arg)) parts.push(`${name}: ${shortValue(value)}`)
    else if (arg !== undefined) unread = true
  }
  if (parts.length === 0) return '{ ttl: 60, vary: […] }'
  return `{ ${parts.join(', ')}${unread ? ', …' : ''} }`
}

/** A value as it may be written in the message: short literals as JSON, anything else `…`. */
function shortValue(value: unknown): string {
  const literal =
    value === null ||
    ['string', 'number', 'boolean'].includes(typeof value) ||
    (Array.isArray(value) && value.every((item) => ['string', 'number', 'boolean'].includes(typeof item)))
  if (!literal) return '…'
  const text = JSON.stringify(value)
  return text.length <= 60 ? text : '…'
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object') return false
  const prototype = Object.getPrototypeOf(value)
  return prototype === Object.prototype || prototype === null
}

function describeValue(value: unknown): string {
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'function') return 'a function'
  if (typeof value === 'symbol' || typeof value === 'bigint') return `a ${typeof value}`
  return String(value)
}

/**
 * Which option a plugin-level name that is not an option was meant for, by its words (split at
 * camelCase humps, `_` and `-`, lower-cased: `CACHE_KEY_FN` and `cacheKeyFn` are cache, key, fn).
 * These options' loss serves a wrong response (another user's or variant's page, a preview to
 * everyone, keys shared with another app, a response `invalidateTags` no longer reaches), so a
 * name saying it is one of them is refused rather than ignored. First rule that matches:
 *
 * 1. `key` then `prefix` (`cacheKeyPrefix`, `REDIS_KEY_PREFIX`): `keyPrefix`.
 * 2. `bypass` (`bypassIf`): `bypass`. `tags` (`cacheTags`): `tags`.
 * 3. A variant word — `vary`, `varies`, `varied`, `variant(s)`, `variation(s)`, `header(s)` —
 *    or `private` not followed by `key(s)`: `vary` (`varies`, `headers`, `keyHeaders`,
 *    `privateHeaders`, `private: true`). `privateKey`, `PRIVATE_KEY_PATH` are key material.
 * 4. `key(s)` right after a word naming the cache's key (`cache`, `request`, `response`,
 *    `route`, `custom`, `get`, `make`, `build`, `compute`, `generate`: `cacheKey`,
 *    `getCacheKey`, `buildKey`), or first and followed by a word of a key function (`fn`, `func`,
 *    `function`, `generator`, `gen`, `builder`, `resolver`, `getter`, `maker`, `by`, `for`, `of`,
 *    `template`: `keyFn`, `keyGenerator`, `keyBy`): `key`.
 *
 * Not refused, so that `@fastify/autoload`'s shared app settings pass with a warning: `key` after
 * any other word (`apiKey`, `API_KEY`, `secretKey`, `privateKey`, `accessKeyId`,
 * `apiKeyGenerator`) or first before any other (`keyFile`, `keyPath`, `keyId`); a word merely
 * holding the letters (`monkey`, `keyspace`); and `user`, `auth`, `session`, `cookie`, `prefix`,
 * which app settings hold (`dbUser`, `authToken`, `sessionSecret`, `cookieSecret`, autoload's
 * own `prefix`, `autoPrefix`). A name one or two edits from an option is refused before these
 * rules (`keyv`, one edit from `key`; `tag`).
 */
function safetyOptionIn(name: string): string | undefined {
  const words = wordsOf(name)
  for (let i = 0; i < words.length - 1; i++)
    if (words[i] === 'key' && words[i + 1] === 'prefix') return 'keyPrefix'
  if (words.includes('bypass')) return 'bypass'
  if (words.includes('tags')) return 'tags'
  const variant = (word: string, i: number) =>
    VARIANT_WORDS.has(word) || (word === 'private' && !KEY_WORDS.has(words[i + 1] ?? ''))
  if (words.some(variant)) return 'vary'
  const cacheKey = (word: string, i: number) =>
    KEY_WORDS.has(word) &&
    (i > 0 ? KEY_OWNER_WORDS.has(words[i - 1]!) : KEY_FUNCTION_WORDS.has(words[1] ?? ''))
  if (words.some(cacheKey)) return 'key'
  return undefined
}

const VARIANT_WORDS: ReadonlySet<string> = new Set([
  'vary',
  'varies',
  'varied',
  'variant',
  'variants',
  'variation',
  'variations',
  'header',
  'headers',
])
const KEY_WORDS: ReadonlySet<string> = new Set(['key', 'keys'])
/** Words before `key` that make it the cache's key (`cacheKey`, `getKey`), not a credential (`apiKey`). */
const KEY_OWNER_WORDS: ReadonlySet<string> = new Set([
  'cache',
  'request',
  'response',
  'route',
  'custom',
  'get',
  'make',
  'build',
  'compute',
  'generate',
])
/** Words after a leading `key` that make it a key function (`keyFn`), not a key file (`keyFile`). */
const KEY_FUNCTION_WORDS: ReadonlySet<string> = new Set([
  'fn',
  'func',
  'function',
  'generator',
  'gen',
  'builder',
  'resolver',
  'getter',
  'maker',
  'by',
  'for',
  'of',
  'template',
])

/**
 * The names of plugin-level `options` that are not in `known` and look meant for another plugin
 * (`@fastify/autoload` gives its shared `options` to every plugin it loads): the adapter reports
 * and ignores them. A name that looks meant for this plugin is a `CacheConfigError` naming the
 * option it meant: one within two edits of an option (`varyy`, a typo) or one whose words say it
 * is an option whose loss serves a wrong response (`varyHeaders`, `keyGenerator`: see
 * {@link safetyOptionIn} for the exact rule).
 *
 * @param where what the options were given to, e.g. `cachePlugin`
 */
export function namesForOtherPlugins(options: object, known: ReadonlySet<string>, where: string): string[] {
  const others: string[] = []
  for (const name of Object.keys(options)) {
    if (known.has(name)) continue
    const meant = nearestName(name, known) ?? safetyOptionIn(name)
    if (meant !== undefined)
      throw new CacheConfigError(name, `not an option of ${where}; did you mean \`${meant}\`?`)
    others.push(name)
  }
  return others
}

/**
 * The words of a name, lower-case: `cacheKeyPrefix` → cache, key, prefix; `vary_by` → vary, by;
 * `HTTPHeaders` → http, headers.
 */
function wordsOf(name: string): string[] {
  return name
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1 $2')
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter((word) => word !== '')
}

/**
 * `options` as a new plain object holding every name it has — its own (enumerable or not), those
 * of its prototypes below `Object.prototype` (a settings class's getters and methods, an
 * `Object.create(settings)`'s values), getters read once here — and each of `known` that a
 * property read finds (a Proxy listing no names), so that code reading `Object.keys` or spreading
 * it (`{ ...defaults, ...options }`) sees what a plain object with the same settings would give.
 * Read once where the options are given, never per request.
 */
export function plainOptions<O extends object>(options: O, known: Iterable<string> = []): O {
  const given = options as Record<string, unknown>
  const plain: Record<string, unknown> = {}
  for (const name of settingNames(options)) plain[name] = given[name]
  for (const name of known)
    if (!Object.hasOwn(plain, name)) {
      const value = given[name]
      if (value !== undefined) plain[name] = value
    }
  return plain as O
}
