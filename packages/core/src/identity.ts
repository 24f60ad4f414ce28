import { createHash } from 'node:crypto'
import { CacheConfigError } from './errors.js'

/*
 * Who a memoized function is, so that two different functions never share entries. Keys must be
 * the same in every process and after a restart, so they are built from names (`Class.method`,
 * `fn.name`, or the `name` option). Names can collide (two modules with a `UserRepository`, two
 * functions called `load`, minified code): every default name is claimed here, in a registry
 * shared by every copy of @cache/core in the process, together with a fingerprint of the code it
 * stands for. A second, different piece of code claiming the same name is an error that asks for
 * `name`; the same code claiming it again (a factory called twice, a module loaded twice) is not.
 */

interface Claim {
  /** The file the claim was made from, when the stack tells (functions only). */
  file: string | undefined
  /** A digest of the source code the name stands for. */
  fingerprint: string
}

const REGISTRY = Symbol.for('@cache/core:memoized-names')
const registry: Map<string, Claim> = ((globalThis as Record<symbol, unknown>)[REGISTRY] ??= new Map()) as Map<
  string,
  Claim
>

/** A short digest of source text. */
export function digest(text: string): string {
  return createHash('sha256').update(text).digest('base64url').slice(0, 12)
}

/**
 * The source text of a function, or `undefined` for one whose source says nothing about it
 * (bound or native functions all read `function () { [native code] }`).
 */
export function sourceOf(fn: Function): string | undefined {
  const text = Function.prototype.toString.call(fn)
  return text.endsWith('{ [native code] }') ? undefined : text
}

/**
 * Claims `label` (the part of the keys that names the function) for code with `fingerprint`.
 * Throws a {@link CacheConfigError} asking for `name` when different code already holds it.
 */
export function claimName(label: string, claim: Claim, what: string): void {
  const held = registry.get(label)
  if (held === undefined) {
    registry.set(label, claim)
    return
  }
  const sameFile = held.file === undefined || claim.file === undefined || held.file === claim.file
  if (sameFile && held.fingerprint === claim.fingerprint) return
  throw new CacheConfigError(
    'name',
    `two different ${what} would share the cache keys "${label}:…" and return each other's results. ` +
      'Give each its own `name` option (after a hot reload that edited this code, restart or pass `name`).',
  )
}

/**
 * The file of the code that called `callee` (the query and hash of a module URL dropped, so a
 * module reloaded as `file.js?t=2` is the same file), or `undefined` if the stack does not say.
 */
export function callerFile(callee: Function): string | undefined {
  const holder: { stack?: string } = {}
  const limit = Error.stackTraceLimit
  try {
    Error.stackTraceLimit = 1
    Error.captureStackTrace(holder, callee)
  } finally {
    Error.stackTraceLimit = limit
  }
  const frame = holder.stack?.split('\n')[1]
  const match = frame === undefined ? null : /\(?([^()\s]+?):\d+:\d+\)?\s*$/.exec(frame)
  return match?.[1]?.replace(/[?#].*$/, '')
}

/** A fingerprint of a class: its source and the source of every class it extends. */
export function classFingerprint(cls: Function): string {
  const parts: string[] = []
  for (
    let c: unknown = cls;
    typeof c === 'function' && c !== Function.prototype;
    c = Object.getPrototypeOf(c)
  ) {
    parts.push(sourceOf(c as Function) ?? `[native ${(c as Function).name}]`)
  }
  return digest(parts.join('\n'))
}
