import type { CallKeys } from './loader.js'

/** Most keys remembered for other arguments than integers (about 100 bytes each): the default memory backend's size. */
const MAP_SIZE = 10_000
/** Longest string argument whose keys are remembered. */
const ARGUMENT_LENGTH = 64
/** Slots of the integer table when it is made. */
const FIRST_SLOTS = 64
/** Slots of the integer table at most: the first power of two past {@link MAP_SIZE}. */
const MOST_SLOTS = 16_384

/**
 * The keys of a memoized function's calls with one number or short string argument
 * (`getUser(42)`), under one entry prefix. Building a key allocates a new string that the backend
 * must then hash and compare character by character; a remembered one is hashed once and matches
 * the stored key by identity.
 *
 * Integers (the usual argument: an id) are remembered in a table indexed by their low bits: one
 * array read instead of hashing into a map of thousands of entries. An integer replaces another
 * with the same low bits; the table doubles while it is over half full, up to {@link MOST_SLOTS}
 * slots (128 KB, plus the keys it holds). Other numbers (but -0, whose key is not 0's) and strings
 * of up to 64 characters are remembered in a map of at most {@link MAP_SIZE}, emptied when full.
 */
export class CallKeysCache {
  /** The integer in each slot of {@link integerKeys} (0 for an empty slot: its keys are undefined). */
  private integers: Int32Array | undefined
  private integerKeys: (CallKeys | undefined)[] | undefined
  private filled = 0
  private readonly others = new Map<unknown, CallKeys>()

  /** Whether the keys of a call with `argument` alone are remembered. */
  static remembers(argument: unknown): argument is number | string {
    return (
      (typeof argument === 'number' && !Object.is(argument, -0)) ||
      (typeof argument === 'string' && argument.length <= ARGUMENT_LENGTH)
    )
  }

  /** The remembered keys of a call with `argument` alone, if any. */
  find(argument: number | string): CallKeys | undefined {
    if (typeof argument === 'number' && (argument | 0) === argument) {
      const integerKeys = this.integerKeys
      if (integerKeys === undefined) return undefined
      const slot = argument & (integerKeys.length - 1)
      const keys = integerKeys[slot]
      return keys !== undefined && this.integers![slot] === argument ? keys : undefined
    }
    return this.others.get(argument)
  }

  /** Remembers the keys of a call with `argument` alone. */
  remember(argument: number | string, keys: CallKeys): void {
    if (typeof argument === 'number' && (argument | 0) === argument) {
      let integerKeys = this.integerKeys
      if (
        integerKeys === undefined ||
        (this.filled * 2 > integerKeys.length && integerKeys.length < MOST_SLOTS)
      )
        integerKeys = this.grow()
      const slot = argument & (integerKeys.length - 1)
      if (integerKeys[slot] === undefined) this.filled++
      integerKeys[slot] = keys
      this.integers![slot] = argument
      return
    }
    if (this.others.size >= MAP_SIZE) this.others.clear()
    this.others.set(argument, keys)
  }

  /** A table twice as large (or the first one), holding what the old one held. */
  private grow(): (CallKeys | undefined)[] {
    const oldKeys = this.integerKeys
    const oldIntegers = this.integers
    const slots = oldKeys === undefined ? FIRST_SLOTS : oldKeys.length * 2
    const integerKeys = new Array<CallKeys | undefined>(slots).fill(undefined)
    const integers = new Int32Array(slots)
    this.integerKeys = integerKeys
    this.integers = integers
    this.filled = 0
    if (oldKeys === undefined) return integerKeys
    for (let slot = 0; slot < oldKeys.length; slot++) {
      const keys = oldKeys[slot]
      if (keys === undefined) continue
      const integer = oldIntegers![slot]!
      const to = integer & (slots - 1)
      if (integerKeys[to] === undefined) this.filled++
      integerKeys[to] = keys
      integers[to] = integer
    }
    return integerKeys
  }
}
