#!/usr/bin/env node
// Post-build check run by every package's `build`: each subpath of the exports map must load as
// ESM and as CJS with the same export names, and the package must pass publint and
// @arethetypeswrong/cli (types resolve for import and require under node16 resolution).
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'

const dir = resolve(process.cwd())
const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'))
const require = createRequire(join(dir, 'package.json'))
const failures = []
const esmOnly = []

for (const [subpath, target] of Object.entries(pkg.exports)) {
  if (typeof target === 'string') continue
  const esmFile = typeof target.import === 'string' ? target.import : target.import.default
  const esm = await import(pathToFileURL(join(dir, esmFile)).href)
  if (!target.require) {
    esmOnly.push(subpath)
    continue
  }
  // An ES-module-only entry may give `require` a file that throws, to say so clearly (with the
  // entry's types, for test files of CommonJS projects that vitest runs as ES modules).
  const requireFile = typeof target.require === 'string' ? target.require : target.require.default
  if (requireFile.endsWith('esm-only.cjs')) {
    esmOnly.push(subpath)
    try {
      require(join(dir, requireFile))
      failures.push(`${pkg.name}${subpath.slice(1)}: ${requireFile} loaded instead of throwing`)
    } catch (error) {
      if (!/ES module only/.test(String(error?.message)))
        failures.push(`${pkg.name}${subpath.slice(1)}: require threw something else: ${error?.message}`)
    }
    continue
  }
  const cjs = require(join(dir, target.require.default))
  const esmNames = Object.keys(esm)
    .filter((n) => n !== 'default' && n !== 'module.exports')
    .sort()
  const cjsNames = Object.keys(cjs)
    .filter((n) => n !== 'default' && n !== '__esModule')
    .sort()
  if (esmNames.join() !== cjsNames.join()) {
    failures.push(
      `${pkg.name}${subpath.slice(1)}: ESM exports [${esmNames}] differ from CJS exports [${cjsNames}]`,
    )
  }
  if (esmNames.length === 0) failures.push(`${pkg.name}${subpath.slice(1)}: no exports`)
  // A class or function keeps its own name at run time (error names in logs and stack traces),
  // unless it is an alias of another export.
  for (const [name, value] of Object.entries(esm)) {
    if (typeof value !== 'function' || value.name === name || esm[value.name] === value) continue
    failures.push(
      `${pkg.name}${subpath.slice(1)}: export ${name} is named "${value.name}" at run time (bundling renamed it: rename the colliding declaration)`,
    )
  }
}

const bin = (name) => join(dir, 'node_modules', '.bin', name)
const root = (name) => join(dir, '..', '..', 'node_modules', '.bin', name)
const tool = (name) => {
  for (const candidate of [bin(name), root(name)]) {
    try {
      readFileSync(candidate)
      return candidate
    } catch {}
  }
  return name
}
try {
  execFileSync(tool('publint'), ['--strict'], { cwd: dir, stdio: 'pipe' })
} catch (error) {
  failures.push(`publint:\n${error.stdout}${error.stderr}`)
}
if (!process.env.SKIP_ATTW) {
  try {
    execFileSync(
      tool('attw'),
      [
        '--pack',
        '.',
        '--profile',
        'node16',
        '--format',
        'ascii',
        ...(esmOnly.length ? ['--exclude-entrypoints', ...esmOnly] : []),
      ],
      { cwd: dir, stdio: 'pipe' },
    )
  } catch (error) {
    failures.push(`attw:\n${error.stdout}${error.stderr}`)
  }
}

if (failures.length > 0) {
  console.error(failures.join('\n'))
  process.exit(1)
}
console.log(`${pkg.name}: ESM and CJS exports match; publint and attw pass`)
