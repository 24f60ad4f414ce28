import type { InvalidationMessage } from './bus.js'

/** Keys per message: a batch of writes with more keys is split into several PUBLISHes. */
const MAX_KEYS_PER_MESSAGE = 1000

/**
 * The PUBLISH payloads for a batch: one message per chain and namespace with all their keys (a
 * clear covers them all), at most {@link MAX_KEYS_PER_MESSAGE} keys each. The wire format is the
 * one older versions read (`o`, `n`, `k` or `c`); `g` (a gap notice from bus `b`) is new.
 */
export function encodeBatch(messages: readonly InvalidationMessage[], gapFrom: string | undefined): string[] {
  const groups = new Map<string, { origin: string; namespace: string; keys: Set<string>; clear: boolean }>()
  for (const message of messages) {
    const id = `${message.origin}\u0000${message.namespace}`
    let group = groups.get(id)
    if (group === undefined) {
      group = { origin: message.origin, namespace: message.namespace, keys: new Set(), clear: false }
      groups.set(id, group)
    }
    if (message.clear) group.clear = true
    else for (const key of message.keys ?? []) group.keys.add(key)
  }
  const payloads: Record<string, unknown>[] = []
  for (const { origin, namespace, keys, clear } of groups.values()) {
    if (clear) {
      payloads.push({ o: origin, n: namespace, c: 1 })
      continue
    }
    const list = [...keys]
    for (let i = 0; i < list.length; i += MAX_KEYS_PER_MESSAGE)
      payloads.push({ o: origin, n: namespace, k: list.slice(i, i + MAX_KEYS_PER_MESSAGE) })
  }
  if (gapFrom !== undefined) {
    if (payloads.length === 0) payloads.push({})
    Object.assign(payloads[0]!, { b: gapFrom, g: 1 })
  }
  return payloads.map((payload) => JSON.stringify(payload))
}

/** What one payload says, or `undefined` for anything malformed (ignored). */
export function decode(text: string): { messages: InvalidationMessage[]; gapFrom?: string } | undefined {
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch {
    return undefined
  }
  if (typeof raw !== 'object' || raw === null) return undefined
  const { o, n, k, c, b, g } = raw as Record<string, unknown>
  const gapFrom = g === 1 && typeof b === 'string' ? b : undefined
  const base = gapFrom === undefined ? {} : { gapFrom }
  if (typeof o !== 'string' || typeof n !== 'string')
    return gapFrom === undefined ? undefined : { messages: [], ...base }
  if (c === 1) return { messages: [{ origin: o, namespace: n, clear: true }], ...base }
  if (!Array.isArray(k) || !k.every((key) => typeof key === 'string')) return undefined
  return { messages: [{ origin: o, namespace: n, keys: k as string[] }], ...base }
}
