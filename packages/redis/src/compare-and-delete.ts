import { LuaScript } from './scripts.js'

/**
 * Deletes KEYS[1] only if it holds exactly ARGV[1] (the encoded value), in one atomic step:
 * how a lock holder releases its own lock and never one another client took after its own
 * expired. Returns 1 if it deleted, else 0.
 */
export const COMPARE_AND_DELETE = new LuaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('UNLINK', KEYS[1]) end
return 0
`)
