import { createRequire } from 'node:module'
import { configureCache, resetCache } from '@cache/core'
import { createApp } from './app.js'
import { noteArrivals } from '@cache/express'

// The backends are composed from one setting: memory in front of disk by default, so the demo
// runs with no server installed; CACHE_BACKEND=memory,redis (with REDIS_URL) switches.
const backendList = process.env.CACHE_BACKEND ?? 'memory,disk'
// Backend packages are resolved from this app (not the working directory), so starting it from
// anywhere finds the @cache packages it depends on.
const require = createRequire(import.meta.url)
configureCache({ backend: backendList, loader: loadFromApp })

function loadFromApp(name: string): Record<string, unknown> | undefined {
  try {
    return require(name)
  } catch (error) {
    // Not installed: core turns `undefined` into "install @cache/x to use x".
    if ((error as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND' && String(error).includes(`'${name}'`))
      return undefined
    throw error
  }
}

const port = Number(process.env.PORT ?? 3000)
const host = process.env.HOST ?? '127.0.0.1'
const app = createApp({
  catalogDelayMs:
    process.env.CATALOG_DELAY_MS === undefined ? undefined : Number(process.env.CATALOG_DELAY_MS),
})
// The server notes each request's target as it arrives: @cache/express stores from the first request.
const server = noteArrivals(
  app.listen(port, host, () => {
    console.log(`@cache demo listening on http://${host}:${port} (backend: ${backendList})`)
  }),
)

async function shutdown() {
  server.close()
  server.closeAllConnections()
  await resetCache()
  process.exit(0)
}
process.once('SIGTERM', shutdown)
process.once('SIGINT', shutdown)
