/**
 * A fault-injecting TCP proxy for tests: it sits between a client and a real server on loopback and
 * reaches the failures a clean kill never shows — a link that drops right after the server answered,
 * a link that goes silent without closing, a slow link that delivers a large reply over seconds.
 */
import { createServer, type Server, Socket } from 'node:net'
const HOST = '127.0.0.1'

/** How the proxy treats traffic. */
export type ProxyMode =
  /** Bytes flow both ways. */
  | 'pass'
  /** Bytes are read and thrown away in both directions; sockets stay open (a silent link). */
  | 'blackhole'
  /**
   * The server's bytes reach the client at most {@link SLOW_BYTES_PER_MS} a millisecond, in order
   * (a slow link: a large reply trickles in); the client's bytes flow freely.
   */
  | 'slow'

/** How fast a `slow` link delivers the server's bytes: 16 KB per millisecond (16 MB/s). */
export const SLOW_BYTES_PER_MS = 16 * 1024

export interface FaultProxy {
  /** The loopback port clients connect to. */
  readonly port: number
  readonly host: string
  /** Connections currently open through the proxy. */
  readonly connections: number
  /**
   * Sets the mode of every current and future connection; with `serverSidePort`, of the one open
   * connection whose link to the server leaves from that local port (what the server shows as the
   * client's address, e.g. in Redis `CLIENT LIST`), leaving the others as they are.
   */
  setMode(mode: ProxyMode, only?: { serverSidePort: number }): void
  /**
   * The next time the server sends bytes on any connection, forward them, then destroy both sides
   * of that connection: the client has its reply half-read or not at all and sees the link drop
   * after the server ran the command. Resolves when a connection has been dropped this way.
   */
  dropAfterNextReply(): Promise<void>
  /**
   * The next time the server sends bytes on any connection, throw them away and destroy both sides
   * of that connection: the server ran the command, the client never sees the reply. Resolves when
   * a connection has been dropped this way.
   */
  dropNextReply(): Promise<void>
  /** Destroys every open connection (a reset); new connections are accepted. */
  dropAll(): void
  /** Refuses new connections (closes the listening socket) until {@link FaultProxy.listen}. */
  refuse(): Promise<void>
  /** Accepts connections again on the same port. */
  listen(): Promise<void>
  close(): Promise<void>
}

interface Link {
  client: Socket
  server: Socket
  /** Overrides the proxy's mode for this connection alone. */
  mode?: ProxyMode
  /** The server's bytes a `slow` link has not delivered yet, and the timer delivering them. */
  slow: Buffer[]
  pump?: NodeJS.Timeout
}

/** Starts a proxy on a free loopback port that forwards to `target`. */
export async function startFaultProxy(target: { host?: string; port: number }): Promise<FaultProxy> {
  const targetHost = target.host ?? HOST
  const links = new Set<Link>()
  let mode: ProxyMode = 'pass'
  let dropWaiters: (() => void)[] = []
  let swallowWaiters: (() => void)[] = []

  const destroy = (link: Link) => {
    links.delete(link)
    clearInterval(link.pump)
    link.client.destroy()
    link.server.destroy()
  }

  const onConnection = (client: Socket) => {
    const server = new Socket()
    const link: Link = { client, server, slow: [] }
    links.add(link)
    client.pause()
    client.on('error', () => destroy(link))
    server.on('error', () => destroy(link))
    client.on('close', () => destroy(link))
    server.on('close', () => destroy(link))
    server.connect(target.port, targetHost, () => client.resume())
    client.on('data', (chunk) => {
      if ((link.mode ?? mode) !== 'blackhole') server.write(chunk)
    })
    server.on('data', (chunk) => {
      // Behind bytes a slow link still holds, in order, also once the link is fast again.
      if ((link.mode ?? mode) === 'slow' || link.slow.length > 0) return deliverSlowly(link, chunk)
      if ((link.mode ?? mode) !== 'pass') return
      if (swallowWaiters.length > 0) {
        const waiters = swallowWaiters
        swallowWaiters = []
        destroy(link)
        for (const resolve of waiters) resolve()
        return
      }
      if (dropWaiters.length > 0) {
        const waiters = dropWaiters
        dropWaiters = []
        client.write(chunk, () => {
          destroy(link)
          for (const resolve of waiters) resolve()
        })
        return
      }
      client.write(chunk)
    })
  }

  const deliverSlowly = (link: Link, chunk: Buffer) => {
    link.slow.push(chunk)
    link.pump ??= setInterval(() => {
      let budget = SLOW_BYTES_PER_MS
      while (budget > 0 && link.slow.length > 0) {
        const head = link.slow[0]!
        const part = head.subarray(0, budget)
        if (part.length === head.length) link.slow.shift()
        else link.slow[0] = head.subarray(budget)
        budget -= part.length
        link.client.write(part)
      }
      if (link.slow.length > 0) return
      clearInterval(link.pump)
      link.pump = undefined
    }, 1)
  }

  let listener: Server | undefined
  let port = 0
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      const next = createServer(onConnection)
      next.once('error', reject)
      next.listen(port, HOST, () => {
        port = (next.address() as { port: number }).port
        listener = next
        resolve()
      })
    })
  // The listening socket closes at once; its callback would wait for every open connection.
  const refuse = async () => {
    listener?.close()
    listener = undefined
  }

  await listen()
  return {
    get port() {
      return port
    },
    host: HOST,
    get connections() {
      return links.size
    },
    setMode(next, only) {
      if (only === undefined) {
        mode = next
        for (const link of links) link.mode = undefined
        return
      }
      const link = [...links].find((l) => l.server.localPort === only.serverSidePort)
      if (link === undefined) throw new Error(`no open connection leaves from port ${only.serverSidePort}`)
      link.mode = next
    },
    dropAfterNextReply() {
      return new Promise<void>((resolve) => dropWaiters.push(resolve))
    },
    dropNextReply() {
      return new Promise<void>((resolve) => swallowWaiters.push(resolve))
    },
    dropAll() {
      for (const link of [...links]) destroy(link)
    },
    refuse,
    listen,
    async close() {
      for (const link of [...links]) destroy(link)
      await refuse()
    },
  }
}
