import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runConformance } from '@cache/testing'
import { afterAll } from 'vitest'
import { diskBackend } from '../src/index.js'

const dirs: string[] = []
const tmp = () => {
  const dir = mkdtempSync(join(tmpdir(), 'cache-disk-conf-'))
  dirs.push(dir)
  return dir
}
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})

// Backends of one suite share a directory, as several namespaces of one app would.
const shared = tmp()
runConformance('disk', {
  create: ({ namespace }) => diskBackend({ path: shared, namespace }),
})

// A tiny inline threshold sends almost every value to its own file.
const files = tmp()
runConformance('disk (values in files)', {
  create: ({ namespace }) => diskBackend({ path: files, namespace, inlineThreshold: 8 }),
})

const v8 = tmp()
runConformance('disk (v8 serializer, compression)', {
  create: ({ namespace }) => diskBackend({ path: v8, namespace, serializer: 'v8', compressThreshold: '1KB' }),
  serializes: false,
})
