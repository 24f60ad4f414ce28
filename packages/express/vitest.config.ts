import { dirname, resolve } from 'node:path'
import ts from 'typescript'
import { defineConfig, type Plugin } from 'vitest/config'

const NEST_FIXTURES = resolve(import.meta.dirname, 'test/fixtures/nest')

/**
 * Compiles the NestJS fixtures with TypeScript itself, from their tsconfig.json: legacy decorators
 * with `emitDecoratorMetadata`, which Nest's dependency injection needs and esbuild does not emit.
 */
function nestFixtures(): Plugin {
  const { config } = ts.readConfigFile(resolve(NEST_FIXTURES, 'tsconfig.json'), ts.sys.readFile)
  const { options } = ts.parseJsonConfigFileContent(config, ts.sys, NEST_FIXTURES)
  const compilerOptions = {
    ...options,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    noEmit: false,
    sourceMap: false,
    inlineSourceMap: true,
    inlineSources: true,
    declaration: false,
  }
  return {
    name: 'nest-fixtures-tsc',
    enforce: 'pre',
    transform(code, id) {
      if (!id.startsWith(`${NEST_FIXTURES}/`) || !id.endsWith('.ts')) return undefined
      return { code: ts.transpileModule(code, { compilerOptions, fileName: id }).outputText, map: null }
    },
  }
}

export default defineConfig({
  plugins: [nestFixtures()],
  esbuild: { exclude: [`${dirname(NEST_FIXTURES)}/nest/**`] },
  test: { include: ['test/**/*.test.ts'], testTimeout: 20_000 },
})
