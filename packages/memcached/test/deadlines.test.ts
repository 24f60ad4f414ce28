import type memjs from 'memjs'
import { describe, expect, it } from 'vitest'
import { LinkFailure, Opcode, type Response, request, send } from '../src/protocol.js'

/**
 * A stand-in for one memjs server connection, answering only when told to: it supplements the
 * real-server timeout tests (failure.test.ts) with an order of events a real server cannot be
 * made to produce on cue — the answer to an earlier write arriving after a later write went out
 * and while it is still unanswered.
 */
function connection() {
  const responses: Record<number, (response: unknown) => void> = {}
  const errors: Record<number, (error: unknown) => void> = {}
  const server = {
    host: '127.0.0.1',
    port: 1,
    connected: true,
    timeoutSet: false,
    _socket: undefined,
    responseCallbacks: responses,
    onResponse: (seq: number, fn: (response: unknown) => void) => {
      responses[seq] = fn
    },
    onError: (seq: number, fn: (error: unknown) => void) => {
      errors[seq] = fn
    },
    write: (blob: Buffer) => written.push(blob),
    error: (error: unknown) => {
      for (const seq of Object.keys(errors)) errors[Number(seq)]!(error)
    },
  }
  const written: Buffer[] = []
  const answer = (seq: number) => {
    const fn = responses[seq]!
    delete responses[seq]
    delete errors[seq]
    fn({ header: { status: 0, cas: Buffer.alloc(8) }, extras: Buffer.alloc(0), val: Buffer.from('v') })
  }
  const client = { seq: 0, servers: [server] } as unknown as memjs.Client
  return { client, written, answer }
}

describe('request deadlines', () => {
  it('a write still waiting keeps its deadline when an earlier write is answered', async () => {
    const { client, written, answer } = connection()
    const first = send(client, 0, request(Opcode.get, 'a'), 100, false)
    await new Promise((resolve) => setImmediate(resolve)) // the first write went out alone
    const second = send(client, 0, request(Opcode.get, 'b'), 100, false)
    await new Promise((resolve) => setImmediate(resolve))
    expect(written).toHaveLength(2)
    answer(written[0]!.readUInt32BE(12))
    const answered: Response = await first
    expect(answered.value.toString()).toBe('v')
    const start = performance.now()
    const failure = await second.then(
      () => undefined,
      (error: unknown) => error,
    )
    expect(failure).toBeInstanceOf(LinkFailure)
    expect((failure as LinkFailure).timedOut).toBe(true)
    expect(performance.now() - start).toBeLessThan(1000)
  })

  it('answered writes are not kept until the timer fires, and a later write still times out', async () => {
    const { client, written, answer } = connection()
    for (let i = 0; i < 50; i++) {
      const pending = send(client, 0, request(Opcode.get, `k${i}`), 100, false)
      await new Promise((resolve) => setImmediate(resolve))
      answer(written.at(-1)!.readUInt32BE(12))
      await pending
    }
    const start = performance.now()
    const failure = await send(client, 0, request(Opcode.get, 'late'), 100, false).then(
      () => undefined,
      (error: unknown) => error,
    )
    expect(failure).toBeInstanceOf(LinkFailure)
    expect(performance.now() - start).toBeLessThan(1000)
  })
})
