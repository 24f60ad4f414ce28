import { type AddressInfo, connect, createServer, type Socket } from 'node:net'

/**
 * A TCP proxy to `port` that can hold what clients send on the connections open now, cut those
 * connections' client side (the held bytes stay queued for the server), and deliver them later: a
 * buffering intermediary across a reconnect.
 */
export async function holdingProxy(port: number) {
  const links = new Set<{ client: Socket; server: Socket; held: Buffer[] | undefined }>()
  const proxy = createServer((client) => {
    const server = connect(port, '127.0.0.1')
    const link = { client, server, held: undefined as Buffer[] | undefined }
    links.add(link)
    client.on('data', (data) => (link.held ? link.held.push(data) : server.write(data)))
    server.on('data', (data) => client.write(data))
    client.on('error', () => {})
    server.on('error', () => {})
    server.on('close', () => client.destroy())
    client.on('close', () => {
      if (link.held === undefined) server.destroy()
    })
  })
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
  return {
    url: `redis://127.0.0.1:${(proxy.address() as AddressInfo).port}`,
    /** Holds what clients send from now on, on the connections open now (those held stay held). */
    hold: () => {
      for (const link of links) link.held ??= []
    },
    cutClients: () => {
      for (const link of links) if (link.held) link.client.destroy()
    },
    deliver: () => {
      for (const link of links) {
        for (const data of link.held ?? []) link.server.write(data)
        if (link.held) link.server.end()
        link.held = undefined
      }
    },
    /** Sends what was held and passes traffic again, on the same connections (nothing cut). */
    release: () => {
      for (const link of links) {
        for (const data of link.held ?? []) link.server.write(data)
        link.held = undefined
      }
    },
    close: () => {
      for (const link of links) link.server.destroy()
      proxy.close()
    },
  }
}
