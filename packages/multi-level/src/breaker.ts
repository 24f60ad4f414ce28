import type { Duration } from '@cache/core'
import { countOption, durationOption } from '@cache/core/backend'

/** Options of the circuit breaker kept for each level. */
export interface BreakerOptions {
  /** Consecutive failures of a level that open its breaker. Default: 3. */
  failureThreshold?: number
  /**
   * How long an open breaker skips its level before one background probe is tried. Seconds or
   * a duration string. Default: `'1s'`.
   */
  openFor?: Duration
}

/** `closed`: in use. `open`: skipped. `half-open`: skipped while a probe checks the level. */
export type BreakerState = 'closed' | 'open' | 'half-open'

/**
 * Counts consecutive failures of one level. Opening is decided here; the probe that closes it
 * again is run by the level (it also repairs what the level missed while it was skipped).
 */
export class CircuitBreaker {
  state: BreakerState = 'closed'
  /** Consecutive failures since the last success. */
  failures = 0
  /** Epoch ms until which an open breaker skips its level. */
  openUntil = 0
  private readonly threshold: number
  /** How long an open breaker skips its level, in ms. */
  readonly openMs: number

  constructor(options: BreakerOptions = {}) {
    this.threshold = countOption(options.failureThreshold, 'breaker.failureThreshold', 3)
    this.openMs = durationOption(options.openFor, 'breaker.openFor', '1s')
  }

  /** True once the open period is over and a probe may run. */
  probeDue(now: number): boolean {
    return this.state === 'open' && now >= this.openUntil
  }

  /** Told when a success ends a run of failures (or the breaker closes). */
  onRecovered: () => void = () => {}

  success(): void {
    if (this.failures === 0) return
    this.failures = 0
    this.onRecovered()
  }

  /** Records a failure; `true` if this one opened the breaker. */
  failure(now: number): boolean {
    this.failures++
    if (this.state === 'closed' && this.failures < this.threshold) return false
    const opened = this.state === 'closed'
    this.state = 'open'
    this.openUntil = now + this.openMs
    return opened
  }

  close(): void {
    this.state = 'closed'
    this.failures = 0
    this.onRecovered()
  }
}
