/**
 * A fresh project outside the workspace, as a user makes one: the publishable packages packed with
 * `pnpm pack`, installed from their tarballs by pnpm or npm, third-party packages from the registry.
 */
import { execFile, spawn } from 'node:child_process'
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createRequire } from 'node:module'
import { promisify } from 'node:util'

const run = promisify(execFile)

export const APP_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
export const WORKSPACE = join(APP_DIR, '..', '..')
export const FIXTURES = join(APP_DIR, 'fixtures')

export type PackageManager = 'pnpm' | 'npm'

export interface Publishable {
  name: string
  dir: string
}

/** Every package under packages/ that is published (not `private`). */
export function publishablePackages(): Publishable[] {
  const root = join(WORKSPACE, 'packages')
  return readdirSync(root)
    .map((entry) => join(root, entry))
    .filter((dir) => {
      try {
        return !JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).private
      } catch {
        return false
      }
    })
    .map((dir) => ({ name: JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).name as string, dir }))
}

/**
 * Third-party packages the fresh apps and the README examples import, at the versions the workspace
 * lockfile already resolved (so the pnpm store and the npm cache hold them).
 */
export const THIRD_PARTY = [
  'typescript',
  '@types/node',
  'express',
  '@types/express',
  '@nestjs/common',
  '@nestjs/core',
  '@nestjs/platform-express',
  '@nestjs/platform-fastify',
  'hono',
  '@hono/node-server',
  'fastify',
  'fastify-plugin',
  'reflect-metadata',
  'rxjs',
  'ioredis',
  'memjs',
  'keyv',
  '@keyv/redis',
  'cache-manager',
  // @cache/testing's peer: a project that runs the conformance suite has vitest already.
  'vitest',
] as const

/** The highest version of `name` the workspace lockfile resolved. */
export function lockedVersion(
  name: string,
  lockfile = readFileSync(join(WORKSPACE, 'pnpm-lock.yaml'), 'utf8'),
) {
  const escaped = name.replace(/[/.]/g, (c) => `\\${c}`)
  const versions = [...lockfile.matchAll(new RegExp(`^  '?${escaped}@(\\d+\\.\\d+\\.\\d+)[':(]`, 'gm'))].map(
    (m) => m[1]!,
  )
  const newest = versions
    .map((v) => v.split('.').map(Number))
    .sort((a, b) => b[0]! - a[0]! || b[1]! - a[1]! || b[2]! - a[2]!)[0]
  if (!newest) throw new Error(`${name} is not in the workspace lockfile`)
  return newest.join('.')
}

/** Packs every publishable package into `dest`; returns package name → tarball path. */
export async function packAll(dest: string): Promise<Map<string, string>> {
  const packages = publishablePackages()
  const files = await Promise.all(
    packages.map(async (pkg) => {
      const { stdout } = await run('pnpm', ['pack', '--pack-destination', dest], { cwd: pkg.dir })
      const file = stdout.trim().split('\n').pop()!.trim()
      return [pkg.name, file.startsWith('/') ? file : join(dest, file)] as const
    }),
  )
  return new Map(files)
}

/**
 * better-sqlite3's install script (prebuild-install) downloads a prebuilt binary, or compiles one for
 * minutes when it cannot reach GitHub (as on CI). It also looks in a local directory first: this
 * puts the binary the workspace already built there, named as the download would be, so npm's
 * install runs the same script and finds it. Returns the directory.
 */
export async function localPrebuilds(dest: string): Promise<string> {
  const fromDisk = createRequire(join(WORKSPACE, 'packages', 'disk', 'package.json'))
  const root = dirname(fromDisk.resolve('better-sqlite3/package.json'))
  const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
  const name = `better-sqlite3-v${version}-node-v${process.versions.modules}-${process.platform}-${process.arch}.tar.gz`
  await run('tar', ['-czf', join(dest, name), '-C', root, 'build/Release/better_sqlite3.node'])
  return dest
}

/**
 * Creates a project in the OS temp directory and installs the tarballs and the third-party
 * packages into it, the way a user of `pm` would. Returns the project directory.
 */
export async function createProject(
  pm: PackageManager,
  tarballs: Map<string, string>,
  prebuilds: string,
): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), `cache-fresh-${pm}-`))
  const lockfile = readFileSync(join(WORKSPACE, 'pnpm-lock.yaml'), 'utf8')
  const thirdParty = Object.fromEntries(THIRD_PARTY.map((name) => [name, lockedVersion(name, lockfile)]))
  const own = Object.fromEntries([...tarballs].map(([name, file]) => [name, `file:${file}`]))
  const manifest: Record<string, unknown> = { name: 'fresh-app', version: '1.0.0', private: true }
  const env = installEnv()
  env.npm_config_better_sqlite3_local_prebuilds = prebuilds
  if (pm === 'pnpm') {
    manifest.dependencies = { ...thirdParty, ...own }
    // @cache/* dependencies between the packages resolve to the tarballs, never to the registry;
    // better-sqlite3's build is allowed, as the disk README says to.
    manifest.pnpm = { overrides: own, onlyBuiltDependencies: ['better-sqlite3'] }
    writeFileSync(join(dir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`)
    await run('pnpm', ['install', '--prefer-offline', '--reporter=silent'], { cwd: dir, env })
  } else {
    manifest.dependencies = thirdParty
    writeFileSync(join(dir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`)
    // One command, so the packages' shared @cache/core is one copy.
    await run('npm', ['install', ...tarballs.values(), '--prefer-offline', '--no-audit', '--no-fund'], {
      cwd: dir,
      env,
    })
  }
  return dir
}

/** The environment of an install or of `npm ls` in a fresh project, as a user's shell has it. */
export function installEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, CI: 'true' }
  // Keep the workspace's own settings (its pnpm, its registry scopes) from leaking in.
  for (const key of Object.keys(env)) if (key.startsWith('npm_') || key.startsWith('PNPM_')) delete env[key]
  env.npm_config_update_notifier = 'false'
  return env
}

/** Copies `fixtures/<name>` into `<project>/<name>`. */
export function addFixture(project: string, name: string): string {
  const target = join(project, name)
  mkdirSync(target, { recursive: true })
  cpSync(join(FIXTURES, name), target, { recursive: true })
  return target
}

export interface Outcome {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  /** True when the process had to be killed after `timeoutMs`. */
  timedOut: boolean
  ms: number
}

/** Runs a command to its end, killing it after `timeoutMs` (reported as `timedOut`). */
export function runToEnd(
  command: string,
  args: string[],
  options: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs: number },
): Promise<Outcome> {
  const started = Date.now()
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, env: options.env ?? process.env, stdio: 'pipe' })
    let stdout = ''
    let stderr = ''
    let timedOut = false
    child.stdout.on('data', (chunk) => (stdout += chunk))
    child.stderr.on('data', (chunk) => (stderr += chunk))
    const timer = setTimeout(() => {
      timedOut = true
      child.kill('SIGKILL')
    }, options.timeoutMs)
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr, timedOut, ms: Date.now() - started })
    })
  })
}

/** Compiles a tsconfig project with the fresh project's own `typescript`. */
export function tsc(project: string, tsconfigDir: string, timeoutMs = 90_000): Promise<Outcome> {
  return runToEnd(
    process.execPath,
    [join(project, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', tsconfigDir],
    {
      cwd: tsconfigDir,
      timeoutMs,
    },
  )
}

/** At most `limit` of the given tasks at once (the CI machine has 2 cores). */
export function limiter(limit: number) {
  let active = 0
  const queue: (() => void)[] = []
  return async <T>(task: () => Promise<T>): Promise<T> => {
    if (active >= limit) await new Promise<void>((resolve) => queue.push(resolve))
    active++
    try {
      return await task()
    } finally {
      active--
      queue.shift()?.()
    }
  }
}

export interface RunningApp {
  /** The first line the app printed, parsed (it holds the port it listens on). */
  ready: Record<string, unknown> & { port: number }
  /** Resolves when the process ended, or was killed `exitTimeoutMs` after `waitForExit()` was called. */
  waitForExit(exitTimeoutMs: number): Promise<Outcome>
}

/** Starts `node <script>` and waits for the JSON line it prints once it listens. */
export function startApp(
  script: string,
  options: { cwd: string; env: NodeJS.ProcessEnv },
): Promise<RunningApp> {
  const started = Date.now()
  const child = spawn(process.execPath, [script], { cwd: options.cwd, env: options.env, stdio: 'pipe' })
  let stdout = ''
  let stderr = ''
  let timedOut = false
  const ended = new Promise<Outcome>((resolve) =>
    child.on('close', (code, signal) =>
      resolve({ code, signal, stdout, stderr, timedOut, ms: Date.now() - started }),
    ),
  )
  child.stderr.on('data', (chunk) => (stderr += chunk))
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`${script} did not print its port within 20 s\n${stdout}\n${stderr}`))
    }, 20_000)
    void ended.then((outcome) => {
      clearTimeout(timer)
      reject(new Error(`${script} exited before it listened (${outcome.code})\n${stdout}\n${stderr}`))
    })
    child.stdout.on('data', (chunk) => {
      const before = stdout
      stdout += chunk
      if (before.includes('\n') || !stdout.includes('\n')) return
      clearTimeout(timer)
      resolve({
        ready: JSON.parse(stdout.slice(0, stdout.indexOf('\n'))),
        waitForExit(exitTimeoutMs) {
          const killer = setTimeout(() => {
            timedOut = true
            child.kill('SIGKILL')
          }, exitTimeoutMs)
          return ended.finally(() => clearTimeout(killer))
        },
      })
    })
  })
}

export interface Reply {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

/** One HTTP request on its own connection (closed after the reply), as curl makes it. */
export function request(
  port: number,
  path: string,
  options: { method?: string; headers?: Record<string, string> } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port,
        path,
        method: options.method ?? 'GET',
        headers: options.headers,
        agent: false,
      },
      (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (chunk) => (body += chunk))
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }))
        res.on('error', reject)
      },
    )
    req.on('error', reject)
    req.setTimeout(10_000, () => req.destroy(new Error(`${path}: no reply within 10 s`)))
    req.end()
  })
}
