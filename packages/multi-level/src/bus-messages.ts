import type { InvalidationMessage } from './bus.js'

/** Keys per message: a batch of writes with more keys is split into several PUBLISHes. */
const MAX_KEYS_PER_MESSAGE = 1000

/** One PUBLISH payload before it is stamped with its sender and sequence number. */
export type Payload = Record<string, unknown>

/**
 * The PUBLISH payloads for a batch: one message per chain and namespace with all their keys (a
 * clear covers them all), at most {@link MAX_KEYS_PER_MESSAGE} keys each. The wire format is the
 * one older versions read (`o`, `n`, `k` or `c`); `g` (a gap notice from bus `b`) and the sender's
 * sequence number `s` are new (see {@link stamp}).
 */
export function encodeBatch(messages: readonly InvalidationMessage[], gap: boolean): Payload[] {
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
  const payloads: Payload[] = []
  for (const { origin, namespace, keys, clear } of groups.values()) {
    if (clear) {
      payloads.push({ o: origin, n: namespace, c: 1 })
      continue
    }
    const list = [...keys]
    for (let i = 0; i < list.length; i += MAX_KEYS_PER_MESSAGE)
      payloads.push({ o: origin, n: namespace, k: list.slice(i, i + MAX_KEYS_PER_MESSAGE) })
  }
  if (gap) {
    if (payloads.length === 0) payloads.push({})
    Object.assign(payloads[0]!, { g: 1 })
  }
  return payloads
}

/** A heartbeat: proves the sender's link, and says how often to expect the next (`h`, ms). */
export function heartbeat(intervalMs: number): Payload {
  return { h: intervalMs }
}

/** Sent by a bus that closes: its silence from then on is no loss. */
export function farewell(): Payload {
  return { x: 1 }
}

/**
 * The payload as sent: the sender's bus id (`b`) and its sequence number (`s`: 1, 2, 3… over
 * every payload it publishes, heartbeats included), so a receiver notices any it missed.
 */
export function stamp(payload: Payload, bus: string, seq: number): string {
  payload.b = bus
  payload.s = seq
  return JSON.stringify(payload)
}

/** What one payload says. */
export interface Decoded {
  messages: InvalidationMessage[]
  /** The sending bus (absent in payloads of older versions). */
  from?: string
  /** Its sequence number. */
  seq?: number
  /** A heartbeat: the sender's interval in ms. */
  beat?: number
  /** The sender closed. */
  farewell?: boolean
  /** An older version's notice that the sender lost messages. */
  gapFrom?: string
}

/** What one payload says, or `undefined` for anything malformed (ignored). */
export function decode(text: string): Decoded | undefined {
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch {
    return undefined
  }
  if (typeof raw !== 'object' || raw === null) return undefined
  const { o, n, k, c, b, g, s, h, x } = raw as Record<string, unknown>
  const decoded: Decoded = { messages: [] }
  if (typeof b === 'string') {
    decoded.from = b
    if (g === 1) decoded.gapFrom = b
    if (Number.isSafeInteger(s) && (s as number) > 0) decoded.seq = s as number
  }
  if (typeof h === 'number' && h > 0) decoded.beat = h
  if (x === 1) decoded.farewell = true
  if (typeof o !== 'string' || typeof n !== 'string')
    return decoded.seq === undefined && decoded.gapFrom === undefined ? undefined : decoded
  if (c === 1) decoded.messages.push({ origin: o, namespace: n, clear: true })
  else if (Array.isArray(k) && k.every((key) => typeof key === 'string'))
    decoded.messages.push({ origin: o, namespace: n, keys: k as string[] })
  else return undefined
  return decoded
}
