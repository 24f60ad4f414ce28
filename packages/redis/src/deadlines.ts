// Deadlines are real time: the timers of `node:timers`, bound before an application's fake
// timers may replace the global ones.
import { setImmediate, setTimeout } from 'node:timers'
import type { Cluster, Redis } from 'ioredis'

/** Real time, also under an application's fake timers. */
const clock = performance.now.bind(performance)

/** The commands sent in one tick: they leave together, so they share one deadline. */
export interface Batch {
  /**
   * When it is judged (ms, {@link clock}): the timeout after its commands were written (the end of
   * their tick), or after the judgment that extended it.
   */
  due: number
  /** Commands of the batch not settled yet. */
  open: number
  /** Given its whole timeout once more, for reply bytes that were arriving when it was due. */
  extended: boolean
  /**
   * Per command, the connection it was written to (a cluster's node, see {@link
   * CommandDeadlines.wroteTo}); undefined when not known: then every connection's bytes count.
   */
  connections: (object | undefined)[]
  /** Per command, its rejection while it waits; undefined once it settled. */
  rejects: (((error: Error) => void) | undefined)[]
  /** Per command, the operation it is part of; undefined for an ioredis command (see {@link watchCommand}). */
  operations: (string | undefined)[]
}

/** Bytes read so far, per connection (a cluster: per node; one server: its one connection). */
export type BytesRead = () => ReadonlyMap<object, number>

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
 * timer was armed, or in that poll, on a connection the batch was written to (on a cluster, its
 * node: traffic of the other nodes says nothing about this one), without settling the batch (a
 * large reply still arriving), it gets its timeout once more, from then. Every batch is judged at
 * its own due time, and the batches due together share the judgment: an extended batch waits in a
 * queue of its own, so it never holds back the judgment of those after it. A server that does not
 * answer fails each call at `timeoutMs` after its write (plus one poll of the event loop); at most
 * twice that, plus this process's stall, when bytes kept arriving.
 */
export class CommandDeadlines {
  /** Batches not extended, in the order they were written (so also of their due time). */
  private readonly waiting = new BatchQueue()
  /** Extended batches, in the order they were extended (so also of their new due time). */
  private readonly extended = new BatchQueue()
  /** The batch of the current tick, until its end. */
  private current: Batch | undefined
  private timer: NodeJS.Timeout | undefined
  /** The timer holds the process while commands wait (the client's socket may not). */
  private refed = false
  /** A due batch waits for the next poll for I/O (see {@link check}). */
  private graced = false
  /** Commands waiting, in every batch. */
  private pending = 0
  /** Bytes read per connection when the timer was armed, and when a batch fell due. */
  private readAtArm: ReadonlyMap<object, number> = new Map()
  private readAtDue: ReadonlyMap<object, number> = new Map()
  /** When the batch now in its grace fell due: a poll for I/O has run since then. */
  private dueAt = 0

  constructor(
    private readonly timeoutMs: number,
    /** Bytes read so far from the server(s) the commands were sent to, per connection. */
    private readonly bytesRead: BytesRead,
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

  /**
   * A watched command was written to `connection` (a cluster's node; see {@link timeEveryCommand}):
   * its batch is judged by the bytes read from there.
   */
  wroteTo(command: IoredisCommand, connection: object): void {
    const batch = command[BATCH]
    if (batch !== undefined) batch.connections[command[INDEX]!] = connection
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
    if (this.pending++ === 0 && this.holdsProcess && !this.refed && this.timer !== undefined) {
      this.timer.ref()
      this.refed = true
    }
    return index
  }

  private open(): Batch {
    const batch: Batch = {
      due: clock() + this.timeoutMs,
      open: 0,
      extended: false,
      connections: [],
      rejects: [],
      operations: [],
    }
    this.current = batch
    this.waiting.push(batch)
    if (!this.sealedByConnection()) process.nextTick(this.seal)
    if (this.timer === undefined && !this.graced) this.arm(this.timeoutMs)
    return batch
  }

  /** The end of the tick: the batch's commands are written now (the socket is uncorked). */
  readonly seal = (): void => {
    const batch = this.current
    this.current = undefined
    if (batch === undefined) return
    batch.due = clock() + this.timeoutMs
  }

  /** True when the command was still waiting (its deadline had not failed it). */
  private settle(batch: Batch, index: number): boolean {
    if (batch.rejects[index] === undefined) return false
    batch.rejects[index] = undefined
    batch.open--
    if (--this.pending === 0 && this.refed && this.timer !== undefined) {
      this.timer.unref()
      this.refed = false
    }
    return true
  }

  private arm(ms: number): void {
    this.readAtArm = this.bytesRead()
    this.timer = setTimeout(this.fire, Math.max(1, Math.ceil(ms)))
    this.refed = this.holdsProcess && this.pending > 0
    if (!this.refed) this.timer.unref()
  }

  private readonly fire = (): void => this.check(false)

  private readonly afterPoll = (): void => {
    this.graced = false
    this.check(true)
  }

  /**
   * Judges every batch that is due and still waiting, oldest due first (see the class's doc for
   * the grace each gets first); then waits for the next one.
   */
  private check(read: boolean): void {
    this.timer = undefined
    for (;;) {
      const waiting = this.waiting.first()
      const extended = this.extended.first()
      if (waiting === undefined && extended === undefined) return
      const batch =
        extended === undefined || (waiting !== undefined && waiting.due <= extended.due) ? waiting! : extended
      const left = batch.due - clock()
      if (left > 0) {
        this.arm(left)
        return
      }
      // A batch that fell due after the poll that followed the previous one's due time has had
      // no poll of its own yet.
      if (read && batch.due > this.dueAt) read = false
      if (!batch.extended && this.arrived(batch, read ? this.readAtDue : this.readAtArm)) {
        // Reply bytes were still arriving on its connection while this process was busy: once,
        // the batch gets its whole timeout again to read them. The next batch due is judged now
        // too, on the same evidence.
        batch.extended = true
        batch.due = clock() + this.timeoutMs
        this.waiting.shift()
        this.extended.push(batch)
        continue
      }
      if (!read) {
        this.readAtDue = this.bytesRead()
        this.dueAt = clock()
        this.graced = true
        setImmediate(this.afterPoll)
        return
      }
      this.expire(batch)
    }
  }

  /**
   * True when bytes were read, since `before`, from a connection that a command of `batch` still
   * waiting was written to (from any connection, if one of those is not known).
   */
  private arrived(batch: Batch, before: ReadonlyMap<object, number>): boolean {
    const now = this.bytesRead()
    let connections: Set<object> | undefined = new Set()
    for (let i = 0; i < batch.rejects.length; i++) {
      if (batch.rejects[i] === undefined) continue
      const connection = batch.connections[i]
      if (connection === undefined) {
        connections = undefined
        break
      }
      connections.add(connection)
    }
    for (const [connection, bytes] of now) {
      if (connections !== undefined && !connections.has(connection)) continue
      if (bytes > (before.get(connection) ?? 0)) return true
    }
    return false
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

/** Batches in the order they were added; the settled ones at the front are dropped as it goes. */
class BatchQueue {
  private items: Batch[] = []
  private head = 0

  push(batch: Batch): void {
    this.items.push(batch)
  }

  /** The first batch still waiting, if any. */
  first(): Batch | undefined {
    const { items } = this
    while (this.head < items.length && items[this.head]!.open === 0) this.head++
    if (this.head === items.length) {
      this.items = []
      this.head = 0
      return undefined
    }
    if (this.head > 1024) {
      this.items = items.slice(this.head)
      this.head = 0
    }
    return this.items[this.head]
  }

  /** Drops the first batch (the one {@link first} returned). */
  shift(): void {
    this.head++
  }
}

/**
 * Gives every command `client` sends its deadline from `deadlines` (see
 * {@link CommandDeadlines.watchCommand}), in place of ioredis's `commandTimeout`: also the ones
 * ioredis sends by itself on each connection (`CLIENT SETNAME`, the ready check's `INFO`), so a
 * server that stops answering while the client sets up fails it (ioredis then reconnects) instead
 * of holding it for good. `sent`, if given, sees each command's promise as it goes. On a cluster,
 * each node also tells which one a command was written to (see {@link CommandDeadlines.wroteTo}).
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
  const cluster = client as Partial<Pick<Cluster, 'isCluster' | 'nodes' | 'on'>>
  if (cluster.isCluster !== true) return
  const watchNode = (redis: Redis): void => {
    const node = redis as unknown as { sendCommand(command: IoredisCommand, stream?: unknown): unknown }
    const sendToNode = node.sendCommand
    node.sendCommand = function (this: unknown, command, stream) {
      deadlines.wroteTo(command, redis)
      return sendToNode.call(this, command, stream)
    }
  }
  for (const redis of cluster.nodes!('all')) watchNode(redis)
  cluster.on!('+node', watchNode)
}
