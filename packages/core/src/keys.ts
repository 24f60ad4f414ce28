import { createHash } from 'node:crypto'
import type { SetManyItem } from './backend.js'
import { arrayShape, hasExtraOwnProperties, isArgumentsObject } from './builtins.js'
import { CacheArgumentError, CacheKeyError, CacheSerializationError, truncate } from './errors.js'
import { nearestName } from './option-checks.js'

/** A short, collision-resistant digest of a string: SHA-256, base64url, 43 characters. */
export function hashKey(text: string): string {
  return createHash('sha256').update(text).digest('base64url')
}

/** Throws a {@link CacheKeyError} unless `key` is a string. Empty strings are valid keys. */
export function assertKey(key: unknown): asserts key is string {
  if (typeof key !== 'string') {
    throw new CacheKeyError(`cache keys are strings, got ${key === null ? 'null' : typeof key}`)
  }
}

/**
 * Throws a {@link CacheKeyError} naming `operation` unless `keys` is an array (`getMany`,
 * `deleteMany`) of strings. Only arrays: a string is iterable too, and read letter by letter
 * `deleteMany('abc')` would remove `a`, `b` and `c` and leave `abc`. A `Set` or another iterable
 * is refused as well, so every backend takes the same inputs. Every index from 0 to `length - 1`
 * is checked: a hole (a sparse array) or a key that is not a string is refused, naming its index —
 * `map` and `for…of` treat a hole differently (one skips it, one reads `undefined`), so a backend
 * would answer it one way or the other. A batch method should take {@link copyKeyList} instead,
 * which checks the same and copies the list at once. Cost: one pass over the list.
 */
export function assertKeyList(keys: unknown, operation: string): asserts keys is readonly string[] {
  if (!Array.isArray(keys)) throw notAList(keys, operation, false)
  for (let i = 0; i < keys.length; i++) if (typeof keys[i] !== 'string') throw notAKeyAt(keys, i, operation)
}

/**
 * {@link assertKeyList}, and a copy of the list as it is at the call: what a batch method works
 * on, so a caller that reuses its array once the call is made (`reverse()`, `push()`,
 * `length = 0`) changes nothing of a call that waits its turn. Cost: one pass, one array.
 */
export function copyKeyList(keys: unknown, operation: string): string[] {
  if (!Array.isArray(keys)) throw notAList(keys, operation, false)
  const length = keys.length
  const copy = new Array<string>(length)
  for (let i = 0; i < length; i++) {
    const key: unknown = keys[i]
    if (typeof key !== 'string') throw notAKeyAt(keys, i, operation)
    copy[i] = key
  }
  return copy
}

/**
 * {@link assertKeyList} for `setMany`: `items` must be an array whose every index, 0 to
 * `length - 1`, holds an object with a string `key` (`{ key, value, ttl? }`); a hole, `null`, a
 * string or an item without a string key is refused, naming its index.
 */
export function assertItemList(
  items: unknown,
  operation = 'setMany',
): asserts items is readonly SetManyItem[] {
  if (!Array.isArray(items)) throw notAList(items, operation, true)
  for (let i = 0; i < items.length; i++) checkItemAt(items, i, operation)
}

/**
 * {@link assertItemList}, and a copy taken at the call: a new array of new `{ key, value, ttl }`
 * items, each property read once, so what was checked is what is stored, whatever the caller does
 * to its array or items afterwards (values are not copied). Cost: one pass, one object an item.
 */
export function copyItemList(items: unknown, operation = 'setMany'): SetManyItem[] {
  if (!Array.isArray(items)) throw notAList(items, operation, true)
  const length = items.length
  const copy = new Array<SetManyItem>(length)
  for (let i = 0; i < length; i++) {
    const item: unknown = items[i]
    if (typeof item !== 'object' || item === null) throw notAnItemAt(items, i, operation)
    const { key, value, ttl } = item as SetManyItem
    if (typeof key !== 'string') throw notAnItemKeyAt(key, i, operation)
    // `{ key, val }` would store undefined, `{ key, value, expires }` store without expiry.
    for (const field in item)
      if (field !== 'key' && field !== 'value' && field !== 'ttl') throw notAnItemFieldAt(field, i, operation)
    if (!('value' in item))
      throw new CacheKeyError(`${operation}: items[${i}] has no \`value\` (write { key, value })`)
    copy[i] = { key, value, ttl }
  }
  return copy
}

function checkItemAt(items: readonly unknown[], index: number, operation: string): void {
  const item: unknown = items[index]
  if (typeof item !== 'object' || item === null) throw notAnItemAt(items, index, operation)
  const { key } = item as { key?: unknown }
  if (typeof key !== 'string') throw notAnItemKeyAt(key, index, operation)
}

function notAnItemAt(items: readonly unknown[], index: number, operation: string): CacheKeyError {
  const item = items[index]
  const what = item === undefined && !(index in items) ? HOLE : describeAt(item)
  return new CacheKeyError(`${operation}: items[${index}] is ${what}, not a { key, value } item`)
}

function notAnItemKeyAt(key: unknown, index: number, operation: string): CacheKeyError {
  return new CacheKeyError(`${operation}: items[${index}].key is ${describeAt(key)}: cache keys are strings`)
}

const ITEM_FIELDS: ReadonlySet<string> = new Set(['key', 'value', 'ttl'])
/** Item fields other caches use, too far from ours for a spelling guess. */
const ITEM_FIELD_HABITS: Readonly<Record<string, string>> = Object.assign(Object.create(null), {
  val: 'value',
  data: 'value',
  expires: 'ttl',
  expire: 'ttl',
  expiry: 'ttl',
  ex: 'ttl',
  maxAge: 'ttl',
})

function notAnItemFieldAt(field: string, index: number, operation: string): CacheKeyError {
  const near = ITEM_FIELD_HABITS[field] ?? nearestName(field, ITEM_FIELDS)
  const fix = near === undefined ? '' : `; did you mean \`${near}\`?`
  return new CacheKeyError(
    `${operation}: items[${index}].${field} is not a field of an item (key, value, ttl)${fix}`,
  )
}

function notAKeyAt(keys: readonly unknown[], index: number, operation: string): CacheKeyError {
  const key = keys[index]
  const what = key === undefined && !(index in keys) ? HOLE : describeAt(key)
  return new CacheKeyError(`${operation}: keys[${index}] is ${what}: cache keys are strings`)
}

/** What a list holds at an index it never had an item at. */
const HOLE = 'a hole (the list is sparse)'

/** What is at an index of a list: `null`, `undefined`, `7 (a number)`, `the string "k"`, `a Map`… */
function describeAt(value: unknown): string {
  if (value === null || value === undefined || typeof value === 'string' || typeof value === 'object')
    return describeGiven(value)
  if (typeof value === 'function') return 'a function'
  return `${String(value)} (a ${typeof value})`
}

function notAList(list: unknown, operation: string, items: boolean): CacheKeyError {
  const of = items ? '{ key, value } items' : 'keys'
  let fix = ''
  if (typeof list === 'string') {
    if (!items) fix = ` (write [${JSON.stringify(truncate(list))}])`
  } else if (list !== null && (typeof list === 'object' || typeof list === 'function')) {
    // Spread, a Map would give [key, value] pairs: no hint for it.
    if (
      typeof (list as { [Symbol.iterator]?: unknown })[Symbol.iterator] === 'function' &&
      !(list instanceof Map)
    )
      fix = ` (spread it into one: [...${items ? 'items' : 'keys'}])`
    else if (items && 'key' in list) fix = ' (write [item])'
  }
  return new CacheKeyError(`${operation}: expected a list of ${of}, got ${describeGiven(list)}${fix}`)
}

/**
 * What an error says was given where a list was expected: `the string "abc"`, `a Set`,
 * `a plain object`, `undefined`…
 */
export function describeGiven(value: unknown): string {
  if (typeof value === 'string') return `the string ${JSON.stringify(truncate(value))}`
  if (value === null || (typeof value !== 'object' && typeof value !== 'function')) return String(value)
  const proto = Object.getPrototypeOf(value)
  if (proto === Object.prototype || proto === null) return 'a plain object'
  const kind = (proto as { constructor?: { name?: unknown } }).constructor?.name
  if (typeof kind === 'string' && kind !== '') return `${/^[AEIOU]/.test(kind) ? 'an' : 'a'} ${kind}`
  return 'an object'
}

/** Throws a {@link CacheKeyError} for a namespace that is not a non-empty string. */
export function assertNamespace(namespace: unknown, what = 'namespace'): asserts namespace is string {
  if (typeof namespace !== 'string' || namespace.length === 0) {
    throw new CacheKeyError(`${what}: expected a non-empty string, got ${JSON.stringify(namespace)}`)
  }
}

/** Marks a key written by {@link wellFormedKey} in its escaped form; never left in a key as it is. */
const ESCAPED_KEY = '\uffff'

/**
 * `key` as a string that UTF-8 encodes without loss, for backends that send keys as UTF-8
 * (Redis, memcached). A well-formed key is returned as it is. A key UTF-8 cannot hold — one with
 * a lone surrogate, which would become U+FFFD and share its entry with every other such key — is
 * written as U+FFFF followed by the base64url of its UTF-16 code units; so is any key that
 * contains U+FFFF (a noncharacter) itself, so the mapping stays one-to-one. Cost: one native
 * scan of the key.
 */
export function wellFormedKey(key: string): string {
  if ((key as string & { isWellFormed(): boolean }).isWellFormed() && !key.includes(ESCAPED_KEY)) return key
  return ESCAPED_KEY + Buffer.from(key, 'utf16le').toString('base64url')
}

/**
 * The key {@link wellFormedKey} was given, from what it returned: how a backend that lists keys
 * reads them back. A stored key that is not in the escaped form is returned as it is.
 */
export function keyFromWellFormed(stored: string): string {
  if (!stored.startsWith(ESCAPED_KEY)) return stored
  const units = Buffer.from(stored.slice(1), 'base64url')
  // A foreign key that merely starts with U+FFFF (not written by wellFormedKey) stays as it is.
  if (units.length % 2 !== 0 || units.toString('base64url') !== stored.slice(1)) return stored
  return units.toString('utf16le')
}

/** `namespace:key`, or `key` when there is no namespace. */
export function namespacedKey(namespace: string | undefined, key: string): string {
  return namespace === undefined ? key : `${namespace}:${key}`
}

/**
 * A deterministic text for a value: object keys sorted, so `{a, b}` and `{b, a}` give the same
 * text; types kept apart, so `1` and `'1'` do not; every other difference kept (`-0` and `0`,
 * the bytes of a buffer, the order of URLSearchParams). Values whose full state cannot be read
 * (class instances, functions, unregistered symbols, WeakMaps, promises…) and circular structures
 * throw a {@link CacheSerializationError}.
 */
export function stableStringify(value: unknown): string {
  return write(value, '$', new Set(), (path, what) => {
    throw new CacheSerializationError(`cannot build a cache key from ${what} at ${path}`, path)
  })
}

type Fail = (path: string, what: string) => never

function write(value: unknown, path: string, seen: Set<object>, fail: Fail): string {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value)
    case 'number':
      if (Object.is(value, -0)) return '-0'
      return Number.isFinite(value) ? String(value) : `#${value}`
    case 'boolean':
      return value ? 'true' : 'false'
    case 'undefined':
      return 'undefined'
    case 'bigint':
      return `${value}n`
    case 'symbol':
      return symbolText(value, path, fail)
    case 'function':
      return fail(path, `a function (${value.name || 'anonymous'})`)
  }
  if (value === null) return 'null'
  const object = value as object
  if (seen.has(object)) return fail(path, 'a circular reference')
  seen.add(object)
  try {
    return objectText(object, path, seen, fail)
  } finally {
    seen.delete(object)
  }
}

function symbolText(symbol: symbol, path: string, fail: Fail): string {
  // Only a registered symbol is the same in every process.
  const name = Symbol.keyFor(symbol)
  if (name === undefined) return fail(path, `a symbol that is not from Symbol.for() (${symbol.toString()})`)
  return `Symbol.for(${JSON.stringify(name)})`
}

/** Prototypes whose instances are keyed by a text of their whole value. */
const BOXED = new Map<unknown, string>([
  [Boolean.prototype, 'Boolean'],
  [Number.prototype, 'Number'],
  [String.prototype, 'String'],
  [BigInt.prototype, 'BigInt'],
  [Symbol.prototype, 'Symbol'],
])

function objectText(object: object, path: string, seen: Set<object>, fail: Fail): string {
  const proto = Object.getPrototypeOf(object)
  if (proto === Object.prototype) {
    if (isArgumentsObject(object))
      return fail(path, 'an `arguments` object (pass the values themselves, or build the key from them)')
    return propertiesText(object, '', path, seen, fail)
  }
  if (proto === null) return propertiesText(object, 'null', path, seen, fail)
  if (proto === Array.prototype) return arrayText(object as unknown[], path, seen, fail)
  const text = builtinText(object, proto, path, seen, fail)
  // Everything a built-in holds besides its value (`date.tz`, `buffer.encoding`) is refused, the
  // same way for every type: a key would have to see it, and an argument rarely carries any.
  if (hasExtraOwnProperties(object, proto))
    return fail(path, `a ${describeType(proto)} with properties of its own besides its value`)
  return text
}

function builtinText(object: object, proto: object, path: string, seen: Set<object>, fail: Fail): string {
  if (proto === Date.prototype) return `D(${(object as Date).getTime()})`
  if (proto === Map.prototype) {
    // In insertion order: iterating a Map is part of what a function sees.
    const parts: string[] = []
    let i = 0
    for (const [k, v] of object as Map<unknown, unknown>) {
      if (typeof k === 'object' ? k !== null : typeof k === 'function')
        fail(
          `${path}<key ${i}>`,
          'an object used as a Map key (a Map finds it by identity, which no key can hold)',
        )
      parts.push(`${write(k, `${path}<key ${i}>`, seen, fail)}=>${write(v, `${path}.get(${i})`, seen, fail)}`)
      i++
    }
    return `Map{${parts.join(',')}}`
  }
  if (proto === Set.prototype) {
    const parts: string[] = []
    let i = 0
    for (const v of object as Set<unknown>) {
      if (typeof v === 'object' ? v !== null : typeof v === 'function')
        fail(`${path}<item ${i}>`, 'an object in a Set (a Set finds it by identity, which no key can hold)')
      parts.push(write(v, `${path}<item ${i++}>`, seen, fail))
    }
    return `Set{${parts.join(',')}}`
  }
  if (proto === RegExp.prototype) {
    const regex = object as RegExp
    return `RegExp(${JSON.stringify(String(regex))},${regex.lastIndex})`
  }
  if (proto === URL.prototype) return `URL(${JSON.stringify((object as URL).href)})`
  if (proto === URLSearchParams.prototype) return `URLSearchParams(${JSON.stringify(String(object))})`
  if (typeof Headers === 'function' && proto === Headers.prototype)
    return `Headers(${JSON.stringify([...(object as Headers)])})`
  if (proto === ArrayBuffer.prototype || proto === SharedArrayBuffer.prototype)
    return `${(proto as { constructor: Function }).constructor.name}${bufferShape(object as ArrayBuffer)}(${Buffer.from(object as ArrayBuffer).toString('base64')})`
  if (ArrayBuffer.isView(object) && isBuiltinView(proto)) {
    if (bufferShape(object.buffer) !== '')
      return fail(
        path,
        'a view of a resizable buffer (whether it tracks the buffer as it grows cannot be seen)',
      )
    const bytes = Buffer.from(object.buffer, object.byteOffset, object.byteLength).toString('base64')
    return `${(proto as { constructor: Function }).constructor.name}${viewPlace(object)}(${bytes})`
  }
  const boxed = BOXED.get(proto)
  if (boxed !== undefined)
    return `${boxed}(${write((proto as { valueOf(): unknown }).valueOf.call(object), path, seen, fail)})`
  const kind =
    typeof (proto as { constructor?: unknown }).constructor === 'function'
      ? (proto as { constructor: Function }).constructor.name
      : ''
  return fail(
    path,
    kind
      ? `an instance of ${kind} (a class instance can hold state a key cannot see: #private fields, closures, internal slots)`
      : 'an object with a custom prototype',
  )
}

/**
 * Where a view sits, when it is not the whole of its own buffer: `@offset/length of the buffer`
 * (code can read `byteOffset` and `buffer`, and a view of a small pooled `Buffer` is a window on
 * a shared 8 KB pool), and `[shared]` for a view of a SharedArrayBuffer.
 */
function viewPlace(view: ArrayBufferView): string {
  const shared = typeof SharedArrayBuffer === 'function' && view.buffer instanceof SharedArrayBuffer
  const whole = view.byteOffset === 0 && view.byteLength === view.buffer.byteLength
  return `${shared ? '[shared]' : ''}${whole ? '' : `@${view.byteOffset}/${view.buffer.byteLength}`}`
}

/** `[resizable max]` for a resizable (or growable) buffer: it behaves differently from a fixed one. */
function bufferShape(buffer: ArrayBufferLike): string {
  const b = buffer as { resizable?: boolean; growable?: boolean; maxByteLength?: number }
  return b.resizable === true || b.growable === true ? `[resizable ${b.maxByteLength}]` : ''
}

function describeType(proto: object): string {
  const name = (proto as { constructor?: { name?: unknown } }).constructor?.name
  return typeof name === 'string' ? name : 'built-in object'
}

/** A typed array, `Buffer` or `DataView` of the platform itself, not a subclass. */
function isBuiltinView(proto: { constructor?: { name?: unknown } }): boolean {
  const name = proto.constructor?.name
  if (typeof name !== 'string') return false
  if (name === 'Buffer') return proto === Buffer.prototype
  return (globalThis as Record<string, { prototype?: unknown } | undefined>)[name]?.prototype === proto
}

function propertiesText(object: object, tag: string, path: string, seen: Set<object>, fail: Fail): string {
  const parts: string[] = []
  for (const key of Reflect.ownKeys(object)) {
    if (typeof key === 'symbol') return fail(`${path}[${key.toString()}]`, 'a symbol-keyed property')
    const descriptor = Object.getOwnPropertyDescriptor(object, key)!
    if (descriptor.get !== undefined || descriptor.set !== undefined)
      return fail(`${path}.${key}`, 'a getter or setter (its value is computed, not held)')
    // A non-enumerable property is seen by some code (`in`, direct reads) and not by other
    // (Object.keys, spreading): it is keyed apart from an enumerable one.
    const mark = descriptor.enumerable ? '' : '~'
    parts.push(`${mark}${JSON.stringify(key)}:${write(descriptor.value, `${path}.${key}`, seen, fail)}`)
  }
  return `${tag}{${parts.sort().join(',')}}`
}

function arrayText(array: unknown[], path: string, seen: Set<object>, fail: Fail): string {
  const { keys, items, extra } = arrayShape(array)
  if (extra) return fail(path, 'an array with properties besides its items')
  if (items === array.length) {
    const parts = new Array<string>(items)
    for (let i = 0; i < items; i++) parts[i] = itemText(array, i, `${path}[${i}]`, seen, fail)
    return `[${parts.join(',')}]`
  }
  // Holes: written as the length and the items present, in time proportional to those (an
  // array with one item at index 2^32 - 2 is two numbers, not four billion commas).
  const parts = new Array<string>(items)
  for (let k = 0; k < items; k++) {
    const index = keys[k] as string
    parts[k] = `${index}:${itemText(array, index, `${path}[${index}]`, seen, fail)}`
  }
  return `Array(${array.length}){${parts.join(',')}}`
}

/** One array item, by the same rules as an object's properties: no getters, non-enumerable apart. */
function itemText(array: unknown[], index: number | string, path: string, seen: Set<object>, fail: Fail) {
  const descriptor = Object.getOwnPropertyDescriptor(array, index)!
  if (descriptor.get !== undefined || descriptor.set !== undefined)
    return fail(path, 'a getter or setter (its value is computed, not held)')
  return `${descriptor.enumerable ? '' : '~'}${write(descriptor.value, path, seen, fail)}`
}

/** Argument lists whose stable text is longer than this are hashed instead of inlined. */
const INLINE_LIMIT = 64

/**
 * The key part for a list of arguments: short argument texts are kept readable
 * (`user:42` style debugging), longer ones are replaced by their SHA-256. An argument that cannot
 * be keyed by its full value throws a {@link CacheArgumentError} naming it.
 */
export function argumentsKey(args: readonly unknown[]): string {
  if (args.length === 0) return '()'
  if (args.length === 1) {
    const only = args[0]
    if (typeof only === 'string' && only.length <= INLINE_LIMIT && !only.includes(':'))
      return JSON.stringify(only)
    if (typeof only === 'number' && Number.isFinite(only) && !Object.is(only, -0)) return String(only)
  }
  const parts = new Array<string>(args.length)
  for (let i = 0; i < args.length; i++) {
    parts[i] = write(args[i], `$[${i}]`, new Set(), (path, what) => {
      throw new CacheArgumentError(
        `cannot build a cache key from argument ${i} (${path}): it is ${what}. ` +
          'Pass a `key` option that builds the key from what the result depends on.',
        i,
        path,
      )
    })
  }
  const text = `[${parts.join(',')}]`
  return text.length <= INLINE_LIMIT ? text : `#${hashKey(text)}`
}
