// `require('@cache/testing')`: the conformance suite runs on vitest, which is an ES module
// only and cannot be required. Say so, instead of Node's ERR_PACKAGE_PATH_NOT_EXPORTED.
const error = new Error(
  '@cache/testing is an ES module only (it runs on vitest, which cannot be required): ' +
    "import it from a test file — `import { runConformance } from '@cache/testing'`. " +
    'vitest runs .ts and .js test files as ES modules, also in a CommonJS project.',
)
error.code = 'ERR_REQUIRE_ESM'
throw error
