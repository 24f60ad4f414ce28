import {
  CacheError,
  CacheNotANumberError,
  CacheTimeoutError,
  CacheUnavailableError,
  isCacheError,
} from '@cache/core'

/**
 * Replies that mean "this server cannot serve you right now", not "your command is wrong". NOPERM
 * is not one: the server answered, and refuses that key or command to this user (an ACL).
 */
const UNAVAILABLE_REPLY =
  /^(LOADING|BUSY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|MOVED|ASK|READONLY|NOREPLICAS|NOAUTH|WRONGPASS|OOM)\b/

/**
 * Turns what ioredis rejected with into the @cache error family, keeping it as `cause`:
 * a command timeout becomes {@link CacheTimeoutError}, a down, unreachable or not-ready server
 * {@link CacheUnavailableError}, and a reply error about the data (e.g. INCRBY on text) a
 * plain {@link CacheError}.
 */
export function translateError(
  error: unknown,
  operation: string,
  timeoutMs: number,
  key?: string,
  address?: string,
): Error {
  if (isCacheError(error)) return error as Error
  const message = plain((error as Error | undefined)?.message ?? String(error))
  const where = address === undefined ? operation : `${operation} on ${address}`
  const server = address === undefined ? {} : { server: address }
  if (message === 'Command timed out')
    return new CacheTimeoutError('redis', where, timeoutMs, { cause: error, ...server })
  if ((error as Error | undefined)?.name === 'ReplyError') {
    if (/not an integer|out of range/.test(message) && key !== undefined && operation === 'incr')
      return new CacheNotANumberError(key)
    if (!UNAVAILABLE_REPLY.test(message))
      return new CacheError(`redis: ${where} failed: ${message}`, { cause: error })
  }
  return new CacheUnavailableError('redis', `redis: ${where} failed: ${message}`, { cause: error, ...server })
}

/** ioredis's words for "the connection is down", in the words of the rest of the messages. */
function plain(message: string): string {
  if (message.startsWith("Stream isn't writeable")) return 'not connected (the connection is down)'
  if (message === 'Connection is closed.') return 'the connection closed'
  return message
}

/**
 * A reply of the wrong kind: `QUEUED` from a client your code left inside `MULTI` (the command
 * runs only if that code sends `EXEC`). The caller's own matter: not counted as an outage.
 */
export function unexpectedReply(
  reply: unknown,
  operation: string,
  key: string | undefined,
  expected: string,
): CacheError {
  const text = Buffer.isBuffer(reply) ? reply.toString() : String(reply)
  const inMulti = text === 'QUEUED' ? ' (the client is inside a MULTI transaction)' : ''
  const of = key === undefined ? '' : ` of "${key}"`
  return new CacheError(
    `redis: ${operation}${of} was answered ${JSON.stringify(text)}, not ${expected}${inMulti}`,
  )
}

/**
 * Throws unless a `SET` was answered `OK` (with `NX`, also nil: not stored). Anything else — a
 * client your code left inside `MULTI` answers `QUEUED` — stored nothing yet: the call rejects
 * instead of resolving on a write that may never happen.
 */
export function assertStored(reply: unknown, operation: string, key: string, nx = false): void {
  if (reply === 'OK' || (nx && reply === null)) return
  throw unexpectedReply(reply, operation, key, 'OK')
}

/**
 * A reply that must be an integer (`EXISTS`, `UNLINK`, a script's count), as a number. Anything
 * else rejects the call rather than pass for 0 (`false`, "not removed") or a counter past the
 * safe integers.
 */
export function integerReply(reply: unknown, operation: string, key: string | undefined): number {
  if (typeof reply === 'number') return reply
  throw unexpectedReply(reply, operation, key, 'an integer')
}
