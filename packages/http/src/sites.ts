/**
 * The sites (see `HttpRequestView.site`) this process has keyed entries at: invalidating a URL
 * deletes its entries at each of them (its generation reaches every site anyway; the deletes free
 * the space). Bounded: past the bound, entries at further sites are left to expire.
 */
const seen = new Set<string>()
const MAX_SEEN = 1_000

/** Notes a site a key was made at. */
export function noteSite(site: string): void {
  if (site !== '' && seen.size < MAX_SEEN) seen.add(site)
}

/** The sites keyed at in this process so far. */
export function seenSites(): readonly string[] {
  return [...seen]
}

/**
 * The key extras (see `HttpRequestView.keyExtra`: the `Host` header sent behind a trusted proxy's
 * `X-Forwarded-Host`) this process has keyed entries with: invalidating a URL deletes its entries
 * under each of them too, as under each site. Few in practice (the proxy's own `Host`); bounded:
 * past the bound, entries under further ones stop being served (their URL's generation is renewed)
 * and are left to expire.
 */
const extras = new Set<string>()
const MAX_EXTRAS = 16

/** Notes a key extra an entry was keyed with. */
export function noteKeyExtra(extra: string): void {
  if (extra !== '' && extras.size < MAX_EXTRAS) extras.add(extra)
}

/** The key extras keyed with in this process so far. */
export function seenKeyExtras(): readonly string[] {
  return [...extras]
}
