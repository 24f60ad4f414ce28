// The part of autocannon's API this suite uses (the package ships no types).
declare module 'autocannon' {
  import type { EventEmitter } from 'node:events'

  namespace autocannon {
    interface Options {
      url: string
      connections?: number
      duration?: number
      overallRate?: number
      maxOverallRequests?: number
      timeout?: number
      requests?: Record<string, unknown>[]
    }
    interface Result {
      requests: { sent: number; total: number }
      non2xx: number
      errors: number
      timeouts: number
    }
    type Instance = EventEmitter & PromiseLike<Result>
  }
  function autocannon(options: autocannon.Options): autocannon.Instance
  export default autocannon
}
