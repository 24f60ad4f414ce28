import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { CacheConfigError, CacheTimeoutError } from '@cache/core'
import { type MemcachedServer, startFaultProxy, startMemcached } from '@cache/test-servers'
import memjs from 'memjs'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { expiryFor } from '../src/expiry.js'
import { type MemcachedBackend, memcachedBackend } from '../src/index.js'
import { Opcode, request, storeRequest, undoFor } from '../src/protocol.js'
import { serverStat, storedKey } from './raw.js'

/**
 * What a write given up on a frozen server leaves behind once the server resumes and runs what it
 * had read: the write, then whatever was sent after it on the same connection.
 */

let server: MemcachedServer
beforeAll(async () => {
  server = await startMemcached({ spawn: true })
})
afterAll(async () => {
  server.process!.thaw()
  await server.stop()
})

const open: MemcachedBackend[] = []
afterEach(async () => {
  server.process!.thaw()
  await Promise.all(open.splice(0).map((cache) => cache.close()))
})

/**
 * `writer` times out (300 ms) and is not retried during the test (so no generation bump hides what
 * the server did); `reader`, another process, sends nothing while the server is frozen.
 */
function processes(namespace: string): { writer: MemcachedBackend; reader: MemcachedBackend } {
  const writer = memcachedBackend(server.server, {
    namespace,
    timeout: '300ms',
    logger: false,
    eject: { retryAfter: '60s' },
  })
  const reader = memcachedBackend(server.server, { namespace, timeout: '2s', logger: false })
  open.push(writer, reader)
  return { writer, reader }
}

/**
 * Freezes the server while `work` runs, then resumes it and waits until it has read every
 * connection given up meanwhile to its end and closed it: what they carried has been run.
 */
async function frozenDuring<T>(work: () => Promise<T>): Promise<T> {
  const connections = await serverStat(server.port, 'curr_connections')
  await server.process!.freeze()
  let result: T
  try {
    result = await work()
  } finally {
    server.process!.thaw()
  }
  const deadline = Date.now() + 5000
  while ((await serverStat(server.port, 'curr_connections')) >= connections) {
    if (Date.now() > deadline) throw new Error('the given-up connection was never closed')
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return result
}

const failure = (call: Promise<unknown>) =>
  call.then(
    () => undefined,
    (error: unknown) => error,
  )

describe('a write given up on a frozen server', () => {
  it('an add that times out on a key that exists leaves its value, for every other process', async () => {
    const { writer, reader } = processes('add-exists')
    await reader.set('lock', 'held by another process')
    expect(await writer.get('lock')).toBe('held by another process')
    const error = await frozenDuring(() => failure(writer.add('lock', 'mine')))
    expect(error).toBeInstanceOf(CacheTimeoutError)
    expect(await reader.get('lock')).toBe('held by another process')
  })

  it('a set that times out is still undone: no other process reads the value reported failed', async () => {
    const { writer, reader } = processes('set-undone')
    await reader.set('k', 'before')
    expect(await writer.get('k')).toBe('before')
    const error = await frozenDuring(() => failure(writer.set('k', 'reported failed')))
    expect(error).toBeInstanceOf(CacheTimeoutError)
    expect(await reader.get('k')).toBeUndefined()
  })
})

describe('a write given up on a frozen server, through a memjs client passed in', () => {
  it("refuses a client whose own timeout would give the write up first (memjs's end neither undoes nor bumps)", () => {
    for (const timeout of [0.1, 0.3]) {
      const client = memjs.Client.create(server.server, { timeout, logger: { log() {} } })
      try {
        // Before: accepted; its set failed at memjs's 0.3 s and was readable by every process
        // once the server resumed.
        expect(() => memcachedBackend(undefined, { client, timeout: '300ms' })).toThrow(CacheConfigError)
        expect(() => memcachedBackend(undefined, { client, timeout: '300ms' })).toThrow(
          /memjs client's own timeout \(0\.[13] s, for .+\) must be longer than the backend's `timeout` \(300 ms\)/,
        )
      } finally {
        client.close()
      }
    }
  })

  it('with a client that waits longer, a set reported failed is never read by another process', async () => {
    const client = memjs.Client.create(server.server, { timeout: 2, logger: { log() {} } })
    const writer = memcachedBackend(undefined, {
      client,
      namespace: 'passed-client',
      timeout: '300ms',
      logger: false,
      eject: { retryAfter: '60s' },
    })
    const reader = memcachedBackend(server.server, {
      namespace: 'passed-client',
      timeout: '2s',
      logger: false,
    })
    open.push(writer, reader)
    try {
      await reader.set('k', 'before')
      expect(await writer.get('k')).toBe('before')
      const error = await frozenDuring(() => failure(writer.set('k', 'reported failed')))
      expect(error).toBeInstanceOf(CacheTimeoutError)
      expect(await reader.get('k')).not.toBe('reported failed')
    } finally {
      await writer.close()
      client.close()
    }
  })
})

describe('the undo of a write whose outcome is unknown', () => {
  const expiry = expiryFor(undefined, Date.now())
  const value = Buffer.from('v')
  const cas = Buffer.from([0, 0, 0, 0, 0, 0, 0, 7])

  it('removes the key behind an unconditional set (what it replaced is gone either way)', () => {
    for (const opcode of [Opcode.set, Opcode.setq]) {
      const undo = undoFor(storeRequest(opcode, 'ns#1:k', expiry, value))
      expect(undo?.equals(request(Opcode.delete, 'ns#1:k'))).toBe(true)
    }
  })

  it('is nothing for writes that may have changed nothing: add, a write carrying a CAS, delete', () => {
    expect(undoFor(storeRequest(Opcode.add, 'ns#1:k', expiry, value))).toBeUndefined()
    expect(undoFor(storeRequest(Opcode.set, 'ns#1:k', expiry, value, cas))).toBeUndefined()
    expect(undoFor(request(Opcode.delete, 'ns#1:k'))).toBeUndefined()
    expect(undoFor(request(Opcode.delete, 'ns#1:k', undefined, undefined, cas))).toBeUndefined()
  })
})

describe('close() while writes wait on a frozen server', () => {
  it('still undoes them: a write reported failed is never applied when the server resumes', async () => {
    const { writer, reader } = processes('close-frozen')
    await reader.set('k', 'before')
    await reader.setMany([{ key: 'm', value: 'before' }])
    expect(await writer.get('k')).toBe('before')
    const errors = await frozenDuring(async () => {
      const calls = [
        failure(writer.set('k', 'reported failed')),
        failure(writer.setMany([{ key: 'm', value: 'reported failed' }])),
      ]
      // Written, then close() before any answer can come.
      await new Promise((resolve) => setImmediate(resolve))
      await writer.close()
      return Promise.all(calls)
    })
    for (const error of errors) expect(error).toBeInstanceOf(CacheTimeoutError)
    expect(await reader.get('k')).not.toBe('reported failed')
    expect(await reader.get('m')).not.toBe('reported failed')
  })
})

describe('a process whose writes were given up on a server that stays frozen', () => {
  it('exits once its calls have failed and close() resolved, not when the server resumes', async () => {
    // The server stays frozen for 10 s: the given-up connection used to linger up to 60 s for it.
    const { code, output } = await processEndingWhileFrozen(
      'exit-frozen',
      `const error = await cache.set('k', 'reported failed').then(() => 'applied', (e) => e.name)
      await cache.close()
      console.log(error)`,
    )
    expect(code).toBe(0)
    expect(output).toContain('CacheTimeoutError')
  }, 20_000)
})

/**
 * Runs `body` in a fresh Node process once it is connected and the server frozen (the writes of a
 * large `setMany`, or of concurrent sets, fill the socket's buffers, so part of them is still in
 * the process when they are given up); resolves with how it ended, the server still frozen.
 */
async function processEndingWhileFrozen(
  namespace: string,
  body: string,
  waitMs = 10_000,
): Promise<{ code: number | 'still running'; output: string }> {
  const memcached = pathToFileURL(join(__dirname, '../dist/index.js')).href
  const source = `
    const { memcachedBackend } = await import(${JSON.stringify(memcached)})
    const cache = memcachedBackend(${JSON.stringify(server.server)}, { namespace: ${JSON.stringify(namespace)}, timeout: '300ms', logger: false })
    await cache.set('warm', 'x'.repeat(2000))
    console.log('connected')
    await new Promise((resolve) => process.stdin.once('data', resolve))
    process.stdin.destroy()
    const values = Array.from({ length: 10 }, (_, i) => ({ key: 'k' + i, value: 'FAILED-' + i + 'v'.repeat(500_000) }))
    ${body}
  `
  const child = spawn(process.execPath, ['--input-type=module', '-e', source], { stdio: 'pipe' })
  let output = ''
  child.stdout.on('data', (chunk) => (output += chunk))
  child.stderr.on('data', (chunk) => (output += chunk))
  const exited = new Promise<number | 'still running'>((resolve) => {
    const timer = setTimeout(() => resolve('still running'), waitMs)
    child.once('exit', (code) => {
      clearTimeout(timer)
      resolve(code ?? -1)
    })
  })
  try {
    const deadline = Date.now() + 5000
    while (!output.includes('connected') && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 20))
    expect(output).toContain('connected')
    incrsAtFreeze = await incrsRun()
    await server.process!.freeze()
    child.stdin.write('go\n')
    return { code: await exited, output }
  } finally {
    child.kill('SIGKILL')
  }
}

/** The INCRs the server has run (a generation bump is one). */
const incrsRun = async () =>
  (await serverStat(server.port, 'incr_hits')) + (await serverStat(server.port, 'incr_misses'))
let incrsAtFreeze = 0

/**
 * What another process reads of keys k0…k9 once the server resumed and dropped the writer's link:
 * `'miss'`, or the start of the value read.
 */
async function readAfterResume(namespace: string, keys = 10): Promise<string[]> {
  server.process!.thaw()
  const reader = memcachedBackend(server.server, { namespace, timeout: '2s', logger: false })
  open.push(reader)
  // The writer's connection is read to its end (or its reset taken) and closed, and the bump has
  // run: the server may run the late writes before it accepts the bump's connection, a moment the
  // README leaves out ("The moment the server resumes"); a read sent then could see them.
  const deadline = Date.now() + 5000
  while (
    ((await serverStat(server.port, 'curr_connections')) > 2 || (await incrsRun()) <= incrsAtFreeze) &&
    Date.now() < deadline
  )
    await new Promise((resolve) => setTimeout(resolve, 20))
  expect(await incrsRun()).toBeGreaterThan(incrsAtFreeze)
  const read = await reader.getMany(Array.from({ length: keys }, (_, i) => `k${i}`))
  return read.map((value) => (value === undefined ? 'miss' : String(value).slice(0, 10)))
}

describe('a process that ends right after its large writes were given up (server frozen)', () => {
  it('setMany rejected and unhandled: no other process reads a value reported failed', async () => {
    const { code, output } = await processEndingWhileFrozen('end-setmany', 'await cache.setMany(values)')
    expect(output).toContain('CacheTimeoutError')
    expect(code).not.toBe(0)
    expect(await readAfterResume('end-setmany')).toEqual(new Array(10).fill('miss'))
  }, 30_000)

  it('concurrent sets rejected, then process.exit(1): no other process reads a value reported failed', async () => {
    const { code, output } = await processEndingWhileFrozen(
      'end-sets',
      `await Promise.all(values.map(({ key, value }) => cache.set(key, value))).catch((e) => {
        console.log(e.name)
        process.exit(1)
      })`,
    )
    expect(output).toContain('CacheTimeoutError')
    expect(code).toBe(1)
    expect(await readAfterResume('end-sets')).toEqual(new Array(10).fill('miss'))
  }, 30_000)

  it('setMany rejected and caught: the process, left to end by itself, exits though the server stays frozen', async () => {
    // The README's bound: a given-up connection keeps the process alive at most 1 s after the failure.
    const { code, output } = await processEndingWhileFrozen(
      'end-caught',
      `await cache.setMany(values).catch((e) => console.log(e.name))`,
      5000,
    )
    expect(output).toContain('CacheTimeoutError')
    expect(code).toBe(0)
    expect(await readAfterResume('end-caught')).toEqual(new Array(10).fill('miss'))
  }, 30_000)
})

describe('writes given up on a frozen server whose undo never runs (the process ends first)', () => {
  // The undos go out behind the writes on the same connection, but memcached stops reading a
  // connection whose peer is gone at its first answer: the writes run when it resumes, their
  // undos do not. The generation bump, sent on a fresh connection before the calls fail, hides them.
  it('40 concurrent sets of 100 B, then process.exit(): none is readable once the server resumes', async () => {
    const { output } = await processEndingWhileFrozen(
      'exit-small-sets',
      `const settled = await Promise.allSettled(Array.from({ length: 40 }, (_, i) => cache.set('k' + i, 'FAILED-' + 'v'.repeat(93))))
      console.log('rejected', settled.filter((s) => s.status === 'rejected').length)
      process.exit(0)`,
    )
    expect(output).toContain('rejected 40')
    expect(await readAfterResume('exit-small-sets', 40)).toEqual(new Array(40).fill('miss'))
  }, 30_000)

  it('a setMany of 200 × 1 KB, then close() and the end of the script: none is readable once the server resumes', async () => {
    const { code, output } = await processEndingWhileFrozen(
      'close-setmany',
      `const error = await cache.setMany(Array.from({ length: 200 }, (_, i) => ({ key: 'k' + i, value: 'FAILED-' + 'v'.repeat(1017) }))).then(() => 'applied', (e) => e.name)
      await cache.close()
      console.log(error)`,
    )
    expect(code).toBe(0)
    expect(output).toContain('CacheTimeoutError')
    expect(await readAfterResume('close-setmany', 200)).toEqual(new Array(200).fill('miss'))
  }, 30_000)
})

describe('writes given up on a frozen server whose connection is then closed', () => {
  it('are hidden from every backend of the process, also one that trusts its copy of the generation', async () => {
    const namespace = 'reset-late'
    const writer = memcachedBackend(server.server, {
      namespace,
      timeout: '300ms',
      logger: false,
      eject: { retryAfter: '60s' },
    })
    // Same process, same server and namespace: trusts the generation it read for 60 s.
    const sibling = memcachedBackend(server.server, {
      namespace,
      timeout: '2s',
      logger: false,
      generationTtl: '60s',
    })
    const reader = memcachedBackend(server.server, { namespace, timeout: '2s', logger: false })
    open.push(writer, sibling, reader)
    await writer.set('warm', 1)
    expect(await sibling.get('k0')).toBeUndefined()
    const link = (writer.client.servers[0] as unknown as { _socket: import('node:net').Socket })._socket
    const before = await storedKey(server.port, namespace, '')
    await server.process!.freeze()
    const settled = await Promise.allSettled(
      Array.from({ length: 40 }, (_, i) => writer.set(`k${i}`, `FAILED-${i}`)),
    )
    expect(settled.filter((s) => s.status === 'rejected')).toHaveLength(40)
    // The link is closed after the undos were written (as when the process ends): the server
    // answers the first write to a closed socket and stops reading, its undo unread.
    link.destroy()
    server.process!.thaw()
    const keys = Array.from({ length: 40 }, (_, i) => `k${i}`)
    // Once the server has accepted the bump's connection (see the README for that moment).
    const deadline = Date.now() + 5000
    while ((await storedKey(server.port, namespace, '')) === before && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 5))
    const seen: unknown[] = []
    for (let round = 0; round < 6; round++) {
      for (const cache of [reader, sibling])
        seen.push(
          ...(await cache.getMany(keys))
            .filter((v) => v !== undefined)
            .map((v) => `${round} ${cache === reader ? 'reader' : 'sibling'} ${v}`),
        )
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    expect(seen).toEqual([])
  })
})

describe('writes given up when the generation bump cannot be sent', () => {
  it('says so through the error event: the writes may still land when the server resumes', async () => {
    const proxy = await startFaultProxy({ port: server.port })
    const namespace = 'bump-refused'
    const writer = memcachedBackend(`${proxy.host}:${proxy.port}`, {
      namespace,
      timeout: '300ms',
      logger: false,
      eject: { retryAfter: '60s' },
    })
    open.push(writer)
    const errors: Error[] = []
    writer.on('error', (event) => errors.push(event.error as Error))
    try {
      await writer.set('warm', 1)
      await server.process!.freeze()
      const call = failure(writer.set('k', 'reported failed'))
      // The writer's link stays up; a new connection (the bump's) is refused.
      await proxy.refuse()
      expect(await call).toBeInstanceOf(CacheTimeoutError)
      expect(errors.map((error) => error.message)).toContainEqual(
        expect.stringMatching(/bump-refused.*could not be moved on/),
      )
    } finally {
      server.process!.thaw()
      await proxy.close()
    }
  })
})
