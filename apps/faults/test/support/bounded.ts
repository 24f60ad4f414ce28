/** Rejects if `promise` does not settle within `ms`: a hang is a failure, never a stuck suite. */
export function within<T>(ms: number, promise: Promise<T>, what = 'operation'): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms (a hang)`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/** What a call did: its value, or the error it threw (sync or async), bounded in time. */
export type Outcome<T> = { ok: true; value: T } | { ok: false; error: unknown }

export async function outcome<T>(fn: () => T | Promise<T>, ms = 5_000): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await within(ms, Promise.resolve().then(fn)) }
  } catch (error) {
    if (error instanceof Error && error.message.includes('(a hang)')) throw error
    return { ok: false, error }
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Polls `probe` every `everyMs` until it returns true; the time it took, or throws after `maxMs`. */
export async function timeUntil(probe: () => Promise<boolean>, maxMs: number, everyMs = 20): Promise<number> {
  const start = performance.now()
  while (performance.now() - start < maxMs) {
    if (await probe().catch(() => false)) return performance.now() - start
    await sleep(everyMs)
  }
  throw new Error(`condition not met within ${maxMs} ms`)
}
