import { mapBackend, type MapRow, runConformance } from '../src/index.js'

// The test backend other packages use passes the suite every backend passes.
const store = new Map<string, MapRow>()

runConformance('mapBackend (lists keys)', {
  create: ({ namespace }) => mapBackend({ store, namespace, listsKeys: true }),
  serializes: false,
  ttlMs: 100,
})

runConformance('mapBackend (cannot list keys)', {
  create: ({ namespace }) => mapBackend({ store, namespace }),
  serializes: false,
  listsKeys: false,
  ttlMs: 100,
})
