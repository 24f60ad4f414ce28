import { type CacheBackend, CacheUnavailableError } from '@cache/core'

const METHODS = [
  'get',
  'getEntry',
  'set',
  'add',
  'delete',
  'has',
  'clear',
  'incr',
  'atomicUpdate',
  'getMany',
  'setMany',
  'deleteMany',
] as const

/**
 * A test double around a real backend: while `down` is true every operation fails with
 * `CacheUnavailableError` (as a stopped server would), without touching the data behind it, so a
 * test can check what a recovered level still holds. `delayMs` delays every answer (the operation
 * itself has already run), as a slow network would.
 */
export class ChaosBackend {
  down = false
  delayMs = 0
  calls = 0
  /** Operations that fail their next call(s) while the rest keep working: a one-off network error. */
  private readonly failures = new Map<string, number>()
  readonly name: string
  readonly namespace: string | undefined

  constructor(readonly inner: CacheBackend) {
    this.name = `chaos(${inner.name})`
    this.namespace = (inner as { namespace?: string }).namespace
    for (const method of METHODS) {
      const run = (inner[method] as (...args: unknown[]) => Promise<unknown>).bind(inner)
      ;(this as Record<string, unknown>)[method] = async (...args: unknown[]) => {
        this.calls++
        if (this.down) throw new CacheUnavailableError(this.name, `${this.name}: ${method}: server is down`)
        const failing = this.failures.get(method) ?? 0
        if (failing > 0) {
          this.failures.set(method, failing - 1)
          throw new CacheUnavailableError(this.name, `${this.name}: ${method}: connection reset`)
        }
        const result = await run(...args)
        // The answer is slow to come back, as over a network: the operation itself is done.
        if (this.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.delayMs))
        return result
      }
    }
  }

  /** Makes the next `times` calls of `method` fail, and only those. */
  failNext(method: (typeof METHODS)[number], times = 1): void {
    this.failures.set(method, times)
  }

  async close(): Promise<void> {
    await this.inner.close()
  }
}

export function chaos(inner: CacheBackend): ChaosBackend & CacheBackend {
  return new ChaosBackend(inner) as ChaosBackend & CacheBackend
}
