import { createHash } from 'node:crypto'
import type { RedisClient } from './client.js'
import type { Replication } from './replication.js'

/**
 * A Lua script run with EVALSHA; on NOSCRIPT (a restarted server, a failover, a new cluster
 * node) it is sent once in full with EVAL, which also caches it again. Replies keep bulk
 * strings as Buffers.
 */
export class LuaScript {
  readonly sha: string
  constructor(readonly source: string) {
    this.sha = sha1(source)
  }

  run(
    client: RedisClient,
    key: string,
    args: (string | Buffer | number)[],
    replication?: Replication,
    operation = 'script',
  ): Promise<unknown> {
    return this.runKeys(client, [key], args, replication, operation)
  }

  /**
   * With several keys: on a cluster they must share a hash slot. With `replication`, the script
   * is followed by WAIT (see replication.ts) and resolves once replicated.
   */
  async runKeys(
    client: RedisClient,
    keys: string[],
    args: (string | Buffer | number)[],
    replication?: Replication,
    operation = 'script',
  ): Promise<unknown> {
    const send = (command: string, first: string) =>
      replication === undefined
        ? client.callBuffer(command, first, keys.length, ...keys, ...args)
        : replication.send(client, operation, keys[0]!, command, [first, keys.length, ...keys, ...args], true)
    try {
      return await send('evalsha', this.sha)
    } catch (error) {
      if (!String((error as Error).message).startsWith('NOSCRIPT')) throw error
      return send('eval', this.source)
    }
  }

  /**
   * With several keys and no arguments, replies read as strings when `text` (bulk strings decoded
   * as UTF-8), else as Buffers. A key's own error is an `Error` in its place of the reply.
   */
  async runKeysAs(client: RedisClient, keys: string[], text: boolean): Promise<unknown> {
    const send = (command: string, first: string) =>
      text
        ? client.call(command, first, keys.length, ...keys)
        : client.callBuffer(command, first, keys.length, ...keys)
    try {
      return await send('evalsha', this.sha)
    } catch (error) {
      if (!String((error as Error).message).startsWith('NOSCRIPT')) throw error
      return send('eval', this.source)
    }
  }
}

export function sha1(data: string | Buffer): string {
  return createHash('sha1').update(data).digest('hex')
}

/** The value and its remaining TTL in ms (-1: none) in one atomic step; nil on a miss. */
export const GET_ENTRY = new LuaScript(`
local value = redis.call('GET', KEYS[1])
if not value then return false end
return {value, redis.call('PTTL', KEYS[1])}
`)

/**
 * Adds ARGV[1] to a counter; only the call that creates it sets the TTL (ARGV[2] ms, '' for
 * none). Creation is SET NX, so a counter that exists keeps its expiry.
 */
export const INCR = new LuaScript(`
local created
if ARGV[2] == '' then
  created = redis.call('SET', KEYS[1], ARGV[1], 'NX')
else
  created = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
end
if created then return tonumber(ARGV[1]) end
return redis.call('INCRBY', KEYS[1], ARGV[1])
`)

/**
 * Compare-and-set: writes ARGV[2] (TTL ARGV[3] ms, '' for none) only if the key still holds
 * the value whose SHA-1 is ARGV[1] ('' = only if absent). Returns {1} when written, else {0}
 * or {0, current value}, so the caller can retry without reading again.
 */
export const COMPARE_AND_SET = new LuaScript(`
local current = redis.call('GET', KEYS[1])
local same
if current then same = redis.sha1hex(current) == ARGV[1] else same = ARGV[1] == '' end
if not same then
  if current then return {0, current} end
  return {0}
end
if ARGV[3] == '' then
  redis.call('SET', KEYS[1], ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return {1}
`)
