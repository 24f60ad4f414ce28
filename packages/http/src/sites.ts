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
