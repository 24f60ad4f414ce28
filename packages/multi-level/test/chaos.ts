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
        const result = await run(...args)
        // The answer is slow to come back, as over a network: the operation itself is done.
        if (this.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.delayMs))
        return result
      }
    }
  }

  async close(): Promise<void> {
    await this.inner.close()
  }
}

export function chaos(inner: CacheBackend): ChaosBackend & CacheBackend {
  return new ChaosBackend(inner) as ChaosBackend & CacheBackend
}
