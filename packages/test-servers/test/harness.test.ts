import { Socket } from 'node:net'
import { describe, expect, it } from 'vitest'
import { startMemcached, startRedis } from '../src/index.js'

function roundTrip(port: number, payload: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = new Socket()
    let data = ''
    socket.on('data', (chunk) => {
      data += chunk
      if (data.includes('\r\n')) {
        socket.destroy()
        resolve(data)
      }
    })
    socket.on('error', reject)
    socket.connect(port, '127.0.0.1', () => socket.write(payload))
  })
}

describe('test servers', () => {
  it('starts redis-server on a free port, restarts it after a kill, and stops it', async () => {
    const redis = await startRedis({ spawn: true })
    try {
      expect(await roundTrip(redis.port, 'PING\r\n')).toBe('+PONG\r\n')
      await redis.process!.kill()
      await expect(roundTrip(redis.port, 'PING\r\n')).rejects.toThrow()
      await redis.process!.start()
      expect(await roundTrip(redis.port, 'PING\r\n')).toBe('+PONG\r\n')
    } finally {
      await redis.stop()
    }
    await expect(roundTrip(redis.port, 'PING\r\n')).rejects.toThrow()
  })

  it('starts memcached on a free port', async () => {
    const memcached = await startMemcached({ spawn: true })
    try {
      expect(await roundTrip(memcached.port, 'version\r\n')).toMatch(/^VERSION /)
    } finally {
      await memcached.stop()
    }
  })
})
