/**
 * The data every workload uses: 10 000 keys shaped like `user:123:profile`, one ~1 KB JSON-able
 * profile object per key, a 60 s TTL, and a fixed pseudo-random 90 % get / 10 % set sequence.
 */

export const KEY_COUNT = 10_000
export const TTL_SECONDS = 60
export const TTL_MS = TTL_SECONDS * 1000

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

/** The mixed workload: for each step a key index, and whether the step is a set (10 %). */
export const MIX_LENGTH = 10_000
export const mixKey = new Uint16Array(MIX_LENGTH)
export const mixIsSet = new Uint8Array(MIX_LENGTH)
{
  const random = prng(42)
  for (let i = 0; i < MIX_LENGTH; i++) {
    mixKey[i] = Math.floor(random() * KEY_COUNT)
    mixIsSet[i] = random() < 0.1 ? 1 : 0
  }
}

/** The precomputed body the HTTP rows serve: 10 KB of JSON (profiles, as many as fit, padded). */
export const HTTP_BODY = ((): string => {
  const size = 10 * 1024
  const users: unknown[] = []
  while (JSON.stringify({ users: [...users, values[users.length]] }).length < size)
    users.push(values[users.length])
  const body = JSON.stringify({ users, padding: '' })
  return JSON.stringify({ users, padding: 'x'.repeat(size - body.length) })
})()
