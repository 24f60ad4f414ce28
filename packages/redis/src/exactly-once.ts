import { randomBytes } from 'node:crypto'
import { CacheError } from '@cache/core'
import { type CacheObserver, waitAtMost } from '@cache/core/backend'
import calculateSlot from 'cluster-key-slot'
import type { Connection } from './connection.js'
import { CacheReplicationError, type Replication } from './replication.js'
import { CAS_STEP, INCR_REPLACE_STEP, INCR_STEP, LuaScript } from './scripts.js'

/**
 * `incr` and `atomicUpdate` applied exactly once, or reported failed and not applied.
 *
 * Each call carries a token. Its script records the outcome under a record key in the same hash
 * slot for `window` ms, and a replay of a recorded token returns the recorded outcome instead of
 * applying again. Nothing resends a command on its own (the clients we build have every ioredis
 * retry turned off); when a reply is lost — the link dropped or the timeout passed with the
 * command sent — the backend *settles* the token: one script that returns the recorded outcome if
 * the command ran (the call then succeeds with it) or records a fence that makes any later arrival
 * of the command a no-op (the call fails, and the command can no longer be applied). If the
 * server cannot be reached to settle within the timeout, the call fails and settling goes on in
 * the background until it lands or the window ends; if it then finds the command was applied,
 * that is reported as an `error` event (the one case where a failed call was applied). `close()`
 * first waits for the calls still settling within their own timeout, then gives each settle still
 * going one last attempt before the client quits (see {@link finish}), and reports the ones whose
 * outcome it leaves unknown. So does a process about to exit with settles still going (its
 * `beforeExit`, listened to only while some are).
 */
export class ExactlyOnce {
  private readonly id = randomBytes(9).toString('base64url')
  private sequence = 0
  /** Calls reported failed whose settling goes on in the background. */
  private readonly unsettled = new Set<Unsettled>()
  /** Calls settling their lost reply within their own timeout (see {@link attempt}), until they end. */
  private readonly settling = new Set<Promise<void>>()
  /** {@link onBeforeExit} is registered on the process (while {@link unsettled} holds a call). */
  private exitWatched = false
  private readonly recordPrefix: string
  /** On a cluster a record must share its key's hash slot; elsewhere any key will do. */
  private readonly cluster: boolean

  constructor(
    private readonly connection: Connection,
    private readonly observer: CacheObserver,
    private readonly windowMs: number,
    private readonly maxRetryDelayMs: number,
    prefix: string,
    /** With `replicas`: a call (and a settle that finds it applied) succeeds only once replicated. */
    private readonly replication?: Replication,
  ) {
    // Records sit beside the namespace, not in it: `<namespace>~op~…` (no colon), which clear()'s
    // `<namespace>:*` never matches, so a fence outlives any clear(). Without the namespace when
    // its text would decide the hash slot.
    const namespace = prefix.endsWith(':') ? prefix.slice(0, -1) : prefix
    this.recordPrefix = namespace.includes('{') ? '' : namespace
    this.cluster = connection.client.isCluster
    if (this.cluster) fillSlotTags()
  }

  /**
   * Runs `script` on `[key, record]` with `args` and the window. On a lost reply, settles as
   * described above; a recorded outcome becomes the reply through `fromRecord`.
   */
  async run<R>(
    operation: string,
    userKey: string,
    key: string,
    script: LuaScript,
    args: (string | Buffer | number)[],
    fromRecord: (recorded: string) => R,
  ): Promise<R> {
    // Under way until settled: close() waits for it, then for its settling (see finish()).
    return this.connection.track(this.attempt(operation, userKey, key, script, args, fromRecord))
  }

  private async attempt<R>(
    operation: string,
    userKey: string,
    key: string,
    script: LuaScript,
    args: (string | Buffer | number)[],
    fromRecord: (recorded: string) => R,
  ): Promise<R> {
    const record = this.recordKey(key)
    // Sent before this returns when the connection is up, so commands go out in call order.
    if (this.connection.blocked) await this.connection.reachable(operation, userKey, key)
    const start = performance.now()
    try {
      const reply = (await this.connection.timed(
        script.runKeys(
          this.connection.client,
          [key, record],
          [...args, this.windowMs],
          this.replication,
          operation,
        ),
        operation,
      )) as R
      this.observer.latency(performance.now() - start)
      return reply
    } catch (error) {
      if (!mayHaveRun(error)) throw this.connection.failed(operation, error, userKey)
      // close() waits for this to end (and so to succeed, or to hand its settle to the background).
      let ended = (): void => {}
      const settling = new Promise<void>((resolve) => (ended = resolve))
      this.settling.add(settling)
      try {
        return await this.settleLost(operation, userKey, key, record, error, start, fromRecord)
      } finally {
        this.settling.delete(settling)
        ended()
      }
    }
  }

  /**
   * The end of an {@link attempt} whose reply was lost (`error`): the recorded outcome, or the
   * failure, with settling going on in the background when it could not tell in time.
   */
  private async settleLost<R>(
    operation: string,
    userKey: string,
    key: string,
    record: string,
    error: unknown,
    start: number,
    fromRecord: (recorded: string) => R,
  ): Promise<R> {
    // Settle within what is left of the timeout (a dropped link fails at once, leaving time to
    // reconnect), but at least one short round trip: after a timeout the reply may have been
    // waiting behind a busy event loop. A frozen server costs the timeout + SETTLE_GRACE_MS.
    const budget = Math.max(start + this.connection.timeoutMs - performance.now(), SETTLE_GRACE_MS)
    const settling = this.settle(key, record, budget)
    const recorded = await waitAtMost(settling, budget)
    if (recorded === UNREPLICATED)
      throw this.connection.failed(
        operation,
        new CacheReplicationError(operation, this.replication!.replicas, 0, this.replication!.waitMs),
        userKey,
      )
    if (recorded !== undefined && recorded !== FENCE) {
      this.observer.latency(performance.now() - start)
      return fromRecord(recorded)
    }
    const failure = this.connection.failed(operation, error, userKey)
    if (recorded === undefined) this.settleLater(operation, userKey, key, record, settling)
    throw failure
  }

  /**
   * Called by `close()` once the calls under way are done (with the server unreachable, those
   * that settle a lost reply still are: it waits for them, each within its timeout), before the
   * client quits: see {@link lastCheck}.
   */
  async finish(): Promise<void> {
    while (this.settling.size > 0) await Promise.all([...this.settling])
    await this.lastCheck('close() ended the connection')
  }

  /** The process is about to exit (its event loop is empty) with calls unsettled: see {@link lastCheck}. */
  private readonly onBeforeExit = (): void => {
    this.exitWatched = false
    void this.lastCheck('the process exited')
  }

  /** Listens for the process's `beforeExit` exactly while some call is unsettled. */
  private watchExit(): void {
    const needed = this.unsettled.size > 0
    if (needed === this.exitWatched) return
    this.exitWatched = needed
    if (needed) process.once('beforeExit', this.onBeforeExit)
    else process.off('beforeExit', this.onBeforeExit)
  }

  /**
   * Each settle still going gets one last check of at most the timeout: the attempt under way,
   * then a new one in what is left if that one could not tell. What it finds is reported as the
   * background would; a call whose outcome it leaves unknown (the server still frozen, the link
   * down) is reported now, as one that may have been applied, saying `why`: nothing will check
   * it again.
   */
  private async lastCheck(why: string): Promise<void> {
    const left = [...this.unsettled]
    this.unsettled.clear()
    this.watchExit()
    const timeoutMs = this.connection.timeoutMs
    await Promise.all(
      left.map(async (call) => {
        clearTimeout(call.timer)
        const deadline = performance.now() + timeoutMs
        let recorded = call.attempt === undefined ? undefined : await waitAtMost(call.attempt, timeoutMs)
        // The attempt under way may have been about to give up (its own time was running out):
        // a fresh one gets what is left.
        const rest = deadline - performance.now()
        if (recorded === undefined && rest > 0)
          recorded = await waitAtMost(this.settle(call.key, call.record, rest), rest)
        if (notApplied(recorded)) return
        this.observer.error(
          call.operation,
          new CacheError(
            recorded === undefined
              ? `redis: ${call.operation} of "${call.userKey}" may have been applied although it was reported failed: its reply was lost, and ${why} before the server could tell whether it ran`
              : appliedMessage(call.operation, call.userKey),
          ),
          call.userKey,
        )
      }),
    )
  }

  /** A key no other call uses, in the hash slot of `key`. */
  private recordKey(key: string): string {
    const token = `${this.id}.${(this.sequence++).toString(36)}`
    if (!this.cluster) return `${this.recordPrefix}~op~${token}`
    return `${this.recordPrefix}~op~{${tagForSlot(calculateSlot(key))}}${token}`
  }

  /** The recorded outcome, {@link FENCE} when none was (and none can be now), undefined if unreachable. */
  private async settle(key: string, record: string, ms: number): Promise<string | undefined> {
    if (!(await this.connection.serving(key, ms))) return undefined
    try {
      const client = this.connection.client
      const reply = String(
        await this.connection.timed(SETTLE.runKeys(client, [record], [this.windowMs]), 'settle'),
      )
      // Applied: acknowledged only once replicated (a fence need not be: the command it stops
      // was sent to this master or one it replaced, never to a later one).
      if (reply === FENCE || this.replication === undefined) return reply
      return (await this.connection.timed(this.replication.confirm(client, record), 'settle'))
        ? reply
        : UNREPLICATED
    } catch {
      return undefined
    }
  }

  /** Goes on settling in the background, starting with the attempt under way (`first`). */
  private settleLater(
    operation: string,
    userKey: string,
    key: string,
    record: string,
    first: Promise<string | undefined>,
  ): void {
    const deadline = Date.now() + this.windowMs - this.connection.timeoutMs
    const call: Unsettled = { operation, userKey, key, record, attempt: first, timer: undefined }
    this.unsettled.add(call)
    this.watchExit()
    const attempt = (pause: number) => {
      call.timer = setTimeout(async () => {
        call.timer = undefined
        call.attempt ??= this.settle(key, record, this.connection.timeoutMs)
        const recorded = await call.attempt
        call.attempt = undefined
        // close() took it over (see finish()).
        if (!this.unsettled.has(call)) return
        if (notApplied(recorded)) return this.forget(call)
        if (recorded !== undefined) {
          this.forget(call)
          this.observer.error(operation, new CacheError(appliedMessage(operation, userKey)), userKey)
          return
        }
        if (Date.now() < deadline) return attempt(Math.min(Math.max(100, pause * 2), this.maxRetryDelayMs))
        this.forget(call)
        this.observer.error(
          operation,
          new CacheError(
            `redis: ${operation} of "${userKey}" failed with its reply lost, and whether it was applied could not be checked within ${this.windowMs} ms`,
          ),
          userKey,
        )
      }, pause)
      call.timer.unref()
    }
    // The attempt under way first; retries after 100 ms, doubling up to maxReconnectDelay.
    attempt(0)
  }

  /** A call settled in the background: nothing left to check. */
  private forget(call: Unsettled): void {
    this.unsettled.delete(call)
    this.watchExit()
  }
}

/**
 * Whether a settle found the call not applied: fenced before it ran, or an `incr` that ran and
 * refused (its result past the safe integers), writing nothing. Either way the failure the caller
 * was given is the whole truth, and nothing is left to report.
 */
function notApplied(recorded: string | undefined): boolean {
  return recorded === FENCE || recorded === REFUSED
}

/** What the `error` event of a call reported failed and found applied says. */
function appliedMessage(operation: string, userKey: string): string {
  return `redis: ${operation} of "${userKey}" was applied although it was reported failed: its reply was lost and the server could not be reached in time`
}

/** A call reported failed whose outcome is still being settled (see {@link ExactlyOnce.settleLater}). */
interface Unsettled {
  operation: string
  userKey: string
  key: string
  record: string
  /** The settle attempt under way, if one is. */
  attempt: Promise<string | undefined> | undefined
  /** The next attempt, if one is waiting for its turn. */
  timer: NodeJS.Timeout | undefined
}

/** What a settled token holds when its command did not run (and now never will). */
const FENCE = 'x'
/** A settle found the command applied, but fewer replicas than `replicas` acknowledged it. */
const UNREPLICATED = '\u0000unreplicated'

/**
 * False when the command certainly did not run: the server answered with an error (scripts
 * here fail before writing anything), or the client refused to send it.
 */
function mayHaveRun(error: unknown): boolean {
  const e = error as { name?: string; message?: string; code?: string } | undefined
  if (e?.name === 'ReplyError') return false
  if (typeof e?.code === 'string' && e.code.startsWith('CACHE_') && e.code !== 'CACHE_TIMEOUT') return false
  const message = String(e?.message ?? '')
  return !/^(Stream isn't writeable|Cluster isn't ready|Too many Cluster redirections)/.test(message)
}

/** After a timeout, the longest wait for the one round trip that tells whether the reply was just late. */
const SETTLE_GRACE_MS = 50

/**
 * Short strings whose hash slot is their index (about 90 000 candidates, ~30 ms of CPU for all):
 * found in small slices in the background once a cluster backend exists, and on demand by a
 * call that needs a slot not found yet.
 */
const slotTags: string[] = []
let nextCandidate = 0
let found = 0
let filling = false

function tagForSlot(slot: number): string {
  while (slotTags[slot] === undefined) tryCandidate()
  return slotTags[slot]!
}

function tryCandidate(): void {
  const candidate = (nextCandidate++).toString(36)
  const slot = calculateSlot(candidate)
  if (slotTags[slot] !== undefined) return
  slotTags[slot] = candidate
  found++
}

function fillSlotTags(): void {
  if (filling || found === 16384) return
  filling = true
  const slice = () => {
    for (let i = 0; i < 2000 && found < 16384; i++) tryCandidate()
    if (found < 16384) setImmediate(slice).unref()
  }
  setImmediate(slice).unref()
}

const FENCED = "redis.error_reply('FENCED this call was settled as not applied')"

/** What an `incr` refused without writing (its result past the safe integers) records. */
export const REFUSED = 'r'

/**
 * An incr script (a step that leaves `value`, see {@link INCR_STEP}) whose outcome — the new
 * value, or {@link REFUSED} — is recorded in KEYS[2] for ARGV[window] ms; a replay returns it (nil
 * for a refusal, as the first time). A reply of `{current}` wrote nothing and records nothing (the
 * call fails if that reply is lost).
 */
function incrOnce(step: string, window: number): LuaScript {
  return new LuaScript(`
local done = redis.call('GET', KEYS[2])
if done == '${FENCE}' then return ${FENCED} end
if done == '${REFUSED}' then return false end
if done then return tonumber(done) end
local value
${step}
if type(value) == 'table' then return value end
if value then
  redis.call('SET', KEYS[2], value, 'PX', ARGV[${window}])
else
  redis.call('SET', KEYS[2], '${REFUSED}', 'PX', ARGV[${window}])
end
return value
`)
}

/** Adds ARGV[1] to KEYS[1] (see {@link INCR_STEP}), exactly once; the window is ARGV[3]. */
export const INCR_ONCE = incrOnce(INCR_STEP, 3)

/** The second step of an incr (see {@link INCR_REPLACE_STEP}), exactly once; the window is ARGV[5]. */
export const INCR_REPLACE_ONCE = incrOnce(INCR_REPLACE_STEP, 5)

/**
 * Compare-and-set: writes ARGV[2] (TTL ARGV[3] ms, '' for none) to KEYS[1] only if it still
 * holds the value whose SHA-1 is ARGV[1] ('' = only if absent). Returns {1} when written (and
 * records it in KEYS[2] for ARGV[4] ms; a replay returns {1} again), else {0} or {0, current}.
 */
export const COMPARE_AND_SET_ONCE = new LuaScript(`
local done = redis.call('GET', KEYS[2])
if done == '${FENCE}' then return ${FENCED} end
if done then return {1} end
${CAS_STEP}
redis.call('SET', KEYS[2], '1', 'PX', ARGV[4])
return {1}
`)

/** The recorded outcome of a token, or a fence ('${FENCE}') recorded now for ARGV[1] ms. */
const SETTLE = new LuaScript(`
local done = redis.call('GET', KEYS[1])
if done then return done end
redis.call('SET', KEYS[1], '${FENCE}', 'PX', ARGV[1])
return '${FENCE}'
`)
