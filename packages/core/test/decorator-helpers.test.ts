import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { forgetMemoizedNames } from '@cache/core'
import { afterAll, expect, it } from 'vitest'

/**
 * A decorator applied through installed code (a framework's `applyDecorators`, tslib's
 * `__decorate`): the key must still fingerprint the module that declares the class, not the
 * helper's file, which is the same for every class.
 */
const dir = mkdtempSync(join(tmpdir(), 'cache-decorator-helpers-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

/** The built package, as an app imports it (and as this file's `forgetMemoizedNames` is). */
const core = pathToFileURL(join(__dirname, '..', 'dist', 'index.js')).href
/** A module that exports a Map-backed backend built with core's defineBackend. */
const backendModule = `import { defineBackend } from '${core}'
const rows = new Map()
export const backend = defineBackend({
  name: 'map',
  get: async (key) => rows.get(key),
  set: async (key, value) => void rows.set(key, value),
  delete: async (key) => rows.delete(key),
  clear: async () => rows.clear(),
})
`

it('fingerprints the module that declares the class when an installed helper applies @cache', async () => {
  mkdirSync(join(dir, 'node_modules', 'apply-all'), { recursive: true })
  writeFileSync(
    join(dir, 'node_modules', 'apply-all', 'index.mjs'),
    `export function applyAll(decorators, target, key) {
      let descriptor = Object.getOwnPropertyDescriptor(target, key)
      for (const decorate of decorators) descriptor = decorate(target, key, descriptor) ?? descriptor
      Object.defineProperty(target, key, descriptor)
    }`,
  )
  const helper = pathToFileURL(join(dir, 'node_modules', 'apply-all', 'index.mjs')).href
  const backendFile = join(dir, 'backend.mjs')
  writeFileSync(backendFile, backendModule)
  for (const side of ['users', 'orders'])
    writeFileSync(
      join(dir, `${side}.mjs`),
      `import { cache } from '${core}'
      import { applyAll } from '${helper}'
      import { backend } from './backend.mjs'
      const TABLE = '${side}'
      export class Repo {
        async find(id) {
          return TABLE + '#' + id
        }
      }
      applyAll([cache({ backend })], Repo.prototype, 'find')
      `,
    )
  const load = async (side: string) => {
    forgetMemoizedNames()
    return (await import(pathToFileURL(join(dir, `${side}.mjs`)).href)) as {
      Repo: new () => { find(id: number): Promise<string> }
    }
  }
  const users = await load('users')
  expect(await new users.Repo().find(1)).toBe('users#1')
  const orders = await load('orders')
  expect(await new orders.Repo().find(1)).toBe('orders#1')
})

it("fingerprints the class module, not a project helper that wraps cache(), found through the compiler's __decorate (also in a path with parentheses, and under a prepareStackTrace that returns call sites)", async () => {
  const root = join(dir, 'app (blue)')
  mkdirSync(join(root, 'shared'), { recursive: true })
  // A project's own decorator helper, in a module every class shares.
  writeFileSync(
    join(root, 'shared', 'cached.mjs'),
    `import { cache } from '${core}'
    export const Cached = (options) => (...args) => cache(options)(...args)`,
  )
  writeFileSync(join(root, 'backend.mjs'), backendModule)
  for (const side of ['users', 'orders'])
    writeFileSync(
      join(root, `${side}.mjs`),
      // What tsc emits for experimentalDecorators: its __decorate helper in the class's module.
      `import { Cached } from './shared/cached.mjs'
      import { backend } from './backend.mjs'
      var __decorate = function (decorators, target, key, desc) {
        let d = desc ?? Object.getOwnPropertyDescriptor(target, key)
        for (let i = decorators.length - 1; i >= 0; i--) d = decorators[i](target, key, d) || d
        Object.defineProperty(target, key, d)
        return d
      }
      const TABLE = '${side}'
      export class Repo {
        async find(id) {
          return TABLE + '#' + id
        }
      }
      __decorate([Cached({ backend })], Repo.prototype, 'find', null)
      `,
    )
  const original = Error.prepareStackTrace
  Error.prepareStackTrace = (_error, sites) => sites
  try {
    const load = async (side: string) => {
      forgetMemoizedNames()
      return (await import(pathToFileURL(join(root, `${side}.mjs`)).href)) as {
        Repo: new () => { find(id: number): Promise<string> }
      }
    }
    const users = await load('users')
    expect(await new users.Repo().find(1)).toBe('users#1')
    const orders = await load('orders')
    expect(await new orders.Repo().find(1)).toBe('orders#1')
  } finally {
    Error.prepareStackTrace = original
  }
})
