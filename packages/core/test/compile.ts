import { dirname, join, relative } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import ts from 'typescript'
import { expect } from 'vitest'

export type DecoratorMode = 'standard' | 'legacy'

const fixtures = join(dirname(fileURLToPath(import.meta.url)), 'fixtures')

/** The file URL of a fixture module once compiled (by {@link compileFixture}). */
export function compiledUrl(dir: string, mode: DecoratorMode, file: string): string {
  return pathToFileURL(join(fixtures, dir, '.compiled', mode, file.replace(/\.ts$/, '.js'))).href
}

/**
 * Compiles a fixture directory with a real TypeScript program (TC39 standard decorators, or
 * `experimentalDecorators` + `emitDecoratorMetadata` as NestJS uses), failing on any type error,
 * and returns a function that imports a compiled module fresh (a new module instance per call).
 */
export function compileFixture(dir: string, mode: DecoratorMode): (file: string) => Promise<any> {
  const { diagnostics, outDir } = diagnoseFixture(dir, mode)
  expect(diagnostics.map((d) => d.message)).toEqual([])
  let generation = 0
  const run = `${Date.now()}-${Math.random()}`
  return async (file: string) => {
    const url = pathToFileURL(join(outDir, file.replace(/\.ts$/, '.js'))).href
    return import(`${url}?${run}-${generation++}`)
  }
}

/** A type error, located: the fixture file (relative to its directory), its line (1-based), its code. */
export interface FixtureDiagnostic {
  file: string | undefined
  line: number | undefined
  code: number
  message: string
}

/**
 * Compiles (and emits) a fixture directory as {@link compileFixture} does, and returns its
 * diagnostics instead of failing on them: for fixtures that must not compile. `files` limits the
 * program to those files of the directory (default: all of them).
 */
export function diagnoseFixture(
  dir: string,
  mode: DecoratorMode,
  files?: readonly string[],
): { diagnostics: FixtureDiagnostic[]; outDir: string } {
  const root = join(fixtures, dir)
  const outDir = join(root, '.compiled', mode)
  const legacy = mode === 'legacy'
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    lib: ['lib.es2023.d.ts', 'lib.esnext.decorators.d.ts', 'lib.dom.d.ts'],
    types: ['node'],
    strict: true,
    skipLibCheck: true,
    declaration: false,
    rootDir: root,
    outDir,
    experimentalDecorators: legacy,
    emitDecoratorMetadata: legacy,
  }
  const names =
    files === undefined
      ? ts.sys.readDirectory(root, ['.ts'], ['**/.compiled/**'])
      : files.map((file) => join(root, file))
  const program = ts.createProgram(names, options)
  const result = program.emit()
  const diagnostics = [...ts.getPreEmitDiagnostics(program), ...result.diagnostics].map((d) => {
    const at =
      d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line + 1 : undefined
    return {
      file: d.file ? relative(root, d.file.fileName) : undefined,
      line: at,
      code: d.code,
      message: ts.flattenDiagnosticMessageText(d.messageText, '\n'),
    }
  })
  return { diagnostics, outDir }
}
