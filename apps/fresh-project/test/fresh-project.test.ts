/**
 * From a user's seat: fresh projects outside the workspace installed the packed packages (pnpm and
 * npm, see support/global-setup.ts). In each, ESM, CommonJS and NestJS apps written as a user writes
 * them are compiled by the project's own TypeScript (strict, skipLibCheck false), run with node,
 * driven over HTTP and left to exit on their own. In the pnpm project (strict node_modules), every
 * README example is compiled the same way and run to its end against real servers.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, inject, it } from 'vitest'
import {
  addFixture,
  APP_DIR,
  installEnv,
  limiter,
  type Outcome,
  type PackageManager,
  request,
  runToEnd,
  startApp,
  tsc,
} from './support/project.js'
import { type CodeBlock, readReadmes } from './support/readmes.js'

const projects = inject('projects')
// Disk caches of the apps and examples, one directory each.
const scratch = mkdtempSync(join(tmpdir(), 'cache-fresh-disk-'))
afterAll(() => rmSync(scratch, { recursive: true, force: true }))
const diskPath = () => mkdtempSync(join(scratch, 'cache-'))
const env = {
  ...process.env,
  REDIS_URL: inject('redisUrl'),
  MEMCACHED_SERVERS: inject('memcachedServers'),
  // README examples that listen read PORT (default 3000).
  PORT: '0',
}
// Two cores: at most two compilers or examples at once.
const cpu = limiter(2)

/** An app's process must end by itself this soon after its HTTP server closed. */
const EXIT_WITHIN_MS = 5_000
/** A README example must run to its end, and exit, within this. */
const EXAMPLE_WITHIN_MS = 20_000

const readmes = readReadmes()
const programs = readmes.flatMap((readme) => readme.blocks.filter((block) => !block.fragment))
/** Examples written for NestJS use its legacy decorators: they compile in the CommonJS project. */
const kind = (block: CodeBlock) =>
  [...block.imports].some((name) => name.startsWith('@nestjs/')) ? 'cjs' : 'esm'
const fileOf = (block: CodeBlock) => `readme/${block.readme}-L${block.line}.${block.language}`
const outputOf = (block: CodeBlock) => fileOf(block).replace(/\.ts$/, '.js')

// The fixtures, and in the pnpm project the README examples, written before anything compiles.
const dirs = { pnpm: {}, npm: {} } as Record<PackageManager, Record<'esm' | 'cjs', string>>
for (const pm of ['pnpm', 'npm'] as const)
  for (const fixture of ['esm', 'cjs'] as const) dirs[pm][fixture] = addFixture(projects[pm], fixture)
for (const block of programs) {
  const file = join(dirs.pnpm[kind(block)], 'src', fileOf(block))
  mkdirSync(join(file, '..'), { recursive: true })
  writeFileSync(file, block.code)
}

/** One `tsc -p` per project and module kind, shared by the tests that need it. */
const compilations = new Map<string, Promise<Outcome>>()
function compiled(pm: PackageManager, fixture: 'esm' | 'cjs'): Promise<Outcome> {
  const id = `${pm}/${fixture}`
  if (!compilations.has(id))
    compilations.set(
      id,
      cpu(() => tsc(projects[pm], dirs[pm][fixture])),
    )
  return compilations.get(id)!
}
/** Diagnostics tsc printed about one source file (`src/<file>(line,col): error …`). */
const diagnosticsOf = (outcome: Outcome, file: string) =>
  outcome.stdout
    .split('\n')
    .filter((line) => line.startsWith(`src/${file}(`))
    .join('\n')

/**
 * What a process wrote to standard error, less a server reported unreachable and then back (on a
 * loaded machine the first connection can take longer than the 300 ms operation timeout): every
 * other line is a failure.
 */
function unexpectedStderr(stderr: string): string {
  const lines = stderr.split('\n').filter(Boolean)
  const back = new Set(
    lines.flatMap(
      (line) => /^\[@cache\] (\w+): (\S+) answers again\.$/.exec(line)?.slice(1, 3).join(' ') ?? [],
    ),
  )
  return lines
    .filter((line) => {
      const down = /^\[@cache\] (\w+): cannot reach (\S+?):/.exec(line)
      const up = /^\[@cache\] (\w+): (\S+) answers again\.$/.exec(line)
      return !(down && back.has(`${down[1]} ${down[2]}`)) && !up
    })
    .join('\n')
}

const cacheStatus = (reply: { headers: Record<string, unknown> }) => String(reply.headers['cache-status'])

describe.concurrent.each(['pnpm', 'npm'] as const)('installed with %s', (pm) => {
  it('every declaration file the apps reach type-checks (skipLibCheck false), in ESM and in CommonJS', async () => {
    for (const fixture of ['esm', 'cjs'] as const) {
      const outcome = await compiled(pm, fixture)
      // Diagnostics start a line with their file (continuation lines are indented).
      const elsewhere = outcome.stdout
        .split('\n')
        .filter((line) => /^\S/.test(line) && !line.startsWith('src/readme/'))
      expect(elsewhere.join('\n'), `tsc -p ${fixture}`).toBe('')
      expect(outcome.stderr).toBe('')
    }
  })

  it('an ESM app (Express, TC39 @cache, memory → Redis) compiles, serves a miss then a hit, and exits by itself', async () => {
    expect(diagnosticsOf(await compiled(pm, 'esm'), 'app.ts')).toBe('')
    const app = await cpu(() =>
      startApp('dist/app.js', { cwd: dirs[pm].esm, env: { ...env, CACHE_DISK_PATH: diskPath() } }),
    )
    const miss = await request(app.ready.port, '/quote/A-1')
    expect(miss.status).toBe(200)
    expect(cacheStatus(miss)).toMatch(/fwd=uri-miss; stored/)
    expect(JSON.parse(miss.body)).toEqual({ sku: 'A-1', price: 9.99, total: 17 })
    const hit = await request(app.ready.port, '/quote/A-1')
    expect(cacheStatus(hit)).toMatch(/; hit/)
    expect(hit.body).toBe(miss.body)
    expect((await request(app.ready.port, '/invalidate', { method: 'POST' })).status).toBe(204)
    expect(cacheStatus(await request(app.ready.port, '/quote/A-1'))).toMatch(/fwd=uri-miss; stored/)
    await request(app.ready.port, '/done', { method: 'POST' })
    const end = await app.waitForExit(EXIT_WITHIN_MS)
    expect(end.timedOut, 'still running 5 s after its server closed').toBe(false)
    expect(unexpectedStderr(end.stderr)).toBe('')
    expect(end.code).toBe(0)
  })

  it('a CommonJS app (require, Express, cached() on memory → memcached) compiles, serves a miss then a hit, and exits by itself', async () => {
    expect(diagnosticsOf(await compiled(pm, 'cjs'), 'app.ts')).toBe('')
    const app = await cpu(() =>
      startApp('dist/app.js', { cwd: dirs[pm].cjs, env: { ...env, CACHE_DISK_PATH: diskPath() } }),
    )
    expect(app.ready).toMatchObject({ module: 'object', caught: true })
    const miss = await request(app.ready.port, '/report/2024-05')
    expect(cacheStatus(miss)).toMatch(/fwd=uri-miss; stored/)
    expect(JSON.parse(miss.body)).toEqual({ month: '2024-05', total: 42, runs: 1 })
    const hit = await request(app.ready.port, '/report/2024-05')
    expect(cacheStatus(hit)).toMatch(/; hit/)
    expect(hit.body).toBe(miss.body)
    await request(app.ready.port, '/done', { method: 'POST' })
    const end = await app.waitForExit(EXIT_WITHIN_MS)
    expect(end.timedOut, 'still running 5 s after its server closed').toBe(false)
    expect(unexpectedStderr(end.stderr)).toBe('')
    expect(end.code).toBe(0)
  })

  it('a NestJS 11 app (@cacheResponse under a guard, legacy @cache, memory → disk) compiles, serves a miss then a hit, and exits by itself', async () => {
    expect(diagnosticsOf(await compiled(pm, 'cjs'), 'nest.ts')).toBe('')
    const app = await cpu(() =>
      startApp('dist/nest.js', { cwd: dirs[pm].cjs, env: { ...env, CACHE_DISK_PATH: diskPath() } }),
    )
    const key = { 'x-api-key': 'secret' }
    expect((await request(app.ready.port, '/reports/7')).status).toBe(403)
    const miss = await request(app.ready.port, '/reports/7', { headers: key })
    expect(miss.status).toBe(200)
    expect(cacheStatus(miss)).toMatch(/fwd=uri-miss; stored/)
    expect(JSON.parse(miss.body)).toEqual({ id: 7, runs: 1 })
    const hit = await request(app.ready.port, '/reports/7', { headers: key })
    expect(cacheStatus(hit)).toMatch(/; hit/)
    expect(hit.body).toBe(miss.body)
    expect((await request(app.ready.port, '/reports/7')).status).toBe(403)
    expect((await request(app.ready.port, '/reports/x', { headers: key })).status).toBe(400)
    await request(app.ready.port, '/done', { method: 'POST' })
    const end = await app.waitForExit(EXIT_WITHIN_MS)
    expect(end.timedOut, 'still running 5 s after Nest closed').toBe(false)
    expect(unexpectedStderr(end.stderr)).toBe('')
    expect(end.code).toBe(0)
  })
  it('a NestJS 11 app on Fastify (@cache/nestjs: CacheModule from a spec string, @CacheResponse under a guard, @InjectCache) compiles, serves a miss then a hit, invalidates by tag, and exits by itself', async () => {
    expect(diagnosticsOf(await compiled(pm, 'cjs'), 'nest-fastify.ts')).toBe('')
    const app = await cpu(() =>
      startApp('dist/nest-fastify.js', {
        cwd: dirs[pm].cjs,
        env: { ...env, CACHE_DISK_PATH: diskPath() },
      }),
    )
    const key = { 'x-api-key': 'secret' }
    expect((await request(app.ready.port, '/stock/3')).status).toBe(403)
    const miss = await request(app.ready.port, '/stock/3', { headers: key })
    expect(miss.status).toBe(200)
    expect(cacheStatus(miss)).toMatch(/fwd=uri-miss; stored/)
    expect(JSON.parse(miss.body)).toEqual({ id: 3, runs: 1, views: 1 })
    const hit = await request(app.ready.port, '/stock/3', { headers: key })
    expect(cacheStatus(hit)).toMatch(/; hit/)
    expect(hit.body).toBe(miss.body)
    // The guard still runs before a hit.
    expect((await request(app.ready.port, '/stock/3')).status).toBe(403)
    expect((await request(app.ready.port, '/stock/restock', { method: 'POST' })).status).toBe(201)
    const after = await request(app.ready.port, '/stock/3', { headers: key })
    expect(cacheStatus(after)).toMatch(/fwd=uri-miss; stored/)
    // The service's memoized result outlives the response's tag.
    expect(JSON.parse(after.body)).toEqual({ id: 3, runs: 1, views: 1 })
    await request(app.ready.port, '/done', { method: 'POST' })
    const end = await app.waitForExit(EXIT_WITHIN_MS)
    expect(end.timedOut, 'still running 5 s after Nest closed').toBe(false)
    expect(unexpectedStderr(end.stderr)).toBe('')
    expect(end.code).toBe(0)
  })
})

/**
 * Lines of `npm ls --all` that report vitest or an @cache package unmet, invalid or missing (other
 * packages' own optional peers are theirs to declare), and with `name`, every line naming it.
 */
const npmLsProblems = (tree: string, name?: string) =>
  tree
    .split('\n')
    .filter(
      (line) =>
        (/UNMET|invalid|missing/i.test(line) && /(?<![\w/@-])(vitest|@cache\/[\w-]+)@/.test(line)) ||
        (name !== undefined && line.includes(name)),
    )

describe.concurrent('npm ls --all in a fresh npm project', () => {
  it('after npm i @cache/core @cache/memory, names no vitest at all (no UNMET OPTIONAL DEPENDENCY) and no @cache package unmet, invalid or missing', async () => {
    const tarballs = inject('tarballs')
    const dir = mkdtempSync(join(scratch, 'npm-core-memory-'))
    writeFileSync(
      join(dir, 'package.json'),
      '{ "name": "core-and-memory", "version": "1.0.0", "private": true }\n',
    )
    const env = installEnv()
    const install = await cpu(() =>
      runToEnd(
        'npm',
        [
          'install',
          tarballs['@cache/core']!,
          tarballs['@cache/memory']!,
          '--prefer-offline',
          '--no-audit',
          '--no-fund',
        ],
        { cwd: dir, env, timeoutMs: 120_000 },
      ),
    )
    expect(install.code, install.stderr).toBe(0)
    const ls = await runToEnd('npm', ['ls', '--all'], { cwd: dir, env, timeoutMs: 60_000 })
    expect(ls.stdout).toContain('@cache/memory@')
    expect(npmLsProblems(ls.stdout, 'vitest')).toEqual([])
    expect(ls.code, ls.stderr).toBe(0)
  })

  it("with every package (and vitest, @cache/testing's peer) installed, reports neither vitest nor an @cache package unmet, invalid or missing", async () => {
    const ls = await runToEnd('npm', ['ls', '--all'], {
      cwd: projects.npm,
      env: installEnv(),
      timeoutMs: 60_000,
    })
    expect(ls.stdout).toContain('@cache/testing@')
    expect(npmLsProblems(ls.stdout)).toEqual([])
    expect(ls.code, ls.stderr).toBe(0)
  })
})

describe.concurrent.each(readmes.map((readme) => [readme.id, readme] as const))(
  '%s README',
  (_id, readme) => {
    it('lists on its install lines every package its examples import', () => {
      const imported = new Set(readme.blocks.flatMap((block) => [...block.imports]))
      const missing = [...imported].filter((name) => !readme.installs.has(name))
      expect(missing, `imported by ${readme.path} but on none of its npm i / pnpm add lines`).toEqual([])
    })

    const runnable = readme.blocks.filter((block) => !block.fragment)
    it.runIf(runnable.length > 0).each(runnable.map((block) => [block.line, block] as const))(
      'the example at line %i compiles (strict, skipLibCheck false), runs and exits',
      async (_line, block) => {
        const fixture = kind(block)
        expect(diagnosticsOf(await compiled('pnpm', fixture), fileOf(block))).toBe('')
        const run = await cpu(() =>
          runToEnd(
            process.execPath,
            [
              '--import',
              join(APP_DIR, 'test', 'support', 'assert-throws.mjs'),
              join('dist', outputOf(block)),
            ],
            {
              cwd: dirs.pnpm[fixture],
              env: { ...env, CACHE_DISK_PATH: diskPath() },
              timeoutMs: EXAMPLE_WITHIN_MS,
            },
          ),
        )
        expect(run.timedOut, `still running after ${EXAMPLE_WITHIN_MS} ms`).toBe(false)
        expect(unexpectedStderr(run.stderr)).toBe('')
        expect(run.code).toBe(0)
      },
    )
  },
)

it('counts the examples of every README (run / fragment)', () => {
  const rows = readmes.map((readme) => {
    const fragments = readme.blocks.filter((block) => block.fragment).length
    return `${readme.id}: ${readme.blocks.length - fragments} run, ${fragments} fragment`
  })
  console.log(`README examples\n${rows.join('\n')}`)
  expect(programs.length).toBeGreaterThan(0)
})
