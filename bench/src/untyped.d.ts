// The few untyped dependencies, typed as far as the bench uses them.

declare module 'autocannon' {
  namespace autocannon {
    interface Result {
      duration: number
      errors: number
      timeouts: number
      non2xx: number
      requests: { total: number; average: number }
      throughput: { total: number }
      /** Milliseconds. */
      latency: { p50: number; p99: number }
    }
  }
  function autocannon(options: {
    url: string
    connections: number
    duration: number
    pipelining: number
  }): Promise<autocannon.Result>
  export default autocannon
}

declare module 'memjs' {
  interface Client {
    get(key: string): Promise<{ value: Buffer | null; flags: Buffer | null }>
    set(key: string, value: string | Buffer, options: { expires?: number }): Promise<boolean>
    flush(): Promise<unknown>
    close(): void
  }
  const memjs: { Client: { create(servers?: string, options?: { retries?: number }): Client } }
  export default memjs
}

declare module 'cacache' {
  const cacache: {
    get(cache: string, key: string): Promise<{ data: Buffer }>
    put(cache: string, key: string, data: string | Buffer): Promise<string>
  }
  export default cacache
}

declare module 'apicache' {
  const apicache: { middleware(duration: string): (req: any, res: any, next: () => void) => void }
  export default apicache
}
