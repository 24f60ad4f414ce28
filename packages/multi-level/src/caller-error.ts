const CALLER_ERRORS = new Set([
  // The level answered and refused this call: a key of another type (WRONGTYPE), a key or
  // command an ACL forbids (NOPERM), a value another client wrote that is not @cache's.
  'CACHE_ERROR',
  'CACHE_ARGUMENT',
  'CACHE_KEY',
  'CACHE_NOT_A_NUMBER',
  'CACHE_VALUE_TOO_LARGE',
  'CACHE_CONFLICT',
  'CACHE_CONFIG',
  'CACHE_SERIALIZATION',
  'CACHE_UNSUPPORTED',
])

/**
 * Errors that are about the call (bad TTL, value, key, a key the level refuses) or the level's
 * abilities (a custom backend without `clear`), not about a level being unavailable: thrown to
 * the caller, never counted towards the breaker.
 */
export function isCallerError(error: unknown): boolean {
  if (error instanceof RangeError) return true
  const code = (error as { code?: unknown } | null)?.code
  return typeof code === 'string' && CALLER_ERRORS.has(code)
}
