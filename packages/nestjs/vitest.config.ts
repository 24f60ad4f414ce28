import { resolve } from 'node:path'
import ts from 'typescript'
import { defineConfig, type Plugin } from 'vitest/config'

const TESTS = resolve(import.meta.dirname, 'test')

/**
 * Compiles the tests with TypeScript itself, from tsconfig.json: legacy decorators with
 * `emitDecoratorMetadata`, as Nest apps are compiled (Nest's injection by type needs the
 * metadata, which esbuild does not emit).
 */
function nestTests(): Plugin {
  const { config } = ts.readConfigFile(resolve(import.meta.dirname, 'tsconfig.json'), ts.sys.readFile)
  const { options } = ts.parseJsonConfigFileContent(config, ts.sys, import.meta.dirname)
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
    name: 'nest-tests-tsc',
    enforce: 'pre',
    transform(code, id) {
      if (!id.startsWith(`${TESTS}/`) || !id.endsWith('.ts')) return undefined
      return { code: ts.transpileModule(code, { compilerOptions, fileName: id }).outputText, map: null }
    },
  }
}

export default defineConfig({
  plugins: [nestTests()],
  esbuild: { exclude: [`${TESTS}/**`] },
  test: { include: ['test/**/*.test.ts'], testTimeout: 20_000 },
})
