import { inspect } from 'node:util'

/*
 * What a built-in object holds besides its value. Keys and serializers see a Date as its time, a
 * Map as its entries, a Uint8Array as its bytes; a property someone added on top (`date.tz`,
 * `buffer.encoding`) is state they would silently drop, so it must be detected, cheaply, even on
 * a typed array of a million elements (whose own keys list every index).
 */

/** Own keys a fresh instance of each built-in type has (`lastIndex` on a RegExp, nothing on a Date). */
const baseline = new Map<object, number>()

function baselineOf(proto: object, make: () => object): number {
  let count = baseline.get(proto)
  if (count === undefined) baseline.set(proto, (count = Reflect.ownKeys(make()).length))
  return count
}

const FRESH = new Map<object, () => object>([
  [Date.prototype, () => new Date(0)],
  [Map.prototype, () => new Map()],
  [Set.prototype, () => new Set()],
  [RegExp.prototype, () => /a/],
  [URL.prototype, () => new URL('http://a/')],
  [URLSearchParams.prototype, () => new URLSearchParams()],
  [ArrayBuffer.prototype, () => new ArrayBuffer(0)],
  [SharedArrayBuffer.prototype, () => new SharedArrayBuffer(0)],
  [DataView.prototype, () => new DataView(new ArrayBuffer(0))],
  [Boolean.prototype, () => Object(false)],
  [Number.prototype, () => Object(0)],
  [BigInt.prototype, () => Object(0n)],
  [Symbol.prototype, () => Object(Symbol.for('x'))],
])
if (typeof Headers === 'function') FRESH.set(Headers.prototype, () => new Headers())

/** Typed arrays up to this length are checked by listing their keys; longer ones by inspection. */
const LISTED_ELEMENTS = 256

const INSPECT = {
  showHidden: true,
  customInspect: false,
  maxArrayLength: 0,
  depth: 0,
  breakLength: Number.POSITIVE_INFINITY,
  getters: false,
} as const

/**
 * True if `object`, whose prototype `proto` is a built-in one (Date, Map, Set, RegExp, URL,
 * URLSearchParams, Headers, an ArrayBuffer, a DataView, a typed array or Buffer, a boxed
 * primitive), has own properties a fresh instance of its type does not: enumerable or not,
 * string- or symbol-keyed. Arrays and plain objects are not handled here.
 */
export function hasExtraOwnProperties(object: object, proto: object): boolean {
  const make = FRESH.get(proto)
  if (make !== undefined) return Reflect.ownKeys(object).length !== baselineOf(proto, make)
  if (proto === String.prototype)
    return Reflect.ownKeys(object).length !== (object as unknown as string).length + 1
  if (ArrayBuffer.isView(object)) return viewHasExtras(object as ArrayBufferView & { length: number }, proto)
  return Reflect.ownKeys(object).length !== 0
}

/**
 * A typed array's own keys are its indices, then whatever was added. Listing a million indices
 * takes half a second, so a long one is compared by `util.inspect` (which reads only the
 * non-index properties, natively) with a twin view of the same bytes that has nothing added.
 */
function viewHasExtras(view: ArrayBufferView & { length: number }, proto: object): boolean {
  if (view.length <= LISTED_ELEMENTS) return Reflect.ownKeys(view).length !== view.length
  const twin =
    proto === Buffer.prototype
      ? Buffer.from(view.buffer, view.byteOffset, view.byteLength)
      : new (proto.constructor as new (b: ArrayBufferLike, o: number, l: number) => object)(
          view.buffer,
          view.byteOffset,
          view.length,
        )
  return inspect(view, INSPECT) !== inspect(twin, INSPECT)
}

/** True for a function's `arguments` object (its prototype is Object.prototype, but it is not a plain object). */
export function isArgumentsObject(object: object): boolean {
  return Object.prototype.toString.call(object) === '[object Arguments]'
}

/**
 * The shape of an array's own keys: `items` indices present (a hole is absent), and whether it
 * has other own properties. Own keys list indices in order, then `length` (created with the
 * array), then anything added: finding `length` says both without converting every key.
 */
export function arrayShape(array: unknown[]): { keys: (string | symbol)[]; items: number; extra: boolean } {
  const keys = Reflect.ownKeys(array)
  const items = keys.indexOf('length')
  return { keys, items, extra: items !== keys.length - 1 }
}
