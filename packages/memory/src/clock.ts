/**
 * The clock expiry is checked against: `Date.now()`, read at most once a millisecond while the
 * event loop turns, and at least once every 32 reads in between (a chain of awaited reads that
 * never yields to timers). Reading the clock is the largest cost of a hit on some machines (about
 * 60 ns on a virtual machine's `kvm-clock`, against about 120 ns for the rest of an awaited get);
 * an entry may be answered up to that bound past its expiry. Expiries are computed from
 * {@link preciseNow}: a clock read before a long synchronous stretch would date a write back and
 * expire it early (a 100 ms TTL set after 150 ms of blocking work would already be expired).
 *
 * While `Date.now` is replaced (fake timers in a test), every read goes to it, so a test that
 * moves the system time sees entries expire at once.
 */
const nativeNow = Date.now
const READS_PER_CLOCK = 32
let cached = 0
let reads = 0
let timer: ReturnType<typeof setTimeout> | undefined

export function coarseNow(): number {
  if (Date.now !== nativeNow) return Date.now()
  if (cached !== 0 && ++reads < READS_PER_CLOCK) return cached
  return refresh()
}

function expire(): void {
  cached = 0
  timer = undefined
}

/**
 * `Date.now()` itself, for computing an expiry when a value is written; it also refreshes the
 * coarse clock, so reads after the write never check against an earlier time than the write's.
 */
export function preciseNow(): number {
  if (Date.now !== nativeNow) return Date.now()
  return refresh()
}

/** Reads the clock, and forgets it at the next turn of the event loop's timers. */
function refresh(): number {
  cached = nativeNow()
  reads = 0
  if (timer === undefined) {
    timer = setTimeout(expire, 1)
    timer.unref?.()
  }
  return cached
}
