import { createHash } from 'node:crypto'
import type { RedisClient } from './client.js'
import type { Replication } from './replication.js'

/**
 * A Lua script, always sent in full with EVAL (the server caches it by its text, so it is parsed
 * once). Not EVALSHA: after a NOSCRIPT (a restarted server, a failover, a new cluster node, a
 * `SCRIPT FLUSH`) the script would be sent again behind the commands called after it, and a get
 * called after an incr could read the counter from before it. Replies keep bulk strings as
 * Buffers.
 */
export class LuaScript {
  constructor(readonly source: string) {}

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
   * is followed by WAIT (see replication.ts) and resolves once replicated. Sent before this
   * returns (unless `replication` must first ask the master for its replicas), so commands go
   * out in call order.
   */
  runKeys(
    client: RedisClient,
    keys: string[],
    args: (string | Buffer | number)[],
    replication?: Replication,
    operation = 'script',
  ): Promise<unknown> {
    return replication === undefined
      ? client.callBuffer('eval', this.source, keys.length, ...keys, ...args)
      : replication.send(
          client,
          operation,
          keys[0]!,
          'eval',
          [this.source, keys.length, ...keys, ...args],
          true,
        )
  }
}

export function sha1(data: string | Buffer): string {
  return createHash('sha1').update(data).digest('hex')
}

/**
 * Each key's `GET`, with `pcall`: a key's own error (WRONGTYPE) takes its place in the reply,
 * where `MGET` would answer a key of another type with nil, a miss. The keys are its arguments,
 * not declared (see coalesce.ts: one key an ACL refuses fails only its get); coalescing is off on
 * a cluster, where keys must be declared. Sent as EVAL of this text (see {@link LuaScript}).
 */
export const GET_EACH = `local values = {}
for i, key in ipairs(ARGV) do values[i] = redis.pcall('GET', key) end
return values`

/** The value and its remaining TTL in ms (-1: none) in one atomic step; nil on a miss. */
export const GET_ENTRY = new LuaScript(`
local value = redis.call('GET', KEYS[1])
if not value then return false end
return {value, redis.call('PTTL', KEYS[1])}
`)

/**
 * The part of the `incr` scripts that adds ARGV[1] to the counter KEYS[1]; leaves the reply in
 * `value` (declared by the script): the new value; false (nothing written) when the counter or the
 * result is past ±(2^53 − 1), where a JavaScript number stops being exact; or `{current}` (nothing
 * written) when the key holds something other than a counter in its own form, a plain decimal
 * integer that INCRBY reads: v8 bytes, JSON's `-0` or `1e+21`, text such as " 7". The caller
 * decodes that as `get` would and writes the sum with {@link INCR_REPLACE_STEP}. Only the call
 * that creates the counter sets its TTL (ARGV[2] ms, '' for none), so a counter that exists keeps
 * its expiry. Lua numbers are doubles: exact for the safe integers, and an integer past them
 * (stored, or a sum of two safe ones) rounds to a double past them too, never back inside, so the
 * check needs no big numbers.
 */
export const INCR_STEP = `
local current = redis.call('GET', KEYS[1])
if not current then
  if ARGV[2] == '' then
    redis.call('SET', KEYS[1], ARGV[1])
  else
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  end
  value = tonumber(ARGV[1])
elseif current == '0' or string.match(current, '^%-?[1-9]%d*$') then
  local n = tonumber(current)
  local result = n + tonumber(ARGV[1])
  if math.abs(n) > 9007199254740991 or math.abs(result) > 9007199254740991 then
    value = false
  else
    value = redis.call('INCRBY', KEYS[1], ARGV[1])
  end
else
  value = {current}
end
`

/**
 * The second step of an `incr` on a value not in counter form: writes ARGV[4] (the sum, decoded
 * and added by the caller) to KEYS[1], keeping its expiry, only if it still holds the bytes whose
 * SHA-1 is ARGV[3]; else {@link INCR_STEP} on what it holds now (ARGV[1], ARGV[2] as there).
 */
export const INCR_REPLACE_STEP = `
local held = redis.call('GET', KEYS[1])
if held and redis.sha1hex(held) == ARGV[3] then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl == -1 then
    redis.call('SET', KEYS[1], ARGV[4])
  else
    redis.call('SET', KEYS[1], ARGV[4], 'PX', math.max(ttl, 1))
  end
  value = tonumber(ARGV[4])
else
${INCR_STEP}
end
`

/** Adds ARGV[1] to a counter (see {@link INCR_STEP}): the new value, nil when refused, or `{current}`. */
export const INCR = new LuaScript(`local value
${INCR_STEP}
return value
`)

/** The second step of an incr (see {@link INCR_REPLACE_STEP}): as {@link INCR}. */
export const INCR_REPLACE = new LuaScript(`local value
${INCR_REPLACE_STEP}
return value
`)

/**
 * The compare-and-set step, shared by {@link COMPARE_AND_SET} and its exactly-once form: writes
 * ARGV[2] (TTL ARGV[3] ms, '' for none) to KEYS[1] only if it still holds the value whose SHA-1
 * is ARGV[1] ('' = only if absent); else returns {0} or {0, current value}, so the caller can
 * retry without reading again.
 */
export const CAS_STEP = `
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
`

/** Compare-and-set (see {@link CAS_STEP}): {1} when written. */
export const COMPARE_AND_SET = new LuaScript(`${CAS_STEP}
return {1}
`)
