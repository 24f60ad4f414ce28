/**
 * The fenced code of the READMEs: every ```ts / ```js / ```typescript / ```javascript block is a
 * program a user may paste, unless its info string says `fragment`; ```sh blocks hold the install
 * lines.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { builtinModules } from 'node:module'
import { join } from 'node:path'
import { WORKSPACE } from './project.js'

export interface Readme {
  /** `root` for the repository's README, else the package folder's name. */
  id: string
  path: string
  blocks: CodeBlock[]
  /** Package names listed by `npm i` / `npm install` / `pnpm add` / `yarn add` lines. */
  installs: Set<string>
}

export interface CodeBlock {
  readme: string
  /** Line of the opening fence (1-based). */
  line: number
  language: 'ts' | 'js'
  fragment: boolean
  code: string
  /** Packages the block imports (`@scope/name` or `name`; node built-ins left out). */
  imports: Set<string>
}

const FENCE = /^```(\S*)(.*)$/

export function readReadmes(): Readme[] {
  const paths = [
    ['root', join(WORKSPACE, 'README.md')],
    ...readdirSync(join(WORKSPACE, 'packages')).map((name) => [
      name,
      join(WORKSPACE, 'packages', name, 'README.md'),
    ]),
  ]
  return paths.flatMap(([id, path]) => {
    let text: string
    try {
      text = readFileSync(path!, 'utf8')
    } catch {
      return []
    }
    return [parseReadme(id!, path!, text)]
  })
}

export function parseReadme(id: string, path: string, text: string): Readme {
  const lines = text.split('\n')
  const blocks: CodeBlock[] = []
  const installs = new Set<string>()
  for (let i = 0; i < lines.length; i++) {
    const open = FENCE.exec(lines[i]!)
    if (!open) continue
    const end = lines.findIndex((line, j) => j > i && /^```\s*$/.test(line))
    if (end < 0) throw new Error(`${path}:${i + 1}: a fence that never closes`)
    const body = lines.slice(i + 1, end).join('\n')
    const language = { ts: 'ts', typescript: 'ts', js: 'js', javascript: 'js' }[open[1]!] as
      | 'ts'
      | 'js'
      | undefined
    const words = open[2]!.trim().split(/\s+/).filter(Boolean)
    if (language) {
      if (words.some((word) => word !== 'fragment'))
        throw new Error(
          `${path}:${i + 1}: unknown fence info "${open[2]!.trim()}" (only "fragment" is known)`,
        )
      blocks.push({
        readme: id,
        line: i + 1,
        language,
        fragment: words.includes('fragment'),
        code: `${body}\n`,
        imports: importedPackages(body),
      })
    } else if (['sh', 'bash', 'shell', 'console'].includes(open[1]!)) {
      for (const name of installedPackages(body)) installs.add(name)
    }
    i = end
  }
  return { id, path, blocks, installs }
}

/** Bare package names a module imports or requires (type-only imports included). */
export function importedPackages(code: string): Set<string> {
  const found = new Set<string>()
  const specifiers = [
    ...code.matchAll(/^\s*(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]/gm),
    ...code.matchAll(/^\s*import\s+['"]([^'"]+)['"]/gm),
    ...code.matchAll(/\b(?:require|import)\(\s*['"]([^'"]+)['"]\s*\)/g),
  ].map((m) => m[1]!)
  for (const specifier of specifiers) {
    if (specifier.startsWith('.') || specifier.startsWith('/') || specifier.startsWith('node:')) continue
    const name = specifier.startsWith('@')
      ? specifier.split('/').slice(0, 2).join('/')
      : specifier.split('/')[0]!
    if (!builtinModules.includes(name)) found.add(name)
  }
  return found
}

/** Package names on `npm i|install|add`, `pnpm add|i|install`, `yarn add` command lines (flags and comments left out). */
export function installedPackages(script: string): string[] {
  const names: string[] = []
  for (const raw of script.split('\n')) {
    const line = raw.replace(/#.*$/, '').replace(/^\$\s*/, '')
    for (const command of line.split(/&&|;/)) {
      const words = command.trim().split(/\s+/)
      const install =
        (words[0] === 'npm' && ['i', 'install', 'add'].includes(words[1]!)) ||
        (words[0] === 'pnpm' && ['add', 'i', 'install'].includes(words[1]!)) ||
        (words[0] === 'yarn' && words[1] === 'add')
      if (!install) continue
      for (const word of words.slice(2)) {
        if (word.startsWith('-')) continue
        // `pkg@version` → `pkg`, `@scope/pkg@version` → `@scope/pkg`
        names.push(word.replace(/(.)@.*$/, '$1'))
      }
    }
  }
  return names
}
