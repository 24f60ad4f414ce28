/**
 * A decorated method's key covers the file of the module that decorates its class (its constants,
 * the decorator arguments), also when that module is an installed package, or applies the legacy
 * form through a helper of the project in another file.
 */
import { execFile } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { promisify } from 'node:util'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { cache, forgetMemoizedNames } from '../src/index.js'
import { memoryBackend } from './installed-backends.js'

const dir = mkdtempSync(join(tmpdir(), 'module-fingerprint-'))
afterAll(() => {
  forgetMemoizedNames()
  rmSync(dir, { recursive: true, force: true })
})

/** Writes `files` under the temporary directory; the URL of each, by name. */
function write(files: Record<string, string>): Record<string, string> {
  const urls: Record<string, string> = {}
  for (const [name, text] of Object.entries(files)) {
    const path = join(dir, name)
    mkdirSync(join(path, '..'), { recursive: true })
    writeFileSync(path, text)
    urls[name] = pathToFileURL(path).href
  }
  return urls
}

/** Applies the legacy form of `cache()` to `cls.prototype[method]` by hand, on a backend of its own. */
function memoizeByHand(cls: Function, method: string): void {
  const descriptor = Object.getOwnPropertyDescriptor(cls.prototype, method)!
  Object.defineProperty(
    cls.prototype,
    method,
    cache({ backend: memoryBackend(), ttl: 60 })(cls.prototype, method, descriptor),
  )
}

/** The key of `find(1)` on a new instance of `cls`. */
function keyOf(cls: new () => { find: { keyFor: { call: (self: unknown, id: number) => string } } }): string {
  const self = new cls()
  return self.find.keyFor.call(self, 1)
}

/** The helper TypeScript emits for legacy decorators. */
const DECORATE = `function __decorate(decorators, target, key, desc) {
  for (const d of decorators) desc = d(target, key, desc) || desc
  Object.defineProperty(target, key, desc)
}`

/**
 * A module of one class whose result is a module constant: `preamble` (imports, a helper), then
 * `apply`, the statement that decorates `Repo.prototype.find`. The class text is the same in every
 * module; only the constant differs.
 */
const repoModule = (table: string, preamble: string, apply: string) => `
${preamble}
const TABLE = '${table}'
export function define(cache, backend) {
  class Repo {
    async find(id) {
      return TABLE + '#' + id
    }
  }
  ${apply}
  return Repo
}
`

/** Decorated as TypeScript emits it, with `__decorate` in the module (or imported: `preamble`). */
const compiled = (table: string, preamble = DECORATE) =>
  repoModule(
    table,
    preamble,
    "__decorate([cache({ backend, ttl: 60 })], Repo.prototype, 'find', Object.getOwnPropertyDescriptor(Repo.prototype, 'find'))",
  )

/**
 * Two deploys of a module whose class is decorated by a helper of the project (`helper`, the text
 * of `<dir>/<file>`, exporting `name(cache, backend, Class, names)`), their constants differing:
 * each must get its own result.
 */
async function throughHelper(dir: string, name: string, helper: string): Promise<void> {
  const repo = (table: string) =>
    repoModule(table, `import { ${name} } from './helper.mjs'`, `${name}(cache, backend, Repo, ['find'])`)
  const urls = write({
    [`${dir}/helper.mjs`]: helper,
    [`${dir}/repo-a.mjs`]: repo('users'),
    [`${dir}/repo-b.mjs`]: repo('accounts'),
  })
  const backend = memoryBackend()
  const a = (await import(urls[`${dir}/repo-a.mjs`]!)).define(cache, backend)
  const b = (await import(urls[`${dir}/repo-b.mjs`]!)).define(cache, backend)
  expect(await new a().find(1)).toBe('users#1')
  expect(await new b().find(1)).toBe('accounts#1')
}

describe('the module a decorated class comes from', () => {
  it('is an installed package: two versions of it whose constants differ never share entries', async () => {
    const urls = write({
      'a/node_modules/@acme/repos/index.mjs': compiled('users'),
      'b/node_modules/@acme/repos/index.mjs': compiled('accounts'),
    })
    const backend = memoryBackend()
    const v1 = (await import(urls['a/node_modules/@acme/repos/index.mjs']!)).define(cache, backend)
    const v2 = (await import(urls['b/node_modules/@acme/repos/index.mjs']!)).define(cache, backend)
    expect(await new v1().find(1)).toBe('users#1')
    // Before: the package's file was passed over as installed code: one key for both (a
    // conflict here, accounts got users' row across two processes of a rolling deploy).
    expect(await new v2().find(1)).toBe('accounts#1')
  })

  // The helpers other compilers emit (Babel's runtime and legacy plugin, SWC) and a minified bundle's
  // renamed one: none of them was known, and the fallback passed over the installed package's file.
  it.each(['applyDecs2311', '_applyDecoratedDescriptor', '_ts_decorate', '_apply_decs_2203_r', 'n'])(
    'is an installed package decorated through a helper named %s',
    async (helper) => {
      const renamed = (table: string) =>
        compiled(table, DECORATE.replace('__decorate', helper)).replace('__decorate(', `${helper}(`)
      const urls = write({
        [`c-${helper}/node_modules/@acme/repos/index.mjs`]: renamed('users'),
        [`d-${helper}/node_modules/@acme/repos/index.mjs`]: renamed('accounts'),
      })
      const backend = memoryBackend()
      const v1 = (await import(urls[`c-${helper}/node_modules/@acme/repos/index.mjs`]!)).define(
        cache,
        backend,
      )
      const v2 = (await import(urls[`d-${helper}/node_modules/@acme/repos/index.mjs`]!)).define(
        cache,
        backend,
      )
      expect(await new v1().find(1)).toBe('users#1')
      // Before: one key for both (a conflict here; across two processes, accounts got users' row).
      expect(await new v2().find(1)).toBe('accounts#1')
    },
  )

  it('is the caller of a decorate helper that lives in a file every class shares (a bundle chunk)', async () => {
    const helpers = `export ${DECORATE}`
    const app = (table: string) => compiled(table, "import { __decorate } from './chunk.mjs'")
    const urls = write({
      'bundle/chunk.mjs': helpers,
      'bundle/v1.mjs': app('users'),
      'bundle/v2.mjs': app('accounts'),
    })
    const backend = memoryBackend()
    const v1 = (await import(urls['bundle/v1.mjs']!)).define(cache, backend)
    const v2 = (await import(urls['bundle/v2.mjs']!)).define(cache, backend)
    expect(await new v1().find(1)).toBe('users#1')
    // Before: the chunk's file was fingerprinted, the same for both.
    expect(await new v2().find(1)).toBe('accounts#1')
  })

  it('applies the legacy form through a helper of the project in another file', async () => {
    // Before: the helper's file was the one fingerprinted, the same for both.
    await throughHelper(
      'app',
      'cacheMethods',
      `
export function cacheMethods(cache, backend, Class, names) {
  for (const name of names) {
    const desc = Object.getOwnPropertyDescriptor(Class.prototype, name)
    Object.defineProperty(Class.prototype, name, cache({ backend, ttl: 60 })(Class.prototype, name, desc))
  }
}
`,
    )
  })

  it('keys an ES5 subclass by the methods put on its prototype outside its text', async () => {
    // As TypeScript's `target: ES5` emits classes (and util.inherits code): the base is decorated
    // in a module of the same text in both deploys; the subclass's constructor text is the same,
    // only the override on its prototype differs.
    const base = `
export function define(cache, backend) {
  function Repo() {}
  Repo.prototype.table = function () { return 'base' }
  Repo.prototype.find = async function (id) { return this.table() + '#' + id }
  Object.defineProperty(Repo.prototype, 'find',
    cache({ backend, ttl: 60 })(Repo.prototype, 'find', Object.getOwnPropertyDescriptor(Repo.prototype, 'find')))
  return Repo
}
`
    const users = (table: string) => `
export function extend(Repo) {
  function UsersRepo() { Repo.call(this) }
  UsersRepo.prototype = Object.create(Repo.prototype)
  UsersRepo.prototype.constructor = UsersRepo
  UsersRepo.prototype.table = function () { return '${table}' }
  return UsersRepo
}
`
    const urls = write({
      'es5-a/base.mjs': base,
      'es5-b/base.mjs': base,
      'es5-a/users.mjs': users('users'),
      'es5-b/users.mjs': users('accounts'),
    })
    const backend = memoryBackend()
    const usersOf = async (deploy: string) =>
      (await import(urls[`${deploy}/users.mjs`]!)).extend(
        (await import(urls[`${deploy}/base.mjs`]!)).define(cache, backend),
      )
    const a = await usersOf('es5-a')
    const b = await usersOf('es5-b')
    expect(await new a().find(1)).toBe('users#1')
    // Before: both keyed by `function UsersRepo() { Repo.call(this) }` alone (a conflict here;
    // across two processes, accounts got users' row).
    expect(await new b().find(1)).toBe('accounts#1')
  })

  it('applies the legacy form through a helper of the project that loops with forEach', async () => {
    // A built-in's frame (Array#forEach) between cache() and the class's module has no file.
    // Before: the walk stopped there, and only the helper's file was fingerprinted.
    await throughHelper(
      'each',
      'memoizeMethods',
      `
export function memoizeMethods(cache, backend, Class, names) {
  names.forEach((name) => {
    const desc = Object.getOwnPropertyDescriptor(Class.prototype, name)
    Object.defineProperty(Class.prototype, name, cache({ backend, ttl: 60 })(Class.prototype, name, desc))
  })
}
`,
    )
  })

  /** A base class decorated in a module of the same text in both deploys, and its subclass from `sub`. */
  const deploys = async (name: string, sub: (variant: string) => string, variants: [string, string]) => {
    const base = `
export function define(cache, backend) {
  class Repo {
    async find(id) { return this.constructor.config.table + '#' + this.table() + '#' + id }
    table() { return 'base' }
  }
  Object.defineProperty(Repo.prototype, 'find',
    cache({ backend, ttl: 60 })(Repo.prototype, 'find', Object.getOwnPropertyDescriptor(Repo.prototype, 'find')))
  return Repo
}
`
    const urls = write({
      [`${name}-a/base.mjs`]: base,
      [`${name}-b/base.mjs`]: base,
      [`${name}-a/sub.mjs`]: sub(variants[0]),
      [`${name}-b/sub.mjs`]: sub(variants[1]),
    })
    const backend = memoryBackend()
    const load = async (deploy: string) =>
      (await import(urls[`${name}-${deploy}/sub.mjs`]!)).extend(
        (await import(urls[`${name}-${deploy}/base.mjs`]!)).define(cache, backend),
        cache,
        backend,
      )
    return [await load('a'), await load('b')]
  }

  it('keys a subclass by static fields a compiler wrote after the class (a target before ES2022)', async () => {
    // As tsc --target ES2021 writes `static config = { table: 'users' }`. Before: the class text
    // is the same, and accounts got users' row.
    const [a, b] = await deploys(
      'statics',
      (table) => `
export function extend(Repo) {
  class Users extends Repo {}
  Users.config = { table: '${table}' }
  return Users
}
`,
      ['users', 'accounts'],
    )
    expect(await new a().find(1)).toBe('users#base#1')
    expect(await new b().find(1)).toBe('accounts#base#1')
  })

  it('keys a subclass by the text of a memoized override, and refuses a bound one', async () => {
    // An override memoized itself: its wrapper's text is @cache's, the same in both deploys.
    // Before: left out, and accounts got users' row.
    const [a, b] = await deploys(
      'memoized',
      (table) => `
export function extend(Repo, cache, backend) {
  class Users extends Repo {}
  Users.config = { table: 't' }
  Users.prototype.table = cache({ backend, ttl: 60, name: 'table-${table}' })(
    Users.prototype, 'table', { value: function table() { return '${table}' } }).value
  return Users
}
`,
      ['users', 'accounts'],
    )
    expect(await new a().find(1)).toBe('t#users#1')
    expect(await new b().find(1)).toBe('t#accounts#1')
    // A bound function has no text to read: refused, not keyed as if it were absent.
    const [bound] = await deploys(
      'bound',
      (table) => `
export function extend(Repo) {
  class Users extends Repo {}
  Users.config = { table: 't' }
  Users.prototype.table = function table(name) { return name }.bind(null, '${table}')
  return Users
}
`,
      ['users', 'accounts'],
    )
    await expect(new bound().find(1)).rejects.toThrow(/cannot be read/)
  })

  it('refuses a static that is a Proxy of an object: what it answers is not what it holds', async () => {
    // r67: a Proxy whose get trap answers from a table of its module. Before: keyed as `{}`.
    const [cls] = await deploys(
      'proxy-object',
      (table) => `
export function extend(Repo) {
  class Users extends Repo {}
  const table = { table: '${table}' }
  Users.config = new Proxy({}, { get: (_, key) => table[key] })
  return Users
}
`,
      ['users', 'accounts'],
    )
    await expect(new cls().find(1)).rejects.toThrow(/its static `config` \(a Proxy: what it answers/)
  })

  it('keys a decorated class by the classes it extends, from other modules', async () => {
    // r67: the decorated module is the same file in both deploys; its base class (or a mixin
    // applied as its base) comes from a module that differs. Before: one key.
    for (const [name, base, extend] of [
      [
        'base-class',
        (table: string) => `export class BaseRepo { table() { return '${table}' } }`,
        'BaseRepo',
      ],
      [
        'mixin-base',
        (table: string) =>
          `export class BaseRepo { table() { return '${table}' } }\nexport const Named = (B) => class extends B {}`,
        'Named(BaseRepo)',
      ],
      [
        // r68: a base's config with one member that cannot be read (a bound function): read leaf
        // by leaf, the rest counts. Before: the whole member counted as unread.
        'base-unread-leaf',
        (table: string) =>
          `export class BaseRepo { table() { return BaseRepo.config.table } }\nBaseRepo.config = { table: '${table}', log: console.log.bind(console) }\nBaseRepo.round = ${table === 'users' ? 'Math.floor' : 'Math.ceil'}`,
        'BaseRepo',
      ],
    ] as const) {
      const repo = `
import * as base from './base.mjs'
export function define(cache, backend) {
  const { BaseRepo, Named } = base
  class Repo extends ${extend} {
    async find(id) { return this.table() + '#' + id }
  }
  Object.defineProperty(Repo.prototype, 'find',
    cache({ backend, ttl: 60 })(Repo.prototype, 'find', Object.getOwnPropertyDescriptor(Repo.prototype, 'find')))
  return Repo
}
`
      const urls = write({
        [`${name}-a/base.mjs`]: base('users'),
        [`${name}-b/base.mjs`]: base('accounts'),
        [`${name}-a/repo.mjs`]: repo,
        [`${name}-b/repo.mjs`]: repo,
      })
      const backend = memoryBackend()
      const a = (await import(urls[`${name}-a/repo.mjs`]!)).define(cache, backend)
      const b = (await import(urls[`${name}-b/repo.mjs`]!)).define(cache, backend)
      expect(keyOf(a), name).not.toBe(keyOf(b))
      expect(await new a().find(1), name).toBe('users#1')
      expect(await new b().find(1), name).toBe('accounts#1')
    }
    // A class of Node's own modules holds native and bound functions of the runtime: read
    // leniently, not refused.
    const { Readable } = await import('node:stream')
    class Source extends Readable {
      async lookup(id: number) {
        return `source#${id}`
      }
    }
    memoizeByHand(Source, 'lookup')
    expect(await new Source().lookup(1)).toBe('source#1')
  })

  it("takes the runtime's objects held as statics by their names: console, Math, a module of Node's own", async () => {
    // r68: `static logger = console` (and `Math`, `node:util`) was refused: what they hold is
    // native or bound. They are the runtime's, the same in every deploy.
    const util = await import('node:util')
    for (const [name, value] of [
      ['console', console],
      ['Math', Math],
      ['node:util', util.default],
    ] as const) {
      class Logged {
        static logger: unknown = value
        async find(id: number) {
          return `logged#${id}`
        }
      }
      memoizeByHand(Logged, 'find')
      expect(await new Logged().find(1), name).toBe('logged#1')
    }
  })

  it('names the member it cannot read: a static nested too deep, a Proxy, a bound method', async () => {
    // Before: each refused with the message for a class whose own text cannot be read, which
    // named neither the member nor why.
    for (const [name, sub, why] of [
      [
        'deep',
        `
export function extend(Repo) {
  class Users extends Repo {}
  let deep = { table: 't' }
  for (let i = 0; i < 200000; i++) deep = { next: deep }
  Users.config = deep
  return Users
}
`,
        /its static `config` \(reading it threw RangeError/,
      ],
      [
        'trap',
        `
export function extend(Repo) {
  class Users extends Repo {}
  Users.config = new Proxy({ table: 't' }, { ownKeys() { throw new Error('no keys here') } })
  return Users
}
`,
        /its static `config` \(a Proxy: what it answers is not what it holds\)/,
      ],
      [
        'bound-method',
        `
export function extend(Repo) {
  class Users extends Repo {}
  Users.config = { table: 't' }
  Users.prototype.table = function table(name) { return name }.bind(null, 'users')
  return Users
}
`,
        /its prototype's `table` \(a function whose text cannot be read: bound/,
      ],
    ] as const) {
      const [cls] = await deploys(`unreadable-${name}`, () => sub, ['a', 'b'])
      await expect(new cls().find(1), name).rejects.toThrow(why)
    }
  })

  it("applies the legacy form through a helper of the project that runs it inside Node's own modules", async () => {
    // AsyncLocalStorage#run, EventEmitter#emit: node: frames between cache() and the class's
    // module. Before: the walk stopped at the first one, and only the helper's file counted.
    await throughHelper(
      'node-frames',
      'memoizeMethods',
      `
import { AsyncLocalStorage } from 'node:async_hooks'
import { EventEmitter } from 'node:events'
export function memoizeMethods(cache, backend, Class, names) {
  const events = new EventEmitter()
  events.on('apply', (name) => {
    const desc = Object.getOwnPropertyDescriptor(Class.prototype, name)
    Object.defineProperty(Class.prototype, name, cache({ backend, ttl: 60 })(Class.prototype, name, desc))
  })
  new AsyncLocalStorage().run({}, () => names.forEach((name) => events.emit('apply', name)))
}
`,
    )
  })

  it('keys a subclass by what its static config holds: a function in it by its text, a field declared in the class and assigned after it', async () => {
    // Before: `pick` counted as "[function pick]", and `static config;` hid the value assigned
    // after the class (tsc's ES2022 output for `static config: Config`).
    for (const [name, sub] of [
      [
        'nested-fn',
        (table: string) => `
export function extend(Repo) {
  class Users extends Repo {}
  Users.config = { table: 'same', pick: (row) => row + '${table}' }
  return Users
}
`,
      ],
      [
        'declared',
        (table: string) => `
export function extend(Repo) {
  class Users extends Repo { static config; }
  Users.config = { table: '${table}' }
  return Users
}
`,
      ],
      [
        // r66: one of the class's own methods, chosen for a static: which one is in the key.
        'chosen-method',
        (method: string) => `
export function extend(Repo) {
  class Users extends Repo {
    static net(price) { return price }
    static gross(price) { return price * 1.2 }
  }
  Users.config = { table: 'same' }
  Users.apply = Users.${method}
  return Users
}
`,
      ],
      [
        // r66: a config object made with Object.create(defaults): its contents, not "[Object]".
        'object-create',
        (table: string) => `
export function extend(Repo) {
  class Users extends Repo {}
  Users.config = Object.assign(Object.create({ table: 'default' }), { table: '${table}' })
  return Users
}
`,
      ],
      [
        'negative-zero',
        (table: string) => `
export function extend(Repo) {
  class Users extends Repo {}
  Users.config = { table: ${table} }
  return Users
}
`,
      ],
      [
        // r67: a function of the member's name whose text is elsewhere in the class (a static
        // object's method) assigned to the prototype. Before: skipped as the class's own method.
        'same-name-elsewhere',
        (variant: string) => `
export function extend(Repo) {
  class Users extends Repo {
    table() { return 'users' }
    static variants = { reduced: { table() { return 'accounts' } } }
  }
  Users.config = { table: 'same' }
  ${variant === 'accounts' ? 'Users.prototype.table = Users.variants.reduced.table' : ''}
  return Users
}
`,
      ],
      [
        // r67: a static auto-accessor (\`static accessor rate = RATE\`, as tsc writes it): the
        // value lives in a #private field behind a getter. Before: only the getter's text counted.
        'static-accessor',
        (table: string) => `
const TABLE = '${table}'
export function extend(Repo) {
  class Users extends Repo {
    static #config_storage = { table: TABLE }
    static get config() { return Users.#config_storage }
    static set config(value) { Users.#config_storage = value }
  }
  return Users
}
`,
      ],
      ...(
        [
          // r67: values of another realm (a vm context), by their contents. Before: by class name.
          ['vm-map', (t: string) => `vm.runInNewContext("new Map([['table', '${t}']])")`],
          ['vm-set', (t: string) => `vm.runInNewContext("new Set(['${t}'])")`],
          ['vm-date', (t: string) => `vm.runInNewContext("new Date(${t.length})")`],
          ['vm-bytes', (t: string) => `vm.runInNewContext("new Uint8Array([${t.length}]).buffer")`],
          ['vm-boxed', (t: string) => `vm.runInNewContext("new String('${t}')")`],
          [
            'shared-bytes',
            (t: string) =>
              `(() => { const b = new SharedArrayBuffer(1); new Uint8Array(b)[0] = ${t.length}; return b })()`,
          ],
          ['boxed-bigint', (t: string) => `Object(${t.length}n)`],
          ['map-property', (t: string) => `Object.assign(new Map(), { table: '${t}' })`],
          ['function-property', (t: string) => `Object.assign(function table() {}, { table: '${t}' })`],
          [
            'es5-prototype',
            (t: string) => `(() => { function Table() {} Table.prototype.table = '${t}'; return Table })()`,
          ],
        ] as const
      ).flatMap(([name, value]) =>
        // Inside a static object, and as the static itself.
        (['nested', 'direct'] as const).map(
          (where) =>
            [
              `${name}-${where}`,
              (table: string) => `
import vm from 'node:vm'
export function extend(Repo) {
  class Users extends Repo {}
  Users.config = { table: 'same'${where === 'nested' ? `, rates: ${value(table)}` : ''} }
  ${where === 'direct' ? `Users.rates = ${value(table)}` : ''}
  return Users
}
`,
            ] as const,
        ),
      ),
    ] as const) {
      const variants: [string, string] =
        name === 'negative-zero'
          ? ['0', '-0']
          : name === 'chosen-method'
            ? ['net', 'gross']
            : ['users', 'accounts']
      const [a, b] = await deploys(name, sub, variants)
      expect(keyOf(a), name).not.toBe(keyOf(b))
    }
  })

  it('keys a static object by what its getters answer: a settings module, a CommonJS barrel as tsc writes it', async () => {
    // r70-a: the class module was the same file in both deploys and only the settings module
    // differed; the getter's text (`return VAT`, `return rates_1.vatRate`) was the same in both,
    // and one deploy was served the other's total. Before: one key.
    const app = (settings: string) => `
import { createRequire } from 'node:module'
${settings}
export function define(cache, backend) {
  class Invoices {
    static settings = settings
    async total(net) { return net * (1 + Invoices.settings.vatRate) }
  }
  Object.defineProperty(Invoices.prototype, 'total',
    cache({ backend, ttl: 60 })(Invoices.prototype, 'total', Object.getOwnPropertyDescriptor(Invoices.prototype, 'total')))
  return Invoices
}
`
    // tsc's CommonJS output of `export { vatRate } from './rates'`, and of `import * as settings`.
    const barrel = `"use strict";
var rates_1 = require("./rates.cjs");
Object.defineProperty(exports, "vatRate", { enumerable: true, get: function () { return rates_1.vatRate; } });
`
    for (const [name, files] of [
      [
        'plain-getter',
        (rate: string) => ({
          'app.mjs': app("import { settings } from './settings.mjs'"),
          'settings.mjs': `const VAT = ${rate}\nexport const settings = { currency: 'EUR', get vatRate() { return VAT } }\n`,
        }),
      ],
      [
        'created-getter',
        (rate: string) => ({
          'app.mjs': app("import { settings } from './settings.mjs'"),
          'settings.mjs': `const VAT = ${rate}\nexport const settings = Object.create({ get vatRate() { return VAT } })\n`,
        }),
      ],
      [
        'function-getter',
        (rate: string) => ({
          'app.mjs': app("import { settings } from './settings.mjs'"),
          'settings.mjs': `const VAT = ${rate}\nexport const settings = Object.defineProperty(function settings() {}, 'vatRate', { get() { return VAT } })\n`,
        }),
      ],
      [
        // r71-a: a getter put on a Map (or an array, a date, bytes) held by a static.
        'map-getter',
        (rate: string) => ({
          'app.mjs': app("import { settings } from './settings.mjs'"),
          'settings.mjs': `const VAT = ${rate}\nexport const settings = Object.defineProperty(new Map([['currency', 'EUR']]), 'vatRate', { get() { return VAT } })\n`,
        }),
      ],
      [
        'cjs-barrel',
        (rate: string) => ({
          'app.mjs': app("const settings = createRequire(import.meta.url)('./config.cjs')"),
          'config.cjs': barrel,
          'rates.cjs': `"use strict";\nObject.defineProperty(exports, "__esModule", { value: true });\nexports.vatRate = ${rate};\n`,
        }),
      ],
    ] as const) {
      const a = write(
        Object.fromEntries(Object.entries(files('0.2')).map(([file, text]) => [`${name}-a/${file}`, text])),
      )
      const b = write(
        Object.fromEntries(Object.entries(files('0.25')).map(([file, text]) => [`${name}-b/${file}`, text])),
      )
      const backend = memoryBackend()
      const v1 = (await import(a[`${name}-a/app.mjs`]!)).define(cache, backend)
      const v2 = (await import(b[`${name}-b/app.mjs`]!)).define(cache, backend)
      expect(await new v1().total(100), name).toBe(120)
      expect(await new v2().total(100), name).toBe(125)
      const key = (cls: any) => new cls().total.keyFor.call(new cls(), 100)
      expect(key(v1), name).not.toBe(key(v2))
    }
  })

  it('refuses a static whose getter answers what cannot be read, and reads getters that build what they answer so far only', async () => {
    // r71-a: a bound function or a Proxy answered by a plain object's getter was read leniently
    // (accepted, one key for two deploys), where the same value held as a data property is refused.
    for (const [name, settings] of [
      [
        'bound',
        {
          get format() {
            return ((n: number) => n).bind(null)
          },
        },
      ],
      [
        'proxy',
        {
          get table() {
            return new Proxy({}, {})
          },
        },
      ],
    ] as const) {
      class Refused {
        static settings = settings
        async find(n: number) {
          return n
        }
      }
      memoizeByHand(Refused, 'find')
      await expect(new Refused().find(1), name).rejects.toThrow(/its static `settings`/)
    }
    // r71-a: a chainable builder (each getter answers a new function) overflowed the stack on
    // every call; a lazy tree (each getter builds three nodes) blocked the process for seconds.
    const builder = (): Function =>
      Object.defineProperty(function step() {}, 'next', { get: builder, enumerable: true })
    const node = (): object => ({
      get a() {
        return node()
      },
      get b() {
        return node()
      },
      get c() {
        return node()
      },
    })
    class Built {
      static chain = builder()
      static tree = node()
      async find(n: number) {
        return n + 1
      }
    }
    memoizeByHand(Built, 'find')
    expect(await new Built().find(41)).toBe(42)
  })

  it('runs a memoized call made while its class key is read (a lazy singleton getter) uncached, once', async () => {
    // r70-a: reading the key ran `static get instance()`, whose constructor called the memoized
    // method, which read the key again: the constructor ran 669 times, and the call then failed
    // with "Two different memoized methods named Rates.rate" for one class.
    let constructed = 0
    let runs = 0
    class Rates {
      static _i: Rates | undefined
      static get instance(): Rates {
        Rates._i ??= new Rates()
        return Rates._i
      }
      constructor() {
        constructed++
        void this.rate('EUR')
      }
      async rate(currency: string) {
        runs++
        return `${currency}:1.1`
      }
    }
    memoizeByHand(Rates, 'rate')
    const rates = new Rates()
    expect(await rates.rate('EUR')).toBe('EUR:1.1')
    expect(await rates.rate('EUR')).toBe('EUR:1.1')
    // The getter's instance's call ran uncached (the key was being read); the constructor's call
    // of the test's instance ran once, the test's calls shared it and then hit.
    expect(constructed).toBe(2)
    expect(runs).toBe(2)
  })

  it("takes Node's own modules imported as namespaces by their names, and a class extending a typed array", async () => {
    // r70-a: `import * as util from 'node:util'` held as a static was refused as "a function whose
    // text cannot be read"; a class extending Uint8Array was refused for its base TypedArray.
    // In a process of its own: under the test runner, a module's namespace is its Proxy.
    for (const id of ['node:util', 'node:path', 'node:os', 'node:crypto']) {
      const script = `
        import * as namespace from '${id}'
        const { cache } = await import('@cache/core')
        const store = new Map()
        const backend = { get: async (k) => store.get(k), set: async (k, v) => void store.set(k, v), delete: async (k) => store.delete(k), clear: async () => store.clear() }
        class Uses {
          static module = namespace
          async find(n) { return '${id}#' + n }
        }
        Object.defineProperty(Uses.prototype, 'find',
          cache({ backend, ttl: 60 })(Uses.prototype, 'find', Object.getOwnPropertyDescriptor(Uses.prototype, 'find')))
        console.log(await new Uses().find(1))`
      const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], {
        cwd: join(dirname(fileURLToPath(import.meta.url)), '..'),
        timeout: 10_000,
      })
      expect(stdout.trim(), id).toBe(`${id}#1`)
    }
    class Bytes extends Uint8Array {
      async sum(n: number) {
        return n + this.length
      }
    }
    memoizeByHand(Bytes, 'sum')
    expect(await new Bytes(3).sum(1)).toBe(4)
  })
})
