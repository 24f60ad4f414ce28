import { deflateRawSync, inflateRawSync } from 'node:zlib'
import { deserialize as v8Deserialize, serialize as v8Serialize } from 'node:v8'
import { CacheSerializationError } from './errors.js'
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
  seen.add(object)
  try {
    return encodeObject(object, path, seen)
  } finally {
    seen.delete(object)
  }
}

function encodeObject(object: object, path: string, seen: Set<object>): unknown {
  if (Array.isArray(object)) {
    const out = new Array(object.length)
    for (let i = 0; i < object.length; i++) out[i] = encode(object[i], `${path}[${i}]`, seen)
    return out
  }
  const proto = Object.getPrototypeOf(object)
  if (proto === Object.prototype || proto === null) {
    const out: Record<string, unknown> = {}
    let hasTagKey = false
    for (const key of Object.keys(object)) {
      if (key === TAG) hasTagKey = true
      const v = (object as Record<string, unknown>)[key]
      // JSON drops undefined properties; we keep them so the value round-trips exactly.
      defineOwn(out, key, encode(v, `${path}.${key}`, seen))
    }
    return hasTagKey ? tagged('O', out) : out
  }
  if (object instanceof Date) return tagged('D', Number.isNaN(object.getTime()) ? null : object.toISOString())
  if (Buffer.isBuffer(object)) return tagged('B', object.toString('base64'))
  if (object instanceof Uint8Array)
    return tagged('U8', Buffer.from(object.buffer, object.byteOffset, object.byteLength).toString('base64'))
  if (object instanceof Map) {
    const entries: unknown[] = []
    let i = 0
    for (const [k, v] of object) {
      entries.push([encode(k, `${path}<key ${i}>`, seen), encode(v, `${path}.get(${i})`, seen)])
      i++
    }
    return tagged('M', entries)
  }
  if (object instanceof Set) {
    const items: unknown[] = []
    let i = 0
    for (const v of object) items.push(encode(v, `${path}<item ${i++}>`, seen))
    return tagged('S', items)
  }
  if (object instanceof RegExp) return tagged('R', [object.source, object.flags])
  if (object instanceof URL) return tagged('L', object.href)
  const kind = proto?.constructor?.name ?? 'object'
  return fail(
    path,
    `an instance of ${kind} (only plain objects, arrays, Date, Buffer, Uint8Array, Map, Set, BigInt, RegExp and URL round-trip; use a custom serializer for classes)`,
  )
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
      const [source, flags] = v as [string, string]
      return new RegExp(source, flags)
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
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) if (!isPlainJson(value[i], depth + 1)) return false
        return true
      }
      if (Object.getPrototypeOf(value) !== Object.prototype) return false
      for (const key in value) {
        if (key === TAG || !isPlainJson((value as Record<string, unknown>)[key], depth + 1)) return false
      }
      return true
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

/**
 * V8's structured-clone serializer: faster for large objects, keeps class-free object graphs with
 * cycles, but its bytes are tied to the Node.js major version that wrote them.
 */
export const v8Serializer: Serializer = {
  name: 'v8',
  serialize(value) {
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

/** Marks a compressed value. Neither JSON text nor V8's format (0xFF) starts with a NUL byte. */
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
    throw new TypeError('serializer: expected "json", "v8" or an object with serialize() and deserialize()')
  }
  return serializer
}

const INTEGER = /^-?\d{1,20}$/

export function createCodec(options: CodecOptions = {}): Codec {
  const serializer = resolveSerializer(options.serializer)
  const threshold =
    options.compressThreshold === undefined || options.compressThreshold === false
      ? Number.POSITIVE_INFINITY
      : parseSize(options.compressThreshold, 'compressThreshold')
  return {
    serializer,
    encode(value) {
      let bytes = serializer.serialize(value)
      if (!Buffer.isBuffer(bytes)) bytes = Buffer.from(bytes as Uint8Array | string)
      if (bytes.length >= threshold) {
        const packed = deflateRawSync(bytes)
        if (packed.length + 1 < bytes.length) return Buffer.concat([Buffer.of(COMPRESSED), packed])
      }
      return bytes
    },
    decode(stored) {
      const bytes = typeof stored === 'string' ? Buffer.from(stored) : stored
      if (bytes.length > 0 && bytes[0] === COMPRESSED) {
        return serializer.deserialize(inflateRawSync(bytes.subarray(1)))
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
