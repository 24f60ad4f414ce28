import { CacheConfigError, CacheKeyError } from '@cache/core'
import { hashKey, wellFormedKey } from '@cache/core/backend'

/** memcached's key limit, in bytes. */
export const MAX_KEY_BYTES = 250

/** Longest generation text: a 64-bit counter in base 36. */
const MAX_GENERATION_CHARS = 13

/**
 * Bytes kept verbatim: printable ASCII except `#`. `#` marks the structure (`ns#gen:key`,
 * `ns#g`, hashed `#…`), so a verbatim key never contains it and the mapping is one-to-one.
 */
const VERBATIM = /^[\x21\x22\x24-\x7e]*$/

/** Namespaces are written verbatim: printable ASCII without `#`. */
const NAMESPACE = /^[\x21\x22\x24-\x7e]{1,128}$/

/**
 * How user keys become memcached keys: `<namespace>#<generation>:<key>`, where `<key>` is the
 * user key when it is short and safe, else `#` + its SHA-256 (base64url). Every part is
 * unambiguous (the namespace ends at the first `#`, a verbatim key has no `#`), so two different
 * keys never share a memcached key.
 */
export class KeyMapper {
  /** The per-server generation counter's key: `<namespace>#g`. */
  readonly generationKey: string
  private readonly maxVerbatim: number

  constructor(readonly namespace: string) {
    if (!NAMESPACE.test(namespace)) {
      throw new CacheConfigError(
        'namespace',
        `${JSON.stringify(namespace)} must be 1-128 printable ASCII characters without spaces or "#"`,
      )
    }
    this.generationKey = `${namespace}#g`
    this.maxVerbatim = MAX_KEY_BYTES - namespace.length - MAX_GENERATION_CHARS - 2
  }

  /** The part of the memcached key that depends on the user key alone. */
  suffix(key: string): string {
    if (typeof key !== 'string') throw new CacheKeyError(`cache keys are strings, got ${describe(key)}`)
    // Hashed as UTF-8: a key with a lone surrogate is first made well-formed, one to one, so
    // that it does not hash like every other such key (they would all read as U+FFFD).
    return key.length <= this.maxVerbatim && VERBATIM.test(key) ? key : `#${hashKey(wellFormedKey(key))}`
  }

  /** The full memcached key for a suffix in a generation. */
  key(generation: string, suffix: string): string {
    return `${this.namespace}#${generation}:${suffix}`
  }
}

function describe(value: unknown): string {
  return value === null ? 'null' : typeof value
}
