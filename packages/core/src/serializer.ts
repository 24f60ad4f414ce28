import { deflateRawSync, inflateRawSync } from 'node:zlib'
import { deserialize as v8Deserialize, serialize as v8Serialize } from 'node:v8'
import { arrayShape, hasExtraOwnProperties } from './builtins.js'
import { CacheConfigError, CacheSerializationError } from './errors.js'
import { checkOption } from './option-checks.js'
import { parseSize, type Size } from './sizes.js'

/**
 * Turns values into bytes and back, for backends that store outside the process.
 * A custom serializer is any object with these two methods.
 */
export interface Serializer {
  readonly name: string
  serialize(value: unknown): Buffer
  deserialize(bytes: Buffer): unknown
}

/*
 * The tagged JSON format. Plain JSON values are written as themselves, so `5` is `5` and
 * `"a"` is `"a"` (a bare integer therefore also reads as a counter written by `incr`).
 * Everything JSON would mangle is written as `{"$c": tag, "v": payload}`; a user object that
 * itself has a `$c` key is wrapped as tag `O` so it can never be mistaken for a tag.
 */
const TAG = '$c'

type Tagged = { [TAG]: string; v?: unknown }

function tagged(tag: string, v?: unknown): Tagged {
  return v === undefined ? { [TAG]: tag } : { [TAG]: tag, v }
}

function fail(path: string, what: string): never {
  throw new CacheSerializationError(`cannot serialize ${what} at ${path}`, path)
}

/**
 * How deep a value may nest. Deeper, walking it would exhaust the stack (a bare `RangeError`
 * from the serializer, or from the structured clone a memory backend makes); such a value is
 * refused with a {@link CacheSerializationError} instead. JSON and V8's own formats read back
 * anything this deep.
 */
export const MAX_VALUE_DEPTH = 1000

function tooDeep(path: string): never {
  const shown = path.length > 80 ? `${path.slice(0, 80)}…` : path
  throw new CacheSerializationError(
    `cannot serialize a value nested more than ${MAX_VALUE_DEPTH} levels deep (at ${shown})`,
    shown,
  )
}

function encode(value: unknown, path: string, seen: Set<object>): unknown {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value
    case 'number':
      if (Number.isFinite(value)) return Object.is(value, -0) ? tagged('n', '-0') : value
      return tagged('n', String(value))
    case 'undefined':
      return tagged('u')
    case 'bigint':
      return tagged('N', value.toString())
    case 'function':
      return fail(path, `a function (${value.name || 'anonymous'})`)
    case 'symbol':
      return fail(path, `a symbol (${value.toString()})`)
  }
  if (value === null) return null
  const object = value as object
  if (seen.has(object)) fail(path, 'a circular reference')
  // `seen` holds the objects on the path to this one: its size is the depth.
  if (seen.size >= MAX_VALUE_DEPTH) tooDeep(path)
  seen.add(object)
  try {
    return encodeObject(object, path, seen)
  } finally {
    seen.delete(object)
  }
}

function encodeObject(object: object, path: string, seen: Set<object>): unknown {
  const proto = Object.getPrototypeOf(object)
  if (proto === Array.prototype) return encodeArray(object as unknown[], path, seen)
  if (proto === Object.prototype || proto === null) {
    assertOnlyEnumerableStrings(object, path)
    const out: Record<string, unknown> = {}
    let hasTagKey = false
    for (const key of Object.keys(object)) {
      if (key === TAG) hasTagKey = true
      const v = (object as Record<string, unknown>)[key]
      // JSON drops undefined properties; we keep them so the value round-trips exactly.
      defineOwn(out, key, encode(v, `${path}.${key}`, seen))
    }
    if (proto === null) return tagged('P', out)
    return hasTagKey ? tagged('O', out) : out
  }
  const encoded = encodeBuiltin(object, proto, path, seen)
  // A property added to a built-in (`date.tz`, `buffer.encoding`) would be dropped: refuse it.
  if (hasExtraOwnProperties(object, proto))
    fail(
      path,
      `a ${proto.constructor.name} with properties of its own besides its value (they would be lost)`,
    )
  return encoded
}

function encodeBuiltin(object: object, proto: object, path: string, seen: Set<object>): unknown {
  if (proto === Date.prototype) {
    const time = (object as Date).getTime()
    return tagged('D', Number.isNaN(time) ? null : (object as Date).toISOString())
  }
  if (proto === Buffer.prototype) return tagged('B', (object as Buffer).toString('base64'))
  if (proto === Uint8Array.prototype) {
    const bytes = object as Uint8Array
    return tagged('U8', Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64'))
  }
  if (proto === Map.prototype) {
    const entries: unknown[] = []
    let i = 0
    for (const [k, v] of object as Map<unknown, unknown>) {
      entries.push([encode(k, `${path}<key ${i}>`, seen), encode(v, `${path}.get(${i})`, seen)])
      i++
    }
    return tagged('M', entries)
  }
  if (proto === Set.prototype) {
    const items: unknown[] = []
    let i = 0
    for (const v of object as Set<unknown>) items.push(encode(v, `${path}<item ${i++}>`, seen))
    return tagged('S', items)
  }
  if (proto === RegExp.prototype) {
    const regex = object as RegExp
    return tagged(
      'R',
      regex.lastIndex === 0 ? [regex.source, regex.flags] : [regex.source, regex.flags, regex.lastIndex],
    )
  }
  if (proto === URL.prototype) return tagged('L', (object as URL).href)
  const kind = (proto as { constructor?: { name?: string } }).constructor?.name ?? 'object'
  return fail(
    path,
    `an instance of ${kind} (only plain objects, arrays, Date, Buffer, Uint8Array, Map, Set, BigInt, RegExp and URL round-trip, not subclasses of them; use a custom serializer for classes)`,
  )
}

/** Arrays as JSON arrays; one with holes as its length and the items present (a hole is not `undefined`). */
function encodeArray(array: unknown[], path: string, seen: Set<object>): unknown {
  const { keys, items, extra } = arrayShape(array)
  if (extra) fail(path, 'an array with properties besides its items (they would be lost)')
  if (items === array.length) {
    const out = new Array(items)
    for (let i = 0; i < items; i++) out[i] = encode(array[i], `${path}[${i}]`, seen)
    return out
  }
  const entries = new Array(items)
  for (let k = 0; k < items; k++) {
    const index = Number(keys[k])
    entries[k] = [index, encode(array[index], `${path}[${index}]`, seen)]
  }
  return tagged('A', [array.length, entries])
}

/** Refuses what JSON would drop from a plain object: symbol-keyed and non-enumerable properties. */
function assertOnlyEnumerableStrings(object: object, path: string): void {
  const keys = Reflect.ownKeys(object)
  if (keys.length === Object.keys(object).length) return
  for (const key of keys) {
    if (typeof key === 'symbol')
      fail(`${path}[${key.toString()}]`, 'a symbol-keyed property (it would be lost)')
    if (!Object.getOwnPropertyDescriptor(object, key)!.enumerable)
      fail(`${path}.${key}`, 'a non-enumerable property (it would be lost)')
  }
}

function defineOwn(target: Record<string, unknown>, key: string, value: unknown): void {
  // `target[key] = value` with key "__proto__" would replace the prototype: define instead.
  if (key === '__proto__')
    Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true })
  else target[key] = value
}

function decode(value: unknown): unknown {
  if (typeof value !== 'object' || value === null) return value
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = decode(value[i])
    return value
  }
  const record = value as Record<string, unknown>
  if (Object.hasOwn(record, TAG)) return decodeTagged(record as Tagged)
  // JSON.parse creates "__proto__" as an own data property, so decoding in place is safe.
  for (const key of Object.keys(record)) record[key] = decode(record[key])
  return record
}

function decodeTagged(t: Tagged): unknown {
  const v = t.v
  switch (t[TAG]) {
    case 'u':
      return undefined
    case 'n':
      return v === '-0' ? -0 : Number(v)
    case 'N':
      return BigInt(v as string)
    case 'D':
      return new Date(v === null ? Number.NaN : (v as string))
    case 'B':
      return Buffer.from(v as string, 'base64')
    case 'U8':
      return new Uint8Array(Buffer.from(v as string, 'base64'))
    case 'M':
      return new Map((v as [unknown, unknown][]).map(([k, val]) => [decode(k), decode(val)]))
    case 'S':
      return new Set((v as unknown[]).map(decode))
    case 'R': {
      const [source, flags, lastIndex] = v as [string, string, number?]
      const regex = new RegExp(source, flags)
      if (lastIndex !== undefined) regex.lastIndex = lastIndex
      return regex
    }
    case 'A': {
      const [length, entries] = v as [number, [number, unknown][]]
      const array = new Array(length)
      for (const [index, item] of entries) array[index] = decode(item)
      return array
    }
    case 'P': {
      const record = v as Record<string, unknown>
      const out = Object.create(null) as Record<string, unknown>
      for (const key of Object.keys(record)) out[key] = decode(record[key])
      return out
    }
    case 'L':
      return new URL(v as string)
    case 'O': {
      const record = v as Record<string, unknown>
      for (const key of Object.keys(record)) record[key] = decode(record[key])
      return record
    }
    default:
      throw new CacheSerializationError(`unknown tag ${JSON.stringify(t[TAG])} in stored value`)
  }
}

function isPlainJson(value: unknown, depth: number): boolean {
  // Fast path: values made only of strings, finite numbers, booleans, null, plain objects and
  // arrays encode with one JSON.stringify call. Anything else goes through the tagged encoder.
  if (value === null) return true
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return true
    case 'number':
      return Number.isFinite(value) && !Object.is(value, -0)
    case 'object': {
      if (depth > 64) return false
      const proto = Object.getPrototypeOf(value)
      if (proto === Array.prototype) {
        const array = value as unknown[]
        for (let i = 0; i < array.length; i++) if (!isPlainJson(array[i], depth + 1)) return false
        // Holes and added properties are what JSON would lose: the tagged path handles them.
        const { items, extra } = arrayShape(array)
        return items === array.length && !extra
      }
      if (proto !== Object.prototype) return false
      let count = 0
      for (const key in value) {
        if (key === TAG || !isPlainJson((value as Record<string, unknown>)[key], depth + 1)) return false
        count++
      }
      // Symbol-keyed or non-enumerable properties: JSON would drop them.
      return Reflect.ownKeys(value).length === count
    }
    default:
      return false
  }
}

/**
 * Throws the {@link CacheSerializationError} the default serializer would throw for `value` (a
 * function, symbol, class instance or circular reference, with its path), or returns. Costs a
 * walk of the value, without building the text for plain JSON values.
 */
export function assertSerializable(value: unknown): void {
  if (isPlainJson(value, 0)) return
  encode(value, '$', new Set())
}

/**
 * The default serializer: JSON text with tags for what JSON would mangle. Round-trips `Date`,
 * `Buffer`, `Uint8Array`, `Map`, `Set`, `BigInt`, `undefined`, `NaN`/`±Infinity`/`-0`, `RegExp`
 * and `URL`; throws {@link CacheSerializationError} (a `TypeError`) naming the path for
 * functions, symbols, class instances and circular references. Parsing never pollutes prototypes.
 */
export const jsonSerializer: Serializer = {
  name: 'json',
  serialize(value) {
    return Buffer.from(stringifyTagged(value))
  },
  deserialize(bytes) {
    return parseTagged(bytes.toString('utf8'))
  },
}

/**
 * The text {@link jsonSerializer} stores, before UTF-8 encoding. For clients that send strings
 * (ioredis writes a string without the extra copy a Buffer costs).
 */
export function stringifyTagged(value: unknown): string {
  return JSON.stringify(isPlainJson(value, 0) ? value : encode(value, '$', new Set()))
}

/**
 * The JSON value {@link stringifyTagged} would write, before it becomes text: plain JSON values as
 * they are, everything else tagged. For stores with their own (JSON) serializer, such as a Keyv
 * instance: whatever that serializer does with a JSON value, {@link fromTaggedJson} gets the
 * original back. Throws like {@link jsonSerializer} for what cannot round-trip.
 */
export function toTaggedJson(value: unknown): unknown {
  return isPlainJson(value, 0) ? value : encode(value, '$', new Set())
}

/** The value a {@link toTaggedJson} tree stands for. Does not modify `tree` (a tree without tags is returned as it is). */
export function fromTaggedJson(tree: unknown): unknown {
  if (!hasTags(tree, 0)) return tree
  return decode(JSON.parse(JSON.stringify(tree)))
}

function hasTags(tree: unknown, depth: number): boolean {
  if (typeof tree !== 'object' || tree === null || depth > 512) return false
  if (Array.isArray(tree)) return tree.some((item) => hasTags(item, depth + 1))
  if (Object.getPrototypeOf(tree) !== Object.prototype) return false
  if (Object.hasOwn(tree, TAG)) return true
  for (const key in tree) if (hasTags((tree as Record<string, unknown>)[key], depth + 1)) return true
  return false
}

/** Reads text written by {@link stringifyTagged}. Throws {@link CacheSerializationError} if it is not JSON. */
export function parseTagged(text: string): unknown {
  let tree: unknown
  try {
    tree = JSON.parse(text)
  } catch (cause) {
    throw new CacheSerializationError('stored value is not valid JSON', '$', { cause })
  }
  // Text with no tag key (`$c`, or one spelled with \u escapes) is plain JSON: skip the walk.
  return text.includes('$c') || text.includes('\\u') ? decode(tree) : tree
}

/** Prototypes whose instances V8's serializer brings back as they were (when nothing was added to them). */
const CLONABLE = new Set<unknown>([
  Date.prototype,
  Map.prototype,
  Set.prototype,
  ArrayBuffer.prototype,
  DataView.prototype,
  Buffer.prototype,
  Boolean.prototype,
  Number.prototype,
  String.prototype,
  BigInt.prototype,
  ...[
    Int8Array,
    Uint8Array,
    Uint8ClampedArray,
    Int16Array,
    Uint16Array,
    Int32Array,
    Uint32Array,
    Float32Array,
    Float64Array,
    BigInt64Array,
    BigUint64Array,
  ].map((type) => type.prototype),
])

/**
 * Throws the {@link CacheSerializationError} for what V8's serializer (and a structured clone)
 * would not bring back as it was, naming the path: a class instance or a subclass of a built-in
 * (it comes back as a plain object or as the base type), an Error, an object with a null
 * prototype, a symbol-keyed or non-enumerable property, a property added to a built-in, a
 * function or a symbol. Cycles are fine.
 */
export function assertStructuredClonable(
  value: unknown,
  path = '$',
  seen = new Set<object>(),
  depth = 0,
): void {
  if (typeof value === 'function')
    throw new CacheSerializationError(
      `cannot serialize a function (${value.name || 'anonymous'}) at ${path}`,
      path,
    )
  if (typeof value === 'symbol')
    throw new CacheSerializationError(`cannot serialize a symbol (${value.toString()}) at ${path}`, path)
  if (typeof value !== 'object' || value === null || seen.has(value)) return
  if (depth >= MAX_VALUE_DEPTH) tooDeep(path)
  seen.add(value)
  const proto = Object.getPrototypeOf(value)
  if (proto === Object.prototype || proto === Array.prototype) {
    // V8 keeps an array's holes and its enumerable named properties, and an object's
    // enumerable string-keyed ones: only symbol-keyed and non-enumerable ones are lost.
    for (const key of Reflect.ownKeys(value)) {
      if (typeof key === 'symbol')
        fail(`${path}[${key.toString()}]`, 'a symbol-keyed property (it would be lost)')
      const descriptor = Object.getOwnPropertyDescriptor(value, key)!
      if (!descriptor.enumerable) {
        if (key === 'length' && proto === Array.prototype) continue
        fail(`${path}.${key}`, 'a non-enumerable property (it would be lost)')
      }
      if ('value' in descriptor)
        assertStructuredClonable(descriptor.value, childPath(path, key, proto), seen, depth + 1)
    }
    return
  }
  if (proto === RegExp.prototype && (value as RegExp).lastIndex !== 0)
    fail(path, 'a RegExp with a lastIndex (it would be lost)')
  if (!CLONABLE.has(proto) && proto !== RegExp.prototype) {
    const kind =
      proto === null
        ? 'an object with a null prototype'
        : `an instance of ${proto.constructor?.name ?? 'a class'}`
    fail(path, `${kind} (it would come back as a plain object, or as its base type)`)
  }
  if (hasExtraOwnProperties(value, proto))
    fail(
      path,
      `a ${proto.constructor.name} with properties of its own besides its value (they would be lost)`,
    )
  if (value instanceof Map) {
    let i = 0
    for (const [k, v] of value) {
      assertStructuredClonable(k, `${path}<key ${i}>`, seen, depth + 1)
      assertStructuredClonable(v, `${path}.get(${i++})`, seen, depth + 1)
    }
  } else if (value instanceof Set) {
    let i = 0
    for (const v of value) assertStructuredClonable(v, `${path}<item ${i++}>`, seen, depth + 1)
  }
}

function childPath(path: string, key: string, proto: unknown): string {
  return proto === Array.prototype && /^\d+$/.test(key) ? `${path}[${key}]` : `${path}.${key}`
}

/**
 * V8's structured-clone serializer: faster for large objects, keeps class-free object graphs with
 * cycles, but its bytes are tied to the Node.js major version that wrote them.
 */
export const v8Serializer: Serializer = {
  name: 'v8',
  serialize(value) {
    assertStructuredClonable(value)
    try {
      return v8Serialize(value)
    } catch (cause) {
      throw new CacheSerializationError(`cannot serialize value with v8: ${(cause as Error).message}`, '$', {
        cause,
      })
    }
  },
  deserialize(bytes) {
    return v8Deserialize(bytes)
  },
}

/** Options of {@link createCodec}. */
export interface CodecOptions {
  /** Serializer to use. Default: {@link jsonSerializer}. */
  serializer?: Serializer | 'json' | 'v8'
  /**
   * Compress serialized values at least this large (deflate). A value is stored compressed only
   * if that makes it smaller. Default: off. Costs CPU on set and on get of large values.
   */
  compressThreshold?: Size | false
}

/**
 * Marks a compressed value. Neither JSON text nor V8's format (0xFF) starts with a NUL byte; what
 * another serializer writes starting with one is always stored compressed, so a stored value that
 * starts with the marker is always compressed.
 */
const COMPRESSED = 0x00

/**
 * What backends that leave the process use to turn values into bytes: a serializer, optional
 * compression, and the convention that a bare decimal integer is a counter written by `incr`.
 */
export interface Codec {
  readonly serializer: Serializer
  encode(value: unknown): Buffer
  decode(bytes: Buffer | string): unknown
}

export function resolveSerializer(serializer: CodecOptions['serializer']): Serializer {
  if (serializer === undefined || serializer === 'json') return jsonSerializer
  if (serializer === 'v8') return v8Serializer
  if (typeof serializer?.serialize !== 'function' || typeof serializer.deserialize !== 'function') {
    throw new CacheConfigError(
      'serializer',
      'expected "json", "v8" or an object with serialize() and deserialize()',
    )
  }
  return serializer
}

const INTEGER = /^-?\d{1,20}$/

export function createCodec(options: CodecOptions = {}): Codec {
  const serializer = resolveSerializer(options.serializer)
  const threshold =
    options.compressThreshold === undefined || options.compressThreshold === false
      ? Number.POSITIVE_INFINITY
      : checkOption('compressThreshold', () =>
          parseSize(options.compressThreshold as Size, 'compressThreshold'),
        )
  const custom = serializer !== jsonSerializer && serializer !== v8Serializer
  return {
    serializer,
    encode(value) {
      // With the v8 serializer, a safe integer is stored as the decimal text incr writes (JSON
      // writes it so already): a counter then stays one format, which a server adds to in one
      // step (Redis INCRBY), and decode reads it back as the same number. A serializer of your
      // own is given every value (it may encrypt them).
      if (
        serializer === v8Serializer &&
        typeof value === 'number' &&
        Number.isSafeInteger(value) &&
        !Object.is(value, -0)
      )
        return Buffer.from(String(value), 'latin1')
      let bytes = serializer.serialize(value)
      // A serializer of your own may hand out a view of a buffer it reuses (msgpackr's
      // REUSE_BUFFER_MODE): a backend that sends at the end of the tick would send the bytes of
      // the last value under every key. Its output is copied (Buffer.from copies a view's bytes).
      if (!Buffer.isBuffer(bytes) || custom) bytes = Buffer.from(bytes as Uint8Array | string)
      // Bytes that start like the marker are compressed whatever their size (see COMPRESSED).
      const marked = bytes.length > 0 && bytes[0] === COMPRESSED
      if (marked || bytes.length >= threshold) {
        const packed = deflateRawSync(bytes)
        if (marked || packed.length + 1 < bytes.length) return Buffer.concat([Buffer.of(COMPRESSED), packed])
      }
      return bytes
    },
    decode(stored) {
      // JSON text read as a string (a TEXT column, a Redis reply) is parsed as it is: encoding it
      // to bytes only to decode them again would cost a copy each way. Compressed values start
      // with NUL: those need their bytes.
      if (typeof stored === 'string' && serializer === jsonSerializer && stored.charCodeAt(0) !== COMPRESSED)
        return decodeJsonText(stored)
      const bytes = typeof stored === 'string' ? Buffer.from(stored) : stored
      if (bytes.length > 0 && bytes[0] === COMPRESSED) {
        let inflated: Buffer | undefined
        try {
          inflated = inflateRawSync(bytes.subarray(1))
        } catch {
          // Written uncompressed by an earlier version, which stored such bytes as they were.
        }
        if (inflated !== undefined) return serializer.deserialize(inflated)
      }
      // Counters written by incr are plain integers whatever the serializer.
      if (bytes.length <= 21 && bytes.length > 0 && bytes[0] !== 0xff) {
        const text = bytes.toString('latin1')
        if (INTEGER.test(text)) return Number(text)
      }
      try {
        return serializer.deserialize(bytes)
      } catch (cause) {
        if (cause instanceof CacheSerializationError) throw cause
        throw new CacheSerializationError(
          `cannot deserialize stored value with ${serializer.name}: ${(cause as Error).message}`,
          '$',
          { cause },
        )
      }
    },
  }
}

/** What the codec decodes from JSON text: a counter written by `incr` (a bare integer), else tagged JSON. */
function decodeJsonText(text: string): unknown {
  if (text.length <= 21 && INTEGER.test(text)) return Number(text)
  return parseTagged(text)
}
