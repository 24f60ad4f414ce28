import { execFileSync, spawnSync } from 'node:child_process'
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect, it } from 'vitest'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')

/**
 * What a pnpm 10 user meets: a fresh project outside the workspace installs the packed @cache/core
 * and @cache/disk. pnpm 10 does not run better-sqlite3's build unless allowed, so its native module
 * is missing; the disk backend must say what to run, not blame the cache path.
 */
it('names `pnpm approve-builds` when pnpm installed better-sqlite3 without building it', () => {
  const project = mkdtempSync(join(tmpdir(), 'cache-disk-pnpm-'))
  try {
    for (const pkg of [join(root, '..', 'core'), root])
      execFileSync('pnpm', ['pack', '--pack-destination', project], { cwd: pkg, stdio: 'pipe' })
    const tarball = (name: string) => `./${readdirSync(project).find((file) => file.startsWith(name))}`
    writeFileSync(
      join(project, 'package.json'),
      JSON.stringify({
        name: 'fresh-app',
        private: true,
        type: 'module',
        // @cache/disk's dependency on @cache/core resolves to the packed one, not the registry.
        pnpm: { overrides: { '@cache/core': `file:${tarball('cache-core-')}` } },
      }),
    )
    execFileSync('pnpm', ['add', tarball('cache-core-'), tarball('cache-disk-'), '--prefer-offline'], {
      cwd: project,
      stdio: 'pipe',
      env: { ...process.env, CI: 'true' },
    })
    const run = spawnSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { diskBackend } from '@cache/disk'
        try {
          diskBackend({ path: './cache' })
          console.log('opened')
        } catch (error) {
          console.log(JSON.stringify({ code: error.code, setting: error.setting, message: error.message }))
        }`,
      ],
      { cwd: project, encoding: 'utf8' },
    )
    const outcome = JSON.parse(run.stdout)
    expect(outcome.code).toBe('CACHE_MISSING_PACKAGE')
    expect(outcome.setting).toBe('better-sqlite3')
    expect(outcome.message).toContain('pnpm approve-builds')
    expect(outcome.message).toContain('pnpm rebuild better-sqlite3')
    expect(outcome.message).not.toContain('cannot open a disk cache in')
  } finally {
    rmSync(project, { recursive: true, force: true })
  }
}, 120_000)
