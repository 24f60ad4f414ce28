import { type ChildProcess, fork } from 'node:child_process'
import { join } from 'node:path'
import { BENCH_DIR } from './load.js'

/** Longest wait for one answer from a child (a prefill of 10 000 slow disk writes included). */
const ANSWER_TIMEOUT_MS = 180_000

/**
 * A child process of the runner with a queue of its IPC messages, so the runner can ask for one
 * answer at a time. An exit without an answer, or a silent child, becomes an `error` message.
 */
export class Child<M extends { type: string }> {
  private readonly queue: (M | { type: 'error'; message: string })[] = []
  private waiting: ((message: M | { type: 'error'; message: string }) => void) | undefined
  readonly process: ChildProcess

  constructor(script: string, args: string[], profile?: string) {
    this.process = fork(join(BENCH_DIR, 'dist', script), args, {
      execArgv: profile
        ? [
            '--cpu-prof',
            '--cpu-prof-dir',
            join(BENCH_DIR, 'profiles'),
            '--cpu-prof-name',
            `${profile}.cpuprofile`,
          ]
        : [],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      // Contestants run as in production: @cache/memory's development-only value check is off.
      env: { ...process.env, NODE_ENV: 'production' },
    })
    this.process.on('message', (message: M) => this.push(message))
    this.process.on('exit', (code, signal) =>
      this.push({ type: 'error', message: `the process exited (${signal ?? code}) without an answer` }),
    )
  }

  /** The next message, waiting up to {@link ANSWER_TIMEOUT_MS}. */
  next(): Promise<M | { type: 'error'; message: string }> {
    const queued = this.queue.shift()
    if (queued) return Promise.resolve(queued)
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiting = undefined
        this.kill()
        resolve({ type: 'error', message: `no answer after ${ANSWER_TIMEOUT_MS / 1000} s` })
      }, ANSWER_TIMEOUT_MS)
      this.waiting = (message) => {
        clearTimeout(timer)
        resolve(message)
      }
    })
  }

  /** Sends `{ type }` and waits for the answer. */
  ask(type: string): Promise<M | { type: 'error'; message: string }> {
    if (this.process.connected) this.process.send({ type })
    return this.next()
  }

  kill(): void {
    if (this.process.exitCode === null && this.process.signalCode === null) this.process.kill('SIGKILL')
  }

  /** Resolves once the process has exited (killing it after `graceMs`). */
  exited(graceMs = 5000): Promise<void> {
    if (this.process.exitCode !== null || this.process.signalCode !== null) return Promise.resolve()
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.kill(), graceMs)
      this.process.once('exit', () => {
        clearTimeout(timer)
        resolve()
      })
    })
  }

  private push(message: M | { type: 'error'; message: string }): void {
    const waiting = this.waiting
    if (waiting) {
      this.waiting = undefined
      waiting(message)
    } else this.queue.push(message)
  }
}
