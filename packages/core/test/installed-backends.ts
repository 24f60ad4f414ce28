import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import type { CacheBackend } from '../src/index.js'
import type { PackageLoader } from '../src/kit.js'

/*
 * The real backend packages, for tests that need them. @cache/core cannot list them as
 * devDependencies (each depends on core: a cycle the build graph refuses), so they are loaded the
 * way `configureCache('memory,disk')` loads them, by name, from a workspace package that has them
 * all (@cache/multi-level): their built CommonJS entries, on core's built CommonJS entry. Run
 * `pnpm build` first. The copies of core meet through their registered globals, as an ESM and a
 * CJS copy in one application do.
 */
const fromMultiLevel = createRequire(
  fileURLToPath(new URL('../../multi-level/package.json', import.meta.url)),
)

/** A {@link PackageLoader} that finds the workspace's built backend packages. */
export const installedPackages: PackageLoader = (name) => fromMultiLevel(name) as Record<string, unknown>

type Factory = (...args: any[]) => CacheBackend

export const memoryBackend = installedPackages('@cache/memory')!.memoryBackend as Factory
export const diskBackend = installedPackages('@cache/disk')!.diskBackend as Factory
