import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { forgetMemoizedNames } from '@cache/core/testing'
import { afterAll, expect, it } from 'vitest'

/**
 * A decorator applied through installed code (a framework's `applyDecorators`, tslib's
 * `__decorate`): the key must still fingerprint the module that declares the class, not the
 * helper's file, which is the same for every class.
 */
const dir = mkdtempSync(join(tmpdir(), 'cache-decorator-helpers-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

it('fingerprints the module that declares the class when an installed helper applies @cache', async () => {
  const core = pathToFileURL(require.resolve('@cache/core')).href.replace(/index\.cjs$/, 'index.js')
  const memory = pathToFileURL(join(__dirname, '..', 'dist', 'index.js')).href
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
  writeFileSync(
    backendFile,
    `import { memoryBackend } from '${memory}'\nexport const backend = memoryBackend()\n`,
  )
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
