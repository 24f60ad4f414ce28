// A minimal app that configures its cache from the environment, as a user would:
// `node scripts/env-app.mjs configure` calls configureCache(), `... get` calls getBackend().
import { configureCache, getBackend } from '@cache/core'

const backend = process.argv[2] === 'get' ? getBackend() : configureCache()
await backend.set('probe', 'ok')
const value = await backend.get('probe')
await backend.close()
process.stdout.write(`${backend.name}:${value}\n`)
