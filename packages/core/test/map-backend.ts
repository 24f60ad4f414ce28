import { defineBackend } from '../src/index.js'

/**
 * A Map-backed backend with asynchronous reads, as a server's are. With `latency`, each read is
 * answered after its own delay (in ms, varying per call), so concurrent reads come back at
 * different times, as they do over a network.
 */
export function mapBackend(options: { latency?: (call: number) => number } = {}) {
  const rows = new Map<string, unknown>()
  let reads = 0
  const wait = async () => {
    const ms = options.latency?.(reads++) ?? 0
    if (ms > 0) await new Promise((resolve) => setTimeout(resolve, ms))
  }
  return Object.assign(
    defineBackend({
      name: 'map',
      get: async <T>(key: string) => {
        await wait()
        return rows.get(key) as T | undefined
      },
      getMany: async <T>(keys: readonly string[]) => {
        await wait()
        return keys.map((key) => rows.get(key) as T | undefined)
      },
      set: async (key: string, value: unknown) => void rows.set(key, value),
      delete: async (key: string) => rows.delete(key),
      clear: async () => rows.clear(),
    }),
    { rows },
  )
}
