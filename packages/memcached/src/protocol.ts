/**
 * The memcached binary protocol on top of memjs's connections.
 *
 * memjs's high-level client has no gets/cas, parses INCR results wrongly above 2^32, and retries
 * failed requests (which would replay an increment). So requests are built here and written to a
 * memjs `Server` chosen by the backend: memjs still owns the sockets, SASL and response framing;
 * this file owns the bytes, the statuses and each request's deadline (memjs times requests with
 * the socket's inactivity timer, which every new request resets: a frozen server under steady
 * traffic held requests for seconds).
 */
import { connect, type Socket } from 'node:net'
// A request's deadline is real time: the timers of `node:timers`, which an app's fake timers
// (which replace the global ones in its tests) leave alone.
import { clearTimeout, setImmediate, setTimeout } from 'node:timers'
import { CacheError } from '@cache/core'
import type memjs from 'memjs'
import type { Expiry } from './expiry.js'

export const Opcode = {
  get: 0x00,
  set: 0x01,
  add: 0x02,
  delete: 0x04,
  increment: 0x05,
  decrement: 0x06,
  flush: 0x08,
  noop: 0x0a,
  version: 0x0b,
  /** GET that answers only a hit, with its key. */
  getkq: 0x0d,
  /** SET that answers only a failure. */
  setq: 0x11,
  saslAuth: 0x21,
} as const

export const Status = {
  ok: 0x00,
  notFound: 0x01,
  exists: 0x02,
  tooLarge: 0x03,
  notStored: 0x05,
  nonNumeric: 0x06,
} as const

/** INCR expiration meaning "fail with NOT_FOUND instead of creating the counter". */
export const NO_CREATE = 0xffffffff

/** What memjs's parser hands back for one response. */
interface RawResponse {
  header: { status: number; cas: Buffer }
  extras: Buffer
  val: Buffer
}

/** The parts of memjs's `Server` this file drives (public in memjs's source, absent from its types). */
interface Connection {
  host: string
  port: number
  /** SASL credentials memjs authenticates with, if any. */
  username?: string
  password?: string
  connected: boolean
  timeoutSet: boolean
  _socket: Socket | undefined
  /** Bytes read on the connection that do not make a whole answer yet. */
  responseBuffer: Buffer
  /** The requests waiting for an answer, by sequence number. */
  errorCallbacks: Record<number, unknown>
  /** Opens the connection if needed, then calls `go` with the socket. */
  sock(sasl: unknown, go: unknown): unknown
  /** Adds a read to what is held of an unfinished answer; returns the bytes to parse. */
  appendToBuffer(data: Buffer): Buffer
  responseCallbacks: Record<number, unknown>
  onResponse(seq: number, fn: (response: RawResponse) => void): void
  onError(seq: number, fn: (error: unknown) => void): void
  write(blob: Buffer): void
  /** Ends the connection's socket, if any (memjs's `Server.close`). */
  close(): void
  /** Fails every request waiting on the server (and forgets them). */
  error(error: unknown): void
}

export interface Response {
  status: number
  /** The value bytes (GET) or the 8-byte counter (INCR). */
  value: Buffer
  /** The item's flags on a GET hit (0 otherwise). */
  flags: number
  /** The item's CAS version, 8 bytes. */
  cas: Buffer
}

const EMPTY = Buffer.alloc(0)

/** A request: 24-byte header, extras, key, value. `key` is ASCII (the backend made it safe). */
export function request(
  opcode: number,
  key: string,
  extras: Buffer = EMPTY,
  value: Buffer = EMPTY,
  cas?: Buffer,
): Buffer {
  const keyLength = key.length
  const buf = Buffer.allocUnsafe(24 + extras.length + keyLength + value.length)
  buf[0] = 0x80
  buf[1] = opcode
  buf.writeUInt16BE(keyLength, 2)
  buf[4] = extras.length
  buf[5] = 0
  buf.writeUInt16BE(0, 6)
  buf.writeUInt32BE(extras.length + keyLength + value.length, 8)
  buf.writeUInt32BE(0, 12) // opaque: set by send()
  if (cas) cas.copy(buf, 16)
  else buf.fill(0, 16, 24)
  extras.copy(buf, 24)
  buf.write(key, 24 + extras.length, 'latin1')
  value.copy(buf, 24 + extras.length + keyLength)
  return buf
}

/** SET/ADD extras: flags and expiration. */
export function storeExtras(flags: number, exptime: number): Buffer {
  const extras = Buffer.allocUnsafe(8)
  extras.writeUInt32BE(flags, 0)
  extras.writeUInt32BE(exptime, 4)
  return extras
}

/** A SET or ADD of `bytes` with an expiry; with `cas`, only if the item still has that version. */
export function storeRequest(
  opcode: number,
  key: string,
  expiry: Expiry,
  bytes: Buffer,
  cas?: Buffer,
): Buffer {
  return request(opcode, key, storeExtras(expiry.flags, expiry.exptime), bytes, cas)
}

/** A counter as memcached's INCR reads it: decimal ASCII. */
export function counterBytes(n: number): Buffer {
  return Buffer.from(String(n), 'latin1')
}

/** INCR extras: amount, initial value, expiration (NO_CREATE: do not create). */
export function incrExtras(amount: number): Buffer {
  const extras = Buffer.alloc(20)
  extras.writeBigUInt64BE(BigInt(amount), 0)
  extras.writeUInt32BE(NO_CREATE, 16)
  return extras
}

/** A request that got no answer: the link failed, or the server did not answer in time. */
export class LinkFailure extends Error {
  constructor(
    readonly timedOut: boolean,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options)
  }
}

/**
 * A request sent and not answered yet: the bytes written for it if it is to be undone when given
 * up (its undo is built only then, see {@link undosOf}), else undefined.
 */
type Pending = Buffer | undefined

/** Requests waiting for an answer, per memjs server. */
const waiting = new WeakMap<Connection, Map<number, Pending>>()

/** What the end of the current tick runs (see {@link atTickEnd}); undefined when nothing is due. */
let tickEnd: (() => void)[] | undefined

/**
 * Runs `task` once the current tick's synchronous work (and the microtasks queued before this
 * tick's first task) is done: the tasks of one tick share one microtask, run in the order given.
 */
export function atTickEnd(task: () => void): void {
  if (tickEnd !== undefined) {
    tickEnd.push(task)
    return
  }
  const tasks = [task]
  tickEnd = tasks
  queueMicrotask(() => {
    // Tasks given while these run are the next microtask's, as they would be in their own.
    if (tickEnd === tasks) tickEnd = undefined
    for (const run of tasks) {
      try {
        run()
      } catch (error) {
        queueMicrotask(() => {
          throw error
        })
      }
    }
  })
}

/** How long a connection that was given up may linger (closing, unread) before it is destroyed. */
const LINGER_MS = 60_000

/**
 * How long a connection that was given up may wait for the kernel to take its undos, queued
 * behind the rest of a large write (a frozen server reads nothing, so its buffers stay full):
 * past this it is reset (see {@link untaken}). A write the socket still holds keeps the process
 * alive whatever the socket's ref, so this also bounds how long a failure keeps it running.
 */
export const HOLD_MS = 1000

/**
 * Given-up connections whose last bytes (the undos) are still in this process, not yet handed to
 * the kernel: if the process ends, the kernel would still deliver what it took — the start of the
 * writes, without their undos. So they are reset instead (TCP RST): memcached discards whatever
 * of the connection it had not read yet, and a request it had read only in part.
 */
const untaken = new Set<Socket>()

let resetOnExit = false

/** At process exit (a return, `process.exit()`, an uncaught error), resets {@link untaken}. */
function resetUntaken(): void {
  for (const socket of untaken) reset(socket)
  untaken.clear()
}

/** Ends `socket` with a TCP RST (a socket without a TCP handle of its own is destroyed). */
function reset(socket: Socket): void {
  try {
    socket.resetAndDestroy()
  } catch {
    socket.destroy()
  }
}

/** What a request ends with: its answer, or the {@link LinkFailure} (or other error) that ended it. */
export type Done<T> = (failure: unknown, result?: T) => void

/** Calls `done` with the outcome of `start()` (a throw, or the promise it returns). */
export function doneWhenSettled<T>(start: () => Promise<T>, done: Done<T>): void {
  let running: Promise<T>
  try {
    running = start()
  } catch (error) {
    done(error)
    return
  }
  running.then(
    (value) => done(undefined, value),
    (error: unknown) => done(error),
  )
}

/**
 * Sends one request on one memjs server and calls `done` with its response, or with a
 * {@link LinkFailure}. Each request has its own deadline of `timeoutMs` from when it was written
 * (connecting included), which later requests do not move (the requests written to a server in
 * one tick share one timer: they were written together). Never retried: a lost INCR is reported,
 * not replayed.
 *
 * When a deadline passes, the connection is given up ({@link abandon}): every request waiting on
 * it fails at once, and each write among them that has an undo (a plain SET, see {@link undoFor};
 * none when `undoable` is false) is followed on that same connection by it, before the
 * connection is closed.
 */
export function sendNow(
  client: memjs.Client,
  index: number,
  buf: Buffer,
  timeoutMs: number,
  undoable: boolean,
  done: Done<Response>,
): void {
  const server = client.servers[index] as unknown as Connection
  const seq = nextSeq(client)
  buf.writeUInt32BE(seq, 12)
  exchange(server, seq, undoable ? buf : undefined, timeoutMs, buf, done, (answer) => {
    server.onResponse(seq, (response) => answer(toResponse(response)))
  })
}

/** {@link sendNow}, as a promise. */
export function send(
  client: memjs.Client,
  index: number,
  buf: Buffer,
  timeoutMs: number,
  undoable: boolean,
): Promise<Response> {
  return new Promise((resolve, reject) =>
    sendNow(client, index, buf, timeoutMs, undoable, (failure, response) =>
      failure === undefined ? resolve(response!) : reject(failure),
    ),
  )
}

/**
 * Sends quiet requests (GETKQ, SETQ) to one memjs server in one write, followed by a NOOP, and
 * calls `done` once the NOOP is answered with each request's answer, or undefined where the
 * server answered nothing (a GETKQ miss, a SETQ that succeeded). memcached answers in order, so
 * by the NOOP's answer every request before it has been run. One deadline for the whole write; if
 * it is given up, each SETQ in it is undone (see {@link abandon}).
 */
export function sendQuiet(
  client: memjs.Client,
  index: number,
  requests: readonly Buffer[],
  timeoutMs: number,
  done: Done<(Response | undefined)[]>,
): void {
  const server = client.servers[index] as unknown as Connection
  const answers: (Response | undefined)[] = new Array(requests.length).fill(undefined)
  const seqs: number[] = new Array(requests.length)
  for (let i = 0; i < requests.length; i++) {
    const buf = requests[i]!
    const seq = nextSeq(client)
    buf.writeUInt32BE(seq, 12)
    seqs[i] = seq
  }
  const noop = request(Opcode.noop, '')
  const seq = nextSeq(client)
  noop.writeUInt32BE(seq, 12)
  const blob = Buffer.concat([...requests, noop])
  exchange(server, seq, blob, timeoutMs, blob, done, (answer) => {
    for (let i = 0; i < seqs.length; i++) {
      server.onResponse(seqs[i]!, (response) => {
        answers[i] = toResponse(response)
      })
    }
    server.onResponse(seq, () => {
      // memjs forgets a request once answered; the quiet ones that were not are forgotten here.
      for (const quiet of seqs) delete server.responseCallbacks[quiet]
      answer(answers)
    })
  })
}

/**
 * The next request number of a client: unsigned 32-bit, as the opaque field holds it and as
 * memjs reads it back (memjs's own counter turns negative past 2^31, which no buffer accepts).
 */
function nextSeq(client: memjs.Client): number {
  const counter = client as unknown as { seq: number }
  counter.seq = (counter.seq + 1) >>> 0
  return counter.seq
}

function toResponse(response: RawResponse): Response {
  const extras = response.extras
  return {
    status: response.header.status,
    value: response.val,
    flags: extras.length >= 4 ? extras.readUInt32BE(0) : 0,
    cas: response.header.cas,
  }
}

/** The requests written to one server in one tick share one deadline. */
interface Deadline {
  /** When they were written (ms, {@link clock}). */
  start: number
  timeoutMs: number
  /** Requests of the tick not answered yet. */
  open: number
  /** Given more time once already, for bytes that were still arriving when it was due. */
  extended?: boolean
  /** The watch that holds it. */
  watch: Watch
}

/**
 * The deadlines of one server's requests waiting for an answer, oldest first, and the one timer
 * that watches the oldest: it fires when that one is due (giving the connection up if it is still
 * waiting) or re-arms for the next. Requests that are answered cost no timer work.
 */
interface Watch {
  deadlines: Deadline[]
  head: number
  timer: NodeJS.Timeout | undefined
  /** The connection's bytes read when its oldest requests fell due (see {@link check}). */
  readAtDue?: number
  /** The connection's bytes read when the timer was armed: more when it fires, an answer is arriving. */
  readAtArm?: number
}

const watches = new WeakMap<Connection, Watch>()

/** Real time, also under an application's fake timers (bound before any test replaces it). */
const clock = performance.now.bind(performance)

/**
 * What is written to one server in the current tick: it leaves in one write when the tick's
 * synchronous work is done, so that the requests of one tick (an operation and its generation
 * read, 64 operations in flight) reach the server together, in one system call, and are not
 * held back one by one by Nagle's algorithm.
 */
interface Outbox {
  chunks: Buffer[]
  deadline: Deadline | undefined
}

const outboxes = new WeakMap<Connection, Outbox>()

function outboxOf(server: Connection): Outbox {
  let outbox = outboxes.get(server)
  if (outbox === undefined) {
    const fresh: Outbox = { chunks: [], deadline: undefined }
    outboxes.set(server, fresh)
    atTickEnd(() => flush(server, fresh))
    outbox = fresh
  }
  return outbox
}

function flush(server: Connection, outbox: Outbox): void {
  if (outboxes.get(server) !== outbox) return
  outboxes.delete(server)
  const { chunks } = outbox
  // The deadline runs from the write: synchronous work of this process after the calls of the
  // tick (which runs before this) is not the server's time.
  if (outbox.deadline !== undefined) outbox.deadline.start = clock()
  if (chunks.length > 0) server.write(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks))
}

/** Writes now what the current tick has for the servers of `client` (before it is closed). */
export function flushWrites(client: memjs.Client): void {
  for (const server of client.servers as unknown as Connection[]) {
    const outbox = outboxes.get(server)
    if (outbox !== undefined) flush(server, outbox)
  }
}

/**
 * Closes the connections of `client` (the backend's `close()`), each once no request waits on it:
 * at once if none does, else when the last is answered or given up. Ended with requests waiting,
 * a connection could no longer carry their undos if they were given up (see {@link abandon}): a
 * server frozen at `close()` would apply, when it resumes, writes reported failed. Call
 * {@link flushWrites} first: what the current tick has for the servers is then written.
 */
export function closeWhenSettled(client: memjs.Client): void {
  for (const server of client.servers as unknown as Connection[]) {
    if ((waiting.get(server)?.size ?? 0) === 0) server.close()
    else closing.add(server)
  }
}

/** Connections to close once no request waits on them (see {@link closeWhenSettled}). */
const closing = new WeakSet<Connection>()

function deadlineOf(server: Connection, outbox: Outbox, timeoutMs: number): Deadline {
  const current = outbox.deadline
  if (current !== undefined && current.timeoutMs === timeoutMs) return current
  let watch = watches.get(server)
  if (watch === undefined) watches.set(server, (watch = { deadlines: [], head: 0, timer: undefined }))
  // Its start is set when the tick's requests are written (see flush).
  const deadline: Deadline = { start: clock(), timeoutMs, open: 0, watch }
  outbox.deadline = deadline
  watch.deadlines.push(deadline)
  if (watch.timer === undefined) arm(server, watch, timeoutMs)
  return deadline
}

function arm(server: Connection, watch: Watch, ms: number): void {
  watch.readAtArm = server._socket?.bytesRead ?? 0
  watch.timer = setTimeout(() => check(server, watch), Math.max(1, Math.ceil(ms)))
  // The socket keeps the process alive while requests wait; the watch alone does not.
  watch.timer.unref()
}

/**
 * Gives the connection up if its oldest waiting requests are due; otherwise waits for them. Due
 * requests get one more look after the event loop's next poll for I/O (`read`): when this process
 * itself was busy past the deadline (a long synchronous stretch, a GC pause), timers run before
 * the socket is read, and an answer the server sent in time would otherwise count as none. If
 * bytes arrived since the timer was armed, or in that poll, but not the whole answer, they get
 * their timeout once more.
 */
function check(server: Connection, watch: Watch, read = false): void {
  watch.timer = undefined
  const { deadlines } = watch
  while (watch.head < deadlines.length && deadlines[watch.head]!.open === 0) watch.head++
  if (watch.head === deadlines.length) {
    watch.deadlines = []
    watch.head = 0
    return
  }
  if (watch.head > 1024) {
    watch.deadlines = deadlines.slice(watch.head)
    watch.head = 0
  }
  const oldest = watch.deadlines[watch.head]!
  const left = oldest.start + oldest.timeoutMs - clock()
  if (left > 0) {
    arm(server, watch, left)
    return
  }
  const bytes = server._socket?.bytesRead ?? 0
  if (!oldest.extended && bytes > ((read ? watch.readAtDue : watch.readAtArm) ?? bytes)) {
    // Bytes were still arriving (a large answer the socket's buffers could not hold while this
    // process was busy): once, the requests get their whole timeout again to be read.
    oldest.extended = true
    oldest.start = clock()
    arm(server, watch, oldest.timeoutMs)
    return
  }
  if (!read) {
    watch.readAtDue = bytes
    setImmediate(() => {
      // A request written meanwhile may have armed the timer for its own, later deadline.
      if (watch.timer !== undefined) clearTimeout(watch.timer)
      check(server, watch, true)
    })
    return
  }
  watch.deadlines = []
  watch.head = 0
  abandon(server, `no answer within ${oldest.timeoutMs} ms`, oldest.timeoutMs)
}

/**
 * Makes each connection of `client` start its next socket with an empty read buffer. memjs keeps
 * the part of an answer read before a connection failed (given up mid-answer, reset by the
 * server): the next connection's answers would be read after it, as its missing bytes, and never
 * parse, so the server could never be taken back. Idempotent.
 */
export function clearBuffersOnFailure(client: memjs.Client): void {
  for (const server of client.servers as unknown as Connection[]) {
    if (cleared.has(server)) continue
    cleared.add(server)
    const fail = server.error
    server.error = function (this: Connection, error: unknown) {
      this.responseBuffer = Buffer.alloc(0)
      return fail.call(this, error)
    }
    // memjs forgets a socket the server closed (FIN) but leaves its requests waiting, for their
    // whole timeout (and a script whose only handle it was exits with them unsettled): they fail
    // at once, as on a reset.
    const sock = server.sock
    server.sock = function (this: Connection, sasl: unknown, go: unknown) {
      const before = this._socket
      // A connection that has a socket keeps it (memjs opens one only when there is none).
      if (before !== undefined) return sock.call(this, sasl, go)
      const result = sock.call(this, sasl, go)
      const socket = this._socket
      if (socket !== undefined && socket !== before)
        socket.once('close', () => {
          if (this._socket === undefined && Object.keys(this.errorCallbacks).length > 0)
            this.error(new Error('the connection was closed by the server'))
        })
      return result
    }
    // memjs copies every read into a new buffer after what it holds of an unfinished answer. With
    // nothing held (answers arrive whole, the common case), the read itself is the buffer: the
    // socket hands each read its own memory, which nothing else writes to.
    const append = server.appendToBuffer
    server.appendToBuffer = function (this: Connection, data: Buffer) {
      if (this.responseBuffer.length > 0) return append.call(this, data)
      this.responseBuffer = data
      return data
    }
  }
}
const cleared = new WeakSet<object>()

/**
 * The connections of the clients a backend created itself: idle, they do not keep the process
 * alive. Those of a client passed in are left as its owner has them (their liveness is the
 * owner's: its own requests on them must keep the process running).
 */
const idleUnref = new WeakSet<object>()

/** Marks `client` as the backend's own: its connections stop keeping the process alive when idle. */
export function unrefWhenIdle(client: memjs.Client): void {
  for (const server of client.servers) idleUnref.add(server)
}

/**
 * Writes `blob` to `server` (with the rest of this tick's, see {@link Outbox}) and waits for the
 * answer to request `seq` (which `listen` registers with memjs, calling `answer` with the result),
 * with a deadline of `timeoutMs` from now. `done` is called once, never before this returns.
 * `undoable`: the bytes written, when what they write is undone if the connection is given up.
 */
function exchange<T>(
  server: Connection,
  seq: number,
  undoable: Buffer | undefined,
  timeoutMs: number,
  blob: Buffer,
  done: Done<T>,
  listen: (answer: (result: T) => void) => void,
): void {
  let requests = waiting.get(server)
  if (requests === undefined) waiting.set(server, (requests = new Map()))
  const pending = requests
  const outbox = outboxOf(server)
  const deadline = deadlineOf(server, outbox, timeoutMs)
  deadline.open++
  pending.set(seq, undoable)
  // A socket memjs creates for this write starts ref'd; an idle one was unref'd.
  if (pending.size === 1 && idleUnref.has(server)) server._socket?.ref()
  // Arrow functions passed straight on: the build names those kept in a variable, per call.
  listen((result) => {
    settled(server, pending, outbox, deadline, seq)
    done(undefined, result)
  })
  server.onError(seq, (error) => {
    settled(server, pending, outbox, deadline, seq)
    const message = error instanceof Error ? error.message : String(error)
    const cause = error instanceof Error ? error : new Error(message)
    done(new LinkFailure(/timed out/i.test(message), message, { cause }))
  })
  outbox.chunks.push(blob)
}

/** Request `seq` is answered or failed: it no longer waits. */
function settled(
  server: Connection,
  pending: Map<number, Pending>,
  outbox: Outbox,
  deadline: Deadline,
  seq: number,
): void {
  if (--deadline.open === 0) {
    if (outbox.deadline === deadline) outbox.deadline = undefined
    forget(deadline.watch)
  }
  if (!pending.delete(seq) || pending.size > 0) return
  // An idle connection does not keep the process alive: a script that never calls close()
  // exits once its work is done.
  if (idleUnref.has(server)) server._socket?.unref()
  if (closing.delete(server)) server.close()
}

/**
 * Drops the answered deadlines at the head of a watch. Answers come in order, so this usually
 * empties it: a deadline is kept only while its requests wait, not until the timer next fires
 * (one per tick for up to `timeoutMs` would outlive the young generation and cost the garbage
 * collector more than the rest of a request).
 */
function forget(watch: Watch): void {
  const { deadlines } = watch
  while (watch.head < deadlines.length && deadlines[watch.head]!.open === 0) watch.head++
  if (watch.head === deadlines.length) {
    deadlines.length = 0
    watch.head = 0
  }
}

/**
 * Gives up a connection whose server did not answer in time. A frozen (or overloaded) server
 * runs what is in its input buffer when it resumes, so a write reported failed would still be
 * applied: each one waiting on this connection that can be undone without leaving the value
 * reported failed (see {@link undoFor}: a DELETE of the key after a plain SET) is followed by its
 * undo, then the connection is ended, not reset, so that the server reads all of it, in order —
 * unless the undos are still in this process (behind a large write) {@link HOLD_MS} later or when
 * it exits: then it is reset, so that the server drops what it had not read.
 *
 * The undos alone are not enough: memcached stops reading a connection once an answer to it
 * fails (the process ended, the link died), so the writes run and their undos do not. So the
 * generation of each namespace those writes belong to is also moved on, over a fresh connection
 * ({@link bumpGenerations}): a write landing late lands under a generation nobody reads again,
 * whichever connection the server reads first. The requests waiting on the connection fail once
 * that bump is in the kernel's hands (or could not be sent, within `timeoutMs`); the next request
 * opens a new connection.
 */
function abandon(server: Connection, reason: string, timeoutMs: number): void {
  const socket = server._socket
  const undos = [...(waiting.get(server)?.values() ?? [])].flatMap((sent) => (sent ? undosOf(sent) : []))
  const written = socket !== undefined && server.connected
  if (socket !== undefined) {
    // What the server says on this connection from now on concerns nobody: memjs lets go of it,
    // and it is read and thrown away (an unread socket would be reset when closed, losing undos).
    for (const event of ['data', 'close', 'error', 'timeout']) socket.removeAllListeners(event)
    socket.on('error', () => {})
    socket.resume()
    if (written) {
      untaken.add(socket)
      if (!resetOnExit) {
        resetOnExit = true
        process.on('exit', resetUntaken)
      }
      socket.once('close', () => untaken.delete(socket))
      socket.setTimeout(LINGER_MS, () => socket.destroy())
      // Once the undos are in the kernel's hands, it delivers them even if this process exits:
      // a connection nobody waits on does not keep the process alive while the server stays silent.
      socket.write(Buffer.concat(undos), () => {
        untaken.delete(socket)
        socket.unref()
      })
      socket.end()
      setTimeout(() => {
        if (untaken.delete(socket)) reset(socket)
      }, HOLD_MS).unref()
    } else socket.destroy() // not connected yet: nothing was written
  }
  server.connected = false
  server._socket = undefined
  server.timeoutSet = false
  const error = new Error(`timed out: ${reason}`)
  const keys = written ? generationKeysOf(undos) : []
  if (keys.length === 0) {
    server.error(error)
    return
  }
  // memjs forgets the connection's requests now; they fail once the bump is sent.
  const calls = server.errorCallbacks as Record<number, (error: unknown) => void>
  server.errorCallbacks = {}
  server.error(error)
  const name = `${server.host}:${server.port}`
  bumpGenerations(server, keys, timeoutMs, (failure) => {
    for (const listener of [...everyBump, ...(bumpListeners.get(server) ?? [])]) {
      try {
        listener(name, keys, failure)
      } catch (thrown) {
        queueMicrotask(() => {
          throw thrown
        })
      }
    }
    for (const call of Object.values(calls)) call(error)
  })
}

/**
 * What is told when writes were given up on a connection to `server` (`host:port`, see
 * {@link abandon}): the generation counters `generationKeys` moved on over a fresh connection
 * (`failure` undefined: the bump is in the kernel's hands), or the reason they could not be.
 */
export type BumpListener = (
  server: string,
  generationKeys: readonly string[],
  failure: Error | undefined,
) => void

const bumpListeners = new WeakMap<Connection, Set<BumpListener>>()
/** Told of every bump in the process (the generations every backend keeps a copy of). */
const everyBump = new Set<BumpListener>()

/** Calls `listener` for every generation bump after writes given up in this process. */
export function onEveryGenerationBump(listener: BumpListener): void {
  everyBump.add(listener)
}

/**
 * Calls `listener` for every generation bump after writes given up on a connection of `client`;
 * returns what stops it.
 */
export function onGenerationBump(client: memjs.Client, listener: BumpListener): () => void {
  const servers = client.servers as unknown as Connection[]
  for (const server of servers) {
    let listeners = bumpListeners.get(server)
    if (listeners === undefined) bumpListeners.set(server, (listeners = new Set()))
    listeners.add(listener)
  }
  return () => {
    for (const server of servers) bumpListeners.get(server)?.delete(listener)
  }
}

/**
 * The generation counters (`<namespace>#g`) of the keys the `undos` delete: a key is
 * `<namespace>#<generation>:<key>`, and a namespace never contains `#`.
 */
function generationKeysOf(undos: readonly Buffer[]): string[] {
  const keys = new Set<string>()
  for (const undo of undos) {
    const key = undo.toString('latin1', 24 + undo[4]!, 24 + undo[4]! + undo.readUInt16BE(2))
    const hash = key.indexOf('#')
    if (hash > 0) keys.add(`${key.slice(0, hash)}#g`)
  }
  return [...keys]
}

/**
 * INCRs the counters `keys` on `server` over a fresh connection (after a SASL PLAIN login, when
 * memjs has credentials: sent together, memcached runs them in order), then ends it; calls `done`
 * once the requests are in the kernel's hands (a frozen server's kernel still accepts the
 * connection and the bytes, and the server runs them when it resumes, even if this process is
 * gone by then), or with the reason they are not within `timeoutMs` (no connection: refused,
 * unreachable). The answers are read and thrown away: a server that resumes after the process
 * ended still runs the bump, which is the first thing on the connection.
 */
function bumpGenerations(
  server: Connection,
  keys: readonly string[],
  timeoutMs: number,
  done: (failure: Error | undefined) => void,
): void {
  const requests = keys.map((key) => request(Opcode.increment, key, incrExtras(1)))
  if (server.username && server.password)
    requests.unshift(
      request(Opcode.saslAuth, 'PLAIN', EMPTY, Buffer.from(`\0${server.username}\0${server.password}`)),
    )
  let finished = false
  const finish = (failure: Error | undefined) => {
    if (finished) return
    finished = true
    clearTimeout(timer)
    done(failure)
  }
  const socket = connect(server.port, server.host)
  const timer = setTimeout(() => {
    socket.destroy()
    finish(new Error(`no connection to ${server.host}:${server.port} within ${timeoutMs} ms`))
  }, timeoutMs)
  socket.on('error', (error) => finish(error))
  socket.setNoDelay(true)
  socket.resume()
  socket.setTimeout(LINGER_MS, () => socket.destroy())
  socket.once('connect', () => {
    socket.write(Buffer.concat(requests), (error) => {
      finish(error ?? undefined)
      socket.unref()
    })
    socket.end()
  })
}

/** The requests that undo those written in `blob` (one request, or several in a row), in order. */
function undosOf(blob: Buffer): Buffer[] {
  const undos: Buffer[] = []
  for (let at = 0; at + 24 <= blob.length; ) {
    const end = at + 24 + blob.readUInt32BE(at + 8)
    const undo = undoFor(blob.subarray(at, end))
    if (undo !== undefined) undos.push(undo)
    at = end
  }
  return undos
}

/**
 * The request that undoes `buf`, a write whose outcome is unknown, when the server runs both in
 * order — never one that could destroy a value the write did not replace. Only an unconditional
 * SET(Q) has one, a DELETE of its key: if the set landed, it replaced whatever the key held, so
 * the key becomes a miss (never the value reported failed), which takes nothing the set had not.
 * Every other write may have changed nothing, so it is left as it is (and may have been applied):
 * an ADD may have found the key taken (another process's value, a lock), a write carrying a CAS
 * may have been refused because another process wrote the key since (the writes of `incr`,
 * `atomicUpdate`, and of an `add` over an expired item), a DELETE cannot be given back, and an
 * INCR is sent only to the generation counters, which are never given back.
 */
export function undoFor(buf: Buffer): Buffer | undefined {
  const opcode = buf[1]
  if (opcode !== Opcode.set && opcode !== Opcode.setq) return undefined
  if (buf.readBigUInt64BE(16) !== 0n) return undefined
  const keyStart = 24 + buf[4]!
  const key = buf.toString('latin1', keyStart, keyStart + buf.readUInt16BE(2))
  return request(Opcode.delete, key)
}

/** An error for a status the caller did not expect. */
export function unexpected(backend: string, operation: string, status: number): CacheError {
  return new CacheError(`${backend}: ${operation} failed with memcached status 0x${status.toString(16)}`)
}

/** The unsigned 64-bit counter of an INCR response, as a number. */
export function counterValue(response: Response): number {
  return Number(response.value.readBigUInt64BE(0))
}
