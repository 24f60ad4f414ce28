/**
 * The data every workload uses: 10 000 keys shaped like `user:123:profile`, one ~1 KB JSON-able
 * profile object per key, a TTL on every write, and fixed pseudo-random sequences of keys to read and write.
 */
import type { Ttl } from './contestant.js'

export const KEY_COUNT = 10_000
/**
 * Every write carries this TTL, so every contestant runs its expiry bookkeeping. An hour, not a
 * minute: the rows of one workload take turns, and on a loaded machine a row can wait over a minute
 * between its prefill or warm-up and its last round (a peer on a rollback journal alone takes
 * longer than that to write 10 000 keys); an entry expiring mid-run would turn hits into misses.
 * How long an entry has left changes what no contestant's read or write costs.
 */
export const TTL_SECONDS = 3600
export const TTL_MS = TTL_SECONDS * 1000
export const TTL: Ttl = { seconds: TTL_SECONDS, ms: TTL_MS }

export const keys: readonly string[] = Array.from({ length: KEY_COUNT }, (_, i) => `user:${i}:profile`)

const LOREM =
  'Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et ' +
  'dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip ' +
  'ex ea commodo consequat. Duis aute irure dolor in reprehenderit in voluptate velit esse cillum dolore. '

/** A user profile of about 1 KB as JSON. */
export function profile(id: number): Record<string, unknown> {
  return {
    id,
    username: `user${id}`,
    name: `User Number ${id}`,
    email: `user${id}@example.com`,
    createdAt: new Date(1_700_000_000_000 + id * 86_400_000).toISOString(),
    active: id % 7 !== 0,
    score: (id * 7919) % 1000,
    roles: ['reader', id % 3 === 0 ? 'editor' : 'viewer'],
    address: { street: `${id} Main Street`, city: 'Springfield', zip: String(10_000 + id), country: 'US' },
    settings: {
      theme: id % 2 ? 'dark' : 'light',
      language: 'en-US',
      notifications: { email: true, sms: false },
    },
    bio: LOREM.repeat(3).slice(0, 640),
  }
}

export const values: readonly Record<string, unknown>[] = Array.from({ length: KEY_COUNT }, (_, i) =>
  profile(i),
)

/** mulberry32: a small seeded PRNG, so every contestant sees the same sequence. */
export function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/**
 * The order every loop reads and writes keys in: uniform random draws of a key index (with
 * replacement), from a fixed seed, so every contestant of a row walks the same sequence. Reading
 * keys in order 0, 1, 2… would favour a store whose neighbouring keys share cache lines or hash
 * buckets; a real cache is hit at random. A power of two long, so a cursor wraps with a mask.
 */
export const ORDER_LENGTH = 1 << 16
export const order = new Uint16Array(ORDER_LENGTH)
/** For the 90 % get / 10 % set workload: whether the step at the same position is a set. */
export const mixIsSet = new Uint8Array(ORDER_LENGTH)
{
  const random = prng(42)
  for (let i = 0; i < ORDER_LENGTH; i++) {
    order[i] = Math.floor(random() * KEY_COUNT)
    mixIsSet[i] = random() < 0.1 ? 1 : 0
  }
}

/** `getMany` rows read this many keys a call. */
export const BATCH_SIZE = 100

/** One `getMany` call's keys (uniform random, distinct) and their positions in {@link keys}. */
export interface Batch {
  keys: string[]
  indexes: number[]
}

/** The batches `getMany` rows cycle through (a power of two of them), the same for every contestant. */
export const batches: readonly Batch[] = (() => {
  const random = prng(7)
  return Array.from({ length: 512 }, () => {
    const chosen = new Set<number>()
    while (chosen.size < BATCH_SIZE) chosen.add(Math.floor(random() * KEY_COUNT))
    const indexes = [...chosen]
    return { keys: indexes.map((i) => keys[i]!), indexes }
  })
})()

/** The precomputed body the HTTP rows serve: 10 KB of JSON (profiles, as many as fit, padded). */
export const HTTP_BODY = ((): string => {
  const size = 10 * 1024
  const users: unknown[] = []
  while (JSON.stringify({ users: [...users, values[users.length]] }).length < size)
    users.push(values[users.length])
  const body = JSON.stringify({ users, padding: '' })
  return JSON.stringify({ users, padding: 'x'.repeat(size - body.length) })
})()
