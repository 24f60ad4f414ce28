import { CacheConfigError } from '@cache/core'

/**
 * How an adapter is handed its options: the one argument of `cacheResponse()` and
 * `@CacheResponse()`. Checked once, when the app is built.
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
