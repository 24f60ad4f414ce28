/**
 * The server of one HTTP row, in its own process so that autocannon (in the runner) does not
 * share its event loop. Reports its port, then answers `routeCalls` questions until told to stop.
 */
import { createServer } from 'node:http'
import { noteArrivals } from '@cache/express'
import { findContestant } from './scenarios/index.js'

const [scenario, id] = process.argv.slice(2) as [string, string]
const contestant = findContestant(scenario, id)
const service = await contestant.serve!()
// Ours note each request's target as it arrives, as their READMEs tell an application to.
const server =
  contestant.role === 'ours' ? noteArrivals(createServer(service.handler)) : createServer(service.handler)
server.keepAliveTimeout = 30_000
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as { port: number }
  process.send!({ type: 'ready', port, cached: service.cached })
})
process.on('message', (message: { type: string }) => {
  if (message.type === 'routeCalls') process.send!({ type: 'routeCalls', calls: service.routeCalls() })
  if (message.type === 'stop') process.exit(0)
})
process.on('disconnect', () => process.exit(0))
