import type { CacheBackend } from '@cache/core'

/** The key every operation of {@link keyOperations} works on. */
export const ORDER_KEY = 'k'

/** The state of {@link ORDER_KEY} in the model when the key holds nothing. */
export const ABSENT: unique symbol = Symbol('absent')

/** What {@link ORDER_KEY} holds in the model: a value, or {@link ABSENT}. */
export type KeyState = unknown

/** One call on {@link ORDER_KEY}, and what it does when it runs alone. */
export interface KeyOperation {
  /** How a failure report names the call, e.g. `incr(k)`. */
  label: string
  run(backend: CacheBackend): Promise<unknown>
  /**
   * The result and the next state when the call runs alone on `state`. A call that throws has
   * the name of its error class as its result (`'CacheNotANumberError'`).
   */
  model(state: KeyState): { result: unknown; state: KeyState }
}

/**
 * Every write of the protocol on one key: `set`, `delete`, `setMany`, `deleteMany`, `clear`, and
 * the read-then-write calls `add`, `incr`, `compareAndDelete` and `atomicUpdate`.
 */
export const keyOperations: readonly KeyOperation[] = [
  { label: "set(k, 'S')", run: (b) => b.set('k', 'S'), model: () => ({ result: undefined, state: 'S' }) },
  {
    label: 'delete(k)',
    run: (b) => b.delete('k'),
    model: (s) => ({ result: s !== ABSENT, state: ABSENT }),
  },
  {
    label: "setMany([k: 'M'])",
    run: (b) => b.setMany([{ key: 'k', value: 'M' }]),
    model: () => ({ result: undefined, state: 'M' }),
  },
  {
    label: 'deleteMany([k])',
    run: (b) => b.deleteMany(['k']),
    model: (s) => ({ result: s === ABSENT ? 0 : 1, state: ABSENT }),
  },
  { label: 'clear()', run: (b) => b.clear(), model: () => ({ result: undefined, state: ABSENT }) },
  {
    label: "add(k, 'A')",
    run: (b) => b.add('k', 'A'),
    model: (s) => (s === ABSENT ? { result: true, state: 'A' } : { result: false, state: s }),
  },
  {
    label: 'incr(k)',
    run: (b) => b.incr('k'),
    model: (s) => {
      if (s === ABSENT) return { result: 1, state: 1 }
      if (!Number.isSafeInteger(s)) return { result: 'CacheNotANumberError', state: s }
      return { result: (s as number) + 1, state: (s as number) + 1 }
    },
  },
  {
    label: "compareAndDelete(k, 'old')",
    run: (b) => b.compareAndDelete!('k', 'old'),
    model: (s) => (s === 'old' ? { result: true, state: ABSENT } : { result: false, state: s }),
  },
  {
    label: 'atomicUpdate(k, v => [v])',
    run: (b) => b.atomicUpdate('k', (v) => [v ?? null]),
    model: (s) => {
      const next = [s === ABSENT ? null : s]
      return { result: next, state: next }
    },
  },
]

/** A serial order's outcome: the results of `a` and `b` (in that order) and the final state. */
export interface SerialOutcome {
  results: [unknown, unknown]
  final: KeyState
}

/** The two outcomes `a` and `b` may have together from `initial`: `a` then `b`, and `b` then `a`. */
export function serialOrders(a: KeyOperation, b: KeyOperation, initial: KeyState): SerialOutcome[] {
  const run = (first: KeyOperation, second: KeyOperation, swap: boolean): SerialOutcome => {
    const one = first.model(initial)
    const two = second.model(one.state)
    return { results: swap ? [two.result, one.result] : [one.result, two.result], final: two.state }
  }
  return [run(a, b, false), run(b, a, true)]
}

/** Whether what `a` and `b` did together from `initial` is what one of their serial orders does. */
export function matchesSomeSerialOrder(
  a: KeyOperation,
  b: KeyOperation,
  initial: KeyState,
  seen: SerialOutcome,
): boolean {
  const same = (x: KeyState, y: KeyState) =>
    x === ABSENT || y === ABSENT ? x === y : JSON.stringify(x) === JSON.stringify(y)
  return serialOrders(a, b, initial).some(
    (order) =>
      JSON.stringify(order.results) === JSON.stringify(seen.results) && same(order.final, seen.final),
  )
}

export interface SerialOrderOptions {
  /** The pairs to run together (default: every ordered pair of {@link keyOperations}). */
  pairs?: readonly (readonly [KeyOperation, KeyOperation])[]
  /** The states each pair starts from (default: absent, the counter `5`, the string `'old'`). */
  initialStates?: readonly KeyState[]
  /** Puts `initial` in the store (default: `delete`, then `set` unless absent, through the backend). */
  reset?(initial: KeyState): unknown
  /** What the store holds once both calls settled (default: `getEntry` through the backend). */
  read?(): KeyState | Promise<KeyState>
}

/**
 * Runs each pair of calls together on {@link ORDER_KEY} from each initial state, and returns a
 * line for every outcome that no serial order explains (`[]` when the backend loses no
 * acknowledged write): two calls issued together in one process must end as if they had run one
 * after the other, in some order.
 */
export async function unexplainedPairs(
  backend: CacheBackend,
  options: SerialOrderOptions = {},
): Promise<string[]> {
  const pairs = options.pairs ?? keyOperations.flatMap((a) => keyOperations.map((b) => [a, b] as const))
  const reset =
    options.reset ??
    (async (initial: KeyState) => {
      await backend.delete(ORDER_KEY)
      if (initial !== ABSENT) await backend.set(ORDER_KEY, initial)
    })
  const read =
    options.read ??
    (async () => {
      const entry = await backend.getEntry(ORDER_KEY)
      return entry === undefined ? ABSENT : entry.value
    })
  const show = (s: KeyState) => (s === ABSENT ? 'absent' : JSON.stringify(s))
  const wrong: string[] = []
  for (const [a, b] of pairs) {
    for (const initial of options.initialStates ?? [ABSENT, 5, 'old']) {
      await reset(initial)
      const results = await Promise.all([outcome(a.run(backend)), outcome(b.run(backend))])
      const final = await read()
      if (!matchesSomeSerialOrder(a, b, initial, { results, final }))
        wrong.push(
          `${a.label} | ${b.label} from ${show(initial)}: results ${JSON.stringify(results)}, final ${show(final)}`,
        )
    }
  }
  return wrong
}

/** A call's result, or the name of the class of its error. */
async function outcome(call: Promise<unknown>): Promise<unknown> {
  try {
    return await call
  } catch (error) {
    return (error as Error).constructor.name
  }
}
