const CALLER_ERRORS = new Set([
  'CACHE_KEY',
  'CACHE_NOT_A_NUMBER',
  'CACHE_VALUE_TOO_LARGE',
  'CACHE_CONFLICT',
  'CACHE_CONFIG',
  'CACHE_SERIALIZATION',
  'CACHE_UNSUPPORTED',
])

/**
 * Errors that are about the call (bad TTL, value, key) or the level's abilities (a custom backend
 * without `clear`), not about a level being unavailable.
 */
export function isCallerError(error: unknown): boolean {
  if (error instanceof RangeError) return true
  const code = (error as { code?: unknown } | null)?.code
  return typeof code === 'string' && CALLER_ERRORS.has(code)
}
