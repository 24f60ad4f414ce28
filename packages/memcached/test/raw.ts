import { Socket } from 'node:net'

/** Sends one ASCII-protocol command to a real memcached and resolves with its reply. */
export function ascii(port: number, command: string, until = /\r\n$/): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = new Socket()
    let data = ''
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`no reply to ${command}`))
    }, 2000)
    socket.on('data', (chunk) => {
      data += chunk
      if (until.test(data)) {
        clearTimeout(timer)
        socket.destroy()
        resolve(data)
      }
    })
    socket.on('error', (error) => {
      clearTimeout(timer)
      reject(error)
    })
    socket.connect(port, '127.0.0.1', () => socket.write(`${command}\r\n`))
  })
}

/** Remaining server-side TTL of a key in seconds (-1: none), or undefined if absent. */
export async function serverTtl(port: number, key: string): Promise<number | undefined> {
  const reply = await ascii(port, `mg ${key} t`)
  if (reply.startsWith('EN')) return undefined
  const match = /\bt(-?\d+)/.exec(reply)
  if (!match) throw new Error(`unexpected reply ${reply}`)
  return Number(match[1])
}

/** Every key a server holds (memcached's `lru_crawler metadump`). */
export async function serverKeys(port: number): Promise<string[]> {
  const reply = await ascii(port, 'lru_crawler metadump all', /END\r\n$/)
  return reply
    .split(/\r?\n/)
    .filter((line) => line.startsWith('key='))
    .map((line) => decodeURIComponent(line.slice(4).split(' ')[0]!))
}

/**
 * The memcached key a user key of a namespace is stored under on this server (`<ns>#<gen>:<key>`,
 * for a short plain key), read from the generation counter rather than from a listing: a listing
 * (`lru_crawler metadump`) leaves out items memcached already counts as expired.
 */
export async function storedKey(port: number, namespace: string, key: string): Promise<string> {
  const reply = await ascii(port, `mg ${namespace}#g v`)
  const match = /^VA \d+[^\r]*\r\n(\d+)\r\n/.exec(reply)
  if (!match) throw new Error(`no generation for ${namespace}: ${reply}`)
  return `${namespace}#${BigInt(match[1]!).toString(36)}:${key}`
}

/** One of a server's `stats` figures (e.g. `curr_connections`), as a number. */
export async function serverStat(port: number, name: string): Promise<number> {
  const reply = await ascii(port, 'stats', /END\r\n$/)
  const match = new RegExp(`^STAT ${name} (\\d+)\\r?$`, 'm').exec(reply)
  if (!match) throw new Error(`no stat ${name}`)
  return Number(match[1])
}
