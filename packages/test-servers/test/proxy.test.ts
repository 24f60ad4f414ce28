import { Socket } from 'node:net'
import { describe, expect, it } from 'vitest'
import { startFaultProxy, startRedis } from '../src/index.js'

/** Sends `payload` and collects what comes back until the socket closes or `until` matches. */
function exchange(port: number, payload: string, until: RegExp, timeoutMs = 1000) {
  return new Promise<{ data: string; closed: boolean }>((resolve, reject) => {
    const socket = new Socket()
    let data = ''
    const timer = setTimeout(() => {
      socket.destroy()
      resolve({ data, closed: false })
    }, timeoutMs)
    socket.on('data', (chunk) => {
      data += chunk
      if (until.test(data)) {
        clearTimeout(timer)
        socket.destroy()
        resolve({ data, closed: false })
      }
    })
    socket.on('close', () => {
      clearTimeout(timer)
      resolve({ data, closed: true })
    })
    socket.on('error', reject)
    socket.connect(port, '127.0.0.1', () => socket.write(payload))
  })
}

describe('fault proxy', () => {
  it('passes traffic, drops a link right after the server answered (with or without the reply), and black-holes', async () => {
    const redis = await startRedis({ spawn: true })
    const proxy = await startFaultProxy({ port: redis.port })
    try {
      expect((await exchange(proxy.port, 'PING\r\n', /PONG/)).data).toBe('+PONG\r\n')

      // The server runs INCR; the client gets the reply and then loses the link.
      const dropped = proxy.dropAfterNextReply()
      const first = await exchange(proxy.port, 'INCR proxy:n\r\n', /never/)
      await dropped
      expect(first.closed).toBe(true)
      expect((await exchange(redis.port, 'GET proxy:n\r\n', /\r\n.*\r\n/)).data).toBe('$1\r\n1\r\n')

      // The server runs INCR again; its reply is thrown away with the link.
      const swallowed = proxy.dropNextReply()
      const second = await exchange(proxy.port, 'INCR proxy:n\r\n', /never/)
      await swallowed
      expect(second).toEqual({ data: '', closed: true })
      expect((await exchange(redis.port, 'GET proxy:n\r\n', /\r\n.*\r\n/)).data).toBe('$1\r\n2\r\n')

      proxy.setMode('blackhole')
      const silent = await exchange(proxy.port, 'PING\r\n', /PONG/, 300)
      expect(silent).toEqual({ data: '', closed: false })
      proxy.setMode('pass')

      await proxy.refuse()
      await expect(exchange(proxy.port, 'PING\r\n', /PONG/)).rejects.toThrow()
      await proxy.listen()
      expect((await exchange(proxy.port, 'PING\r\n', /PONG/)).data).toBe('+PONG\r\n')
    } finally {
      await proxy.close()
      await redis.stop()
    }
  })
})
