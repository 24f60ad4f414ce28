import { execFile } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { cached, defineBackend } from '../src/index.js'

function mapBackend() {
  const rows = new Map<string, unknown>()
  return defineBackend({
    get: async <T>(key: string) => rows.get(key) as T | undefined,
    set: async (key: string, value: unknown) => void rows.set(key, value),
    delete: async (key: string) => rows.delete(key),
    clear: async () => rows.clear(),
  })
}

describe('cached(): two different functions never share entries', () => {
  it('keeps two functions of one default name but different code apart (two modules, two builds)', async () => {
    const backend = mapBackend()
    const users = cached(
      async function loadIdentityCase(id: string) {
        return `user ${id}`
      },
      { backend },
    )
    expect(await users('1')).toBe('user 1')
    const invoices = cached(
      async function loadIdentityCase(id: string) {
        return `invoice ${id}`
      },
      { backend },
    )
    expect(invoices.keyFor('1')).not.toBe(users.keyFor('1'))
    expect(await invoices('1')).toBe('invoice 1')
    expect(await users('1')).toBe('user 1')
  })

  it('keeps two builds apart that gave two different functions one (minified) name', async () => {
    // Each build runs in its own process, as two versions of an app do during a rolling deploy.
    const keyIn = async (body: string) => {
      const script = `
        const { cached } = await import('@cache/core')
        const o = cached(async function o(id) { ${body} }, { backend: { get: async () => undefined, set: async () => {}, delete: async () => false, clear: async () => {} } })
        console.log(o.keyFor(1))`
      const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], {
        cwd: join(dirname(fileURLToPath(import.meta.url)), '..'),
        timeout: 10_000,
      })
      return stdout.trim()
    }
    const [user, order, userAgain] = await Promise.all([
      keyIn("return 'user ' + id"),
      keyIn("return 'order ' + id"),
      keyIn("return 'user ' + id"),
    ])
    expect(user).not.toBe(order)
    expect(userAgain).toBe(user)
  })

  it('asks for `name` for a bound function, whose source says nothing', () => {
    const backend = mapBackend()
    const service = {
      load(id: string) {
        return id
      },
    }
    expect(() => cached(service.load.bind(service), { backend })).toThrow(/`name`/)
    expect(() => cached(service.load.bind(service), { backend, name: 'service.load' })).not.toThrow()
  })
})
