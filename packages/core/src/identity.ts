import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { types } from 'node:util'
import { CacheConfigError } from './errors.js'

/*
 * Who a memoized function is, so that two different functions never share entries. Keys must be
 * the same in every process and after a restart, so they are built from names (`Class.method`,
 * `fn.name`, or the `name` option) and, for default names, a fingerprint of the source text
 * (`sourceFingerprint`): two functions of one name with different code never meet. What is left
 * can still collide (one factory called twice, two classes of identical text in two modules, the
 * same module loaded twice): every key prefix is claimed here, in a registry shared by every copy
 * of @cache/core in the process, by the object it stands for — the function given to `cached()`,
 * or a decorated method on one class. A second object claiming a prefix that a *default* name
 * claimed is an error asking for `name`: identical source text with different closures is a
 * different function. Only a `name` given on both sides shares deliberately.
 */

interface Claim {
  /** Claimed by a default name (fn.name, Class.method) at least once. */
  byDefault: boolean
  /** The objects that claimed it (held weakly: a claim never keeps code alive). */
  readonly owners: WeakSet<object>
  /** How many different objects claimed it. */
  distinct: number
}

const REGISTRY = Symbol.for('@cache/core:memoized-names@2')
const registry: Map<string, Claim> = ((globalThis as Record<symbol, unknown>)[REGISTRY] ??= new Map()) as Map<
  string,
  Claim
>

/**
 * The source text of a function, or `undefined` for one whose source says nothing about it
 * (bound or native functions all read `function () { [native code] }`).
 */
export function sourceOf(fn: Function): string | undefined {
  const text = Function.prototype.toString.call(fn)
  return text.endsWith('{ [native code] }') ? undefined : text
}

/** Words through which code reaches the receiver of a call: `this`, `super` (`super.m()` passes it on), a direct `eval`. */
const RECEIVER_WORDS =
  /(?<![\p{ID_Continue}$\u200c\u200d])(?:this|super|eval)(?![\p{ID_Continue}$\u200c\u200d])/u
/** TypeScript's helpers for async functions below ES2017, given the receiver: `__awaiter(this,`, `__generator(this,`. */
const LOWERED_ASYNC = /\b__(?:awaiter|generator)\(this,/g
/** The start of an arrow function's text: `(a) =>`, `a =>`, `async (a) =>`, `async a =>`. */
const ARROW_START = /^(?:async\s*)?(?:\(|[\p{ID_Start}$_][\p{ID_Continue}$\u200c\u200d]*\s*=>)/u

/**
 * Whether `fn`'s result may depend on the receiver of a call (`obj.fn()`'s `obj`). False for arrow
 * functions (their `this` is the one around them), bound functions, and functions whose text never
 * names `this`, `super` or `eval` (nor any `\u` escape); true otherwise, native functions and
 * Proxies included. A word in a comment or a string counts: when in doubt, it may.
 */
export function readsReceiver(fn: Function): boolean {
  // A Proxy's `apply` trap may call anything with the receiver, whatever its target's text.
  if (types.isProxy(fn)) return true
  const source = sourceOf(fn)
  if (source === undefined) return !fn.name.startsWith('bound ')
  // TypeScript's output for an async function below ES2017 passes the receiver to its helpers
  // (`return __awaiter(this, void 0, void 0, function* () {…})`, and `__generator(this, …)` below
  // ES2015): the body they run reads it only where the source did, and that is in the text still.
  const text = source.replace(LOWERED_ASYNC, '')
  // An identifier spelled with escapes (`ev\u0061l`) names what the words above would not find.
  if (!RECEIVER_WORDS.test(text) && !text.includes('\\u')) return false
  // A function with a `prototype` (a `function`, a generator, a class) is no arrow; nor is a
  // method named `async`, whose text (`async(a) {…}`) starts like one.
  if (Object.hasOwn(fn, 'prototype') || /^async\s+function\b/.test(text) || fn.name === 'async') return true
  return !ARROW_START.test(text)
}

/**
 * A short fingerprint of a function's source text, or of a text (12 hex digits of its SHA-256), part of every
 * default key name: two builds that give two different functions one name (a minifier renaming
 * both `o`) still key them apart, and a function whose code changed does not serve the results of
 * its old code. The same code gives the same fingerprint in every process and build.
 */
export function sourceFingerprint(fn: Function | string): string {
  const text = typeof fn === 'string' ? fn : Function.prototype.toString.call(fn)
  return createHash('sha256').update(text).digest('hex').slice(0, 12)
}

/**
 * Claims the keys under `prefix` for `owner`. `byDefault` says the name was not given by the
 * user. Throws a {@link CacheConfigError} asking for `name` when another object already holds a
 * prefix that a default name is involved in; `describe` says what collided, for the message.
 */
export function claimPrefix(prefix: string, owner: object, byDefault: boolean, describe: () => string): void {
  const held = registry.get(prefix)
  if (held === undefined) {
    registry.set(prefix, { byDefault, owners: new WeakSet([owner]), distinct: 1 })
    return
  }
  if (held.owners.has(owner)) {
    if (byDefault && held.distinct > 1) throw collision(prefix, describe())
    held.byDefault ||= byDefault
    return
  }
  if (byDefault || held.byDefault) throw collision(prefix, describe())
  held.owners.add(owner)
  held.distinct++
}

/**
 * Forgets every claimed key prefix, for every copy of @cache/core in the process: for test suites
 * that load the same modules again in one process. Not for production code: after it, two
 * different functions of one default name are no longer told apart.
 */
export function forgetMemoizedNames(): void {
  registry.clear()
}

function collision(prefix: string, what: string): CacheConfigError {
  return new CacheConfigError(
    'name',
    `${what} would share the cache keys "${prefix}…" and return each other's results. ` +
      "Give each its own `name` option (cached(fn, { name: 'billing.load' }), @cache({ name: 'BillingRepository.find' })). " +
      'To share entries on purpose, give both the same `name`. ' +
      'The same code loaded twice counts as two functions (a factory called twice, a hot reload, a test that ' +
      're-imports a module): give it a `name`, or call forgetMemoizedNames() (from @cache/core or @cache/testing) between test runs.',
  )
}

const moduleFingerprints = new Map<string, string | undefined>()

/**
 * The fingerprint of the source files of the module that is calling into @cache/core (decorating
 * a class, as legacy decorators do from a `__decorate` call beside the class), or `undefined` when
 * none can be read (code built in memory, an `eval`). A class's own text does not hold what
 * TypeScript's `experimentalDecorators` emits after it — decorator arguments, parameter decorators
 * such as `@Inject('users')` — nor the module's constants; its file does. Read once per file.
 */
export function callerModuleFingerprint(callee: Function): string | undefined {
  const texts: string[] = []
  for (const file of declaringFiles(callee)) {
    if (!moduleFingerprints.has(file)) {
      let fingerprint: string | undefined
      try {
        fingerprint = sourceFingerprint(readFileSync(file, 'utf8'))
      } catch {
        fingerprint = undefined
      }
      moduleFingerprints.set(file, fingerprint)
    }
    const fingerprint = moduleFingerprints.get(file)
    if (fingerprint !== undefined) texts.push(fingerprint)
  }
  if (texts.length === 0) return undefined
  return texts.length === 1 ? texts[0] : sourceFingerprint(texts.join('\n'))
}

/**
 * The helpers compilers emit to apply decorators, in the module that declares the class (or in a
 * helper library): TypeScript's and tslib's, esbuild's, Babel's (inline `_applyDecs…`, its runtime's
 * `applyDecs2311`, the legacy plugin's `_applyDecoratedDescriptor`), SWC's (`_ts_decorate`,
 * `_apply_decs_2203_r`). A minified bundle's renamed helper is not known: see {@link declaringFiles}.
 */
const DECORATE_HELPERS =
  /^(?:__decorate|__esDecorate|__runInitializers|__decorateClass|__decorateElement|_?applyDecs\w*|_applyDecoratedDescriptor|_decorate|_ts_decorate|_ts_param|_apply_decs\w*)$/

/** Frames of Node's module loader: below them is the code that imported the module, not its own. */
const LOADER = /^node:internal\/modules\//

/** Installed libraries of such helpers: the module that calls them is the class's. */
const HELPER_LIBRARIES =
  /[\\/]node_modules[\\/](?:tslib|@swc[\\/]helpers|@babel[\\/]runtime[\w-]*|reflect-metadata)[\\/]/

/**
 * The files of the module that applies the decorator `callee`, from the call sites below it (V8's
 * structured frames, so neither source maps nor a user's `Error.prepareStackTrace` change them).
 * Where the compiler's decorate helper runs (`__decorate`, `__esDecorate`…): the file of the code
 * that calls it (the class's module), not the helper's own (tslib with `importHelpers`, a bundle's
 * shared chunk, a project's helpers module); an installed package's own file counts (a decorated
 * class published in a package). Installed code called
 * between (reflect-metadata's `Reflect.decorate`, a framework's `applyDecorators`) is passed over.
 * Without a known helper (the legacy form applied by hand, a minified bundle's renamed helper),
 * every file on the stack down to the module being loaded but those of helper libraries: a helper
 * of the project that wraps `cache()`, and the class's module that calls it, installed or not (a
 * package's own file, an application installed globally or run through `npx`).
 */
function declaringFiles(callee: Function): string[] {
  const original = Error.prepareStackTrace
  const limit = Error.stackTraceLimit
  let sites: NodeJS.CallSite[] = []
  try {
    Error.stackTraceLimit = 200
    Error.prepareStackTrace = (_error, callSites) => callSites
    const holder: { stack?: unknown } = {}
    Error.captureStackTrace(holder, callee)
    if (Array.isArray(holder.stack)) sites = holder.stack as NodeJS.CallSite[]
  } catch {
    sites = []
  } finally {
    Error.prepareStackTrace = original
    Error.stackTraceLimit = limit
  }
  const frames = sites.map((site) => ({
    file: typeof site.getFileName() === 'string' ? fileOf(site.getFileName()!) : undefined,
    name: site.getFunctionName(),
  }))
  const internal = (file: string | undefined) => file === undefined || file.startsWith('node:')
  const helper = frames.findIndex((frame) => frame.name !== null && DECORATE_HELPERS.test(frame.name))
  if (helper !== -1) {
    // The helper's caller: the helper itself may live in a file every class shares (tslib, a
    // bundle's shared chunk, a project's helpers module).
    const file = frames
      .slice(helper)
      .find(
        (frame) =>
          !internal(frame.file) &&
          !HELPER_LIBRARIES.test(frame.file!) &&
          !(frame.name !== null && DECORATE_HELPERS.test(frame.name)),
      )?.file
    return file === undefined ? [] : [file]
  }
  const files: string[] = []
  for (const frame of frames) {
    // A built-in's frame has no file (`Array#forEach`, `Array#reduce` a helper loops with), and
    // Node's own modules run callbacks (AsyncLocalStorage#run, EventEmitter#emit): passed over.
    // The module loader's frames end the module's code.
    if (internal(frame.file)) {
      if (files.length > 0 && LOADER.test(frame.file ?? '')) break
      continue
    }
    if (!HELPER_LIBRARIES.test(frame.file!) && !files.includes(frame.file!)) files.push(frame.file!)
  }
  return files
}

/** A stack frame's or module's location as a path (a module URL's query, as in `import('./m.js?v=2')`, dropped). */
function fileOf(location: string): string {
  const path = location.replace(/[?#].*$/, '')
  return path.startsWith('file:') ? fileURLToPath(path) : path
}
