import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type MemcachedServer, type RedisServer, startMemcached, startRedis } from '@cache/test-servers'
import type { TestProject } from 'vitest/node'
import { createProject, localPrebuilds, packAll } from './project.js'

declare module 'vitest' {
  export interface ProvidedContext {
    /** The fresh project of each package manager (directories outside the workspace). */
    projects: { pnpm: string; npm: string }
    /** Package name → tarball, every publishable package. */
    tarballs: Record<string, string>
    redisUrl: string
    memcachedServers: string
    /** How long packing and both installs took, ms. */
    setupMs: number
  }
}

const made: string[] = []
let redis: RedisServer | undefined
let memcached: MemcachedServer | undefined

/** Packs the packages once and installs them once per package manager, for every test file. */
export async function setup(project: TestProject): Promise<void> {
  const started = Date.now()
  const packs = mkdtempSync(join(tmpdir(), 'cache-packs-'))
  made.push(packs)
  const servers = Promise.all([startRedis({ spawn: true }), startMemcached({ spawn: true })])
  const [tarballs, prebuilds] = await Promise.all([packAll(packs), localPrebuilds(packs)])
  const [pnpm, npm] = await Promise.all([
    createProject('pnpm', tarballs, prebuilds),
    createProject('npm', tarballs, prebuilds),
  ])
  made.push(pnpm, npm)
  ;[redis, memcached] = await servers
  project.provide('projects', { pnpm, npm })
  project.provide('tarballs', Object.fromEntries(tarballs))
  project.provide('redisUrl', redis.url)
  project.provide('memcachedServers', memcached.server)
  project.provide('setupMs', Date.now() - started)
  process.stdout.write(`fresh projects: packed and installed in ${Date.now() - started} ms\n`)
}

export async function teardown(): Promise<void> {
  await Promise.all([redis?.stop(), memcached?.stop()])
  if (!process.env.CACHE_KEEP_FRESH_PROJECTS)
    for (const dir of made) rmSync(dir, { recursive: true, force: true })
  else process.stdout.write(`fresh projects kept: ${made.join(' ')}\n`)
}
