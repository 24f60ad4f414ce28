import type { Contestant, Scenario } from '../contestant.js'
import { disk } from './disk.js'
import { http } from './http.js'
import { memcached } from './memcached.js'
import { memoize } from './memoize.js'
import { memory } from './memory.js'
import { multiLevel } from './multi-level.js'
import { nestjs } from './nestjs.js'
import { redis } from './redis.js'

/** Every scenario, in the order the runner runs them. */
export const scenarios: Scenario[] = [memory, memoize, redis, memcached, disk, multiLevel, http, nestjs]

export function findScenario(id: string): Scenario {
  const scenario = scenarios.find((s) => s.id === id)
  if (!scenario)
    throw new Error(
      `unknown scenario ${JSON.stringify(id)}: use one of ${scenarios.map((s) => s.id).join(', ')}`,
    )
  return scenario
}

export function findContestant(scenarioId: string, id: string): Contestant {
  const contestant = findScenario(scenarioId).contestants.find((c) => c.id === id)
  if (!contestant) throw new Error(`scenario ${scenarioId} has no contestant ${JSON.stringify(id)}`)
  return contestant
}
