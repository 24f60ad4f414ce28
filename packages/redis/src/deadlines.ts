// Deadlines are real time: the timers of `node:timers`, bound before an application's fake
// timers may replace the global ones.
import { setImmediate, setTimeout } from 'node:timers'

/** Real time, also under an application's fake timers. */
const clock = performance.now.bind(performance)

/** The commands sent in one tick: they leave together, so they share one deadline. */
export interface Batch {
  /** When they were written (ms, {@link clock}): the end of their tick. */
  start: number
  /** Commands of the batch not settled yet. */
  open: number
  /** Given its whole timeout once more, for reply bytes that were arriving when it was due. */
  extended: boolean
  /** Per command, its rejection while it waits; undefined once it settled. */
  rejects: (((error: Error) => void) | undefined)[]
  /** Per command, the operation it is part of; undefined for an ioredis command (see {@link watchCommand}). */
  operations: (string | undefined)[]
}

const BATCH = Symbol('batch')
const INDEX = Symbol('index')
const WATCH = Symbol('deadlines')
const RESOLVE = Symbol('resolve')

/** What {@link CommandDeadlines.watchCommand} reads and wraps of an ioredis `Command`. */
export interface IoredisCommand {
  promise: Promise<unknown>
  resolve: (value: unknown) => unknown
  reject: (error: Error) => void
  [BATCH]?: Batch
  [INDEX]?: number
  [WATCH]?: CommandDeadlines
  [RESOLVE]?: (value: unknown) => unknown
}

/**
 * A watched command's `resolve`, shared by all of them (ioredis calls it as the command's method,
 * with the reply): no closure per command. Its `reject` is wrapped in one, as ioredis (a cluster's
 * redirection handling, a script's NOSCRIPT check) calls that one detached too.
 */
function resolveWatched(this: IoredisCommand, value: unknown): unknown {
  this[WATCH]!.settled(this[BATCH]!, this[INDEX]!)
  return this[RESOLVE]!(value)
}

/**
 * The deadline of every command one connection sends: `timeoutMs` from when it was written (the
 * end of the tick it was sent in, see {@link Connection.corkTick}), enforced by one timer for the
 * whole connection that watches the oldest batch still waiting. An answered command costs no
 * timer work.
 *
 * A due deadline is judged only after the event loop's next poll for I/O: when this process itself
 * was busy past it (a long synchronous stretch, a GC pause), timers run before the socket is read,
 * and a reply Redis sent in time would otherwise count as none. If reply bytes arrived since the
 * timer was armed, or in that poll, without settling the batch (a large reply still arriving), it
 * gets its timeout once more. A server that does not answer fails each call at `timeoutMs` after
 * its write (plus one poll of the event loop); at most twice that when bytes kept arriving.
 */
export class CommandDeadlines {
  private batches: Batch[] = []
  private head = 0
  /** The batch of the current tick, until its end. */
  private current: Batch | undefined
  private timer: NodeJS.Timeout | undefined
  /** The timer holds the process while commands wait (the client's socket may not). */
  private refed = false
  /** A due batch waits for the next poll for I/O (see {@link check}). */
  private graced = false
  /** Commands waiting, in every batch. */
  private waiting = 0
  /** Bytes read from the server when the timer was armed, and when a batch fell due. */
  private readAtArm = 0
  private readAtDue = 0
  /** When the batch now in its grace fell due: a poll for I/O has run since then. */
  private dueAt = 0

  constructor(
    private readonly timeoutMs: number,
    /** Bytes read so far from the server(s) the commands were sent to. */
    private readonly bytesRead: () => number,
    /** The error of a command that got no answer in time. */
    private readonly timedOut: (operation: string) => Error,
    /**
     * True when the connection will call {@link seal} at the end of the current tick itself (it
     * corks the tick's commands, see {@link Connection.corkTick}): no callback of our own then.
     */
    private readonly sealedByConnection: () => boolean = () => false,
    /**
     * The timer holds the process while commands wait (a caller awaits them). False for commands
     * no caller awaits (a subscriber setting itself up): they never keep the process alive.
     */
    private readonly holdsProcess = true,
  ) {}

  /** `command`'s outcome, or its {@link timedOut} error once its deadline passed without one. */
  watch<T>(command: Promise<T>, operation: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const batch = this.current ?? this.open()
      const index = this.add(batch, reject, operation)
      command.then(
        (value) => {
          if (this.settle(batch, index)) resolve(value)
        },
        (error: unknown) => {
          if (this.settle(batch, index)) reject(error)
        },
      )
    })
  }

  /**
   * Gives an ioredis command a deadline, as ioredis's own `commandTimeout` does (it is rejected
   * with ioredis's `Command timed out`), judged as {@link watch} does. Once per command: a command
   * the client sends again (a cluster's redirection) keeps its first deadline.
   */
  watchCommand(command: IoredisCommand): void {
    if (command[BATCH] !== undefined) return
    const batch = this.current ?? this.open()
    const reject = command.reject
    command[BATCH] = batch
    command[INDEX] = this.add(batch, reject, undefined)
    command[WATCH] = this
    command[RESOLVE] = command.resolve
    // ioredis settles a command through these (a reply, an error, a dropped connection).
    command.resolve = resolveWatched
    command.reject = (error: Error): void => {
      this.settle(batch, command[INDEX]!)
      reject(error)
    }
  }

  /** A watched command settled (see {@link watchCommand}). */
  settled(batch: Batch, index: number): void {
    this.settle(batch, index)
  }

  private add(batch: Batch, reject: (error: Error) => void, operation: string | undefined): number {
    const index = batch.rejects.length
    batch.rejects.push(reject)
    batch.operations.push(operation)
    batch.open++
    if (this.waiting++ === 0 && this.holdsProcess && !this.refed && this.timer !== undefined) {
      this.timer.ref()
      this.refed = true
    }
    return index
  }

  private open(): Batch {
    const batch: Batch = { start: clock(), open: 0, extended: false, rejects: [], operations: [] }
    this.current = batch
    this.batches.push(batch)
    if (!this.sealedByConnection()) process.nextTick(this.seal)
    if (this.timer === undefined && !this.graced) this.arm(this.timeoutMs)
    return batch
  }

  /** The end of the tick: the batch's commands are written now (the socket is uncorked). */
  readonly seal = (): void => {
    const batch = this.current
    this.current = undefined
    if (batch !== undefined) batch.start = clock()
  }

  /** True when the command was still waiting (its deadline had not failed it). */
  private settle(batch: Batch, index: number): boolean {
    if (batch.rejects[index] === undefined) return false
    batch.rejects[index] = undefined
    batch.open--
    if (--this.waiting === 0 && this.refed && this.timer !== undefined) {
      this.timer.unref()
      this.refed = false
    }
    return true
  }

  private arm(ms: number): void {
    this.readAtArm = this.bytesRead()
    this.timer = setTimeout(this.fire, Math.max(1, Math.ceil(ms)))
    this.refed = this.holdsProcess && this.waiting > 0
    if (!this.refed) this.timer.unref()
  }

  private readonly fire = (): void => this.check(false)

  private readonly afterPoll = (): void => {
    this.graced = false
    this.check(true)
  }

  /**
   * Fails the oldest batch if it is due and still waiting (see the class's doc for the grace it
   * gets first); otherwise waits for it.
   */
  private check(read: boolean): void {
    this.timer = undefined
    for (;;) {
      const { batches } = this
      while (this.head < batches.length && batches[this.head]!.open === 0) this.head++
      if (this.head === batches.length) {
        this.batches = []
        this.head = 0
        return
      }
      if (this.head > 1024) {
        this.batches = batches.slice(this.head)
        this.head = 0
      }
      const oldest = this.batches[this.head]!
      const due = oldest.start + this.timeoutMs
      const left = due - clock()
      if (left > 0) {
        this.arm(left)
        return
      }
      // A batch that fell due after the poll that followed the previous one's due time has had
      // no poll of its own yet.
      if (read && due > this.dueAt) read = false
      const bytes = this.bytesRead()
      if (!oldest.extended && bytes > (read ? this.readAtDue : this.readAtArm)) {
        // Reply bytes were still arriving while this process was busy: once, the batch gets its
        // whole timeout again to read them.
        oldest.extended = true
        oldest.start = clock()
        this.arm(this.timeoutMs)
        return
      }
      if (!read) {
        this.readAtDue = bytes
        this.dueAt = clock()
        this.graced = true
        setImmediate(this.afterPoll)
        return
      }
      this.expire(oldest)
    }
  }

  private expire(batch: Batch): void {
    const { rejects, operations } = batch
    for (let i = 0; i < rejects.length; i++) {
      const reject = rejects[i]
      if (reject === undefined) continue
      this.settle(batch, i)
      const operation = operations[i]
      reject(operation === undefined ? new Error('Command timed out') : this.timedOut(operation))
    }
  }
}

/**
 * Gives every command `client` sends its deadline from `deadlines` (see
 * {@link CommandDeadlines.watchCommand}), in place of ioredis's `commandTimeout`: also the ones
 * ioredis sends by itself on each connection (`CLIENT SETNAME`, the ready check's `INFO`), so a
 * server that stops answering while the client sets up fails it (ioredis then reconnects) instead
 * of holding it for good. `sent`, if given, sees each command's promise as it goes.
 */
export function timeEveryCommand(
  client: object,
  deadlines: CommandDeadlines,
  sent?: (promise: Promise<unknown>) => void,
): void {
  const target = client as { sendCommand(command: IoredisCommand, stream?: unknown, node?: unknown): unknown }
  const send = target.sendCommand
  target.sendCommand = function (this: unknown, command, stream, node) {
    deadlines.watchCommand(command)
    sent?.(command.promise)
    return send.call(this, command, stream, node)
  }
}
