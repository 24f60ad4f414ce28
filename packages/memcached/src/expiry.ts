/** memcached reads an expiration above 30 days as an absolute unix time. */
export const MAX_RELATIVE_SECONDS = 60 * 60 * 24 * 30

/** Flags and expirations are unsigned 32-bit on the wire. */
const MAX_UINT32 = 0xffffffff

/** How one write expires: what goes into the item's flags and its expiration field. */
export interface Expiry {
  /** Absolute expiry, unix seconds, rounded up; 0 = never. Stored in the item's flags. */
  flags: number
  /** The expiration field memcached receives: 0, relative seconds, or absolute unix seconds. */
  exptime: number
}

export const NEVER: Expiry = { flags: 0, exptime: 0 }

/**
 * The expiry of a write with a TTL of `ttlMs` at time `now` (epoch ms).
 *
 * memcached counts time in whole seconds and its clock ticks once a second, so an item set with
 * an expiration of N seconds disappears somewhere in (N-1, N] seconds. The TTL is therefore
 * rounded up to whole seconds and one second is added: the server keeps the item at least
 * `ttlMs`. The exact expiry (rounded up to the second) goes into the flags; reads treat the item
 * as gone from then on. Above 30 days the expiration is sent as an absolute unix time, as memcached
 * requires. Never 0 (which would mean "forever").
 */
export function expiryFor(ttlMs: number | undefined, now: number): Expiry {
  if (ttlMs === undefined) return NEVER
  const at = Math.min(MAX_UINT32 - 1, Math.ceil((now + ttlMs) / 1000))
  const relative = Math.ceil(ttlMs / 1000) + 1
  return { flags: at, exptime: relative <= MAX_RELATIVE_SECONDS ? relative : at + 1 }
}

/**
 * The expiration to send when rewriting an item that keeps its original expiry (`flags`):
 * the absolute time, or 0 for "never".
 */
export function keepExpiry(flags: number): Expiry {
  return flags === 0 ? NEVER : { flags, exptime: Math.min(MAX_UINT32, flags + 1) }
}

/** True if an item with these flags has expired at `now` (epoch ms). */
export function isExpired(flags: number, now: number): boolean {
  return flags !== 0 && flags * 1000 <= now
}
