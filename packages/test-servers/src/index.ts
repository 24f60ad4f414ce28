/**
 * Real servers for tests and benchmarks: redis-server (single node, cluster) and memcached,
 * each started on a free loopback port and stopped by pid. `REDIS_URL` / `MEMCACHED_SERVERS`
 * point tests at existing servers instead (except tests that must kill a server: they pass
 * `{ spawn: true }`).
 */
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export const HOST = '127.0.0.1'

const children = new Set<ChildProcess>()
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL')
})

/** A port nobody listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.on('error', reject)
    server.listen(0, HOST, () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}

/** The path of a server binary, or an error that says how to install it. */
export function requireBinary(name: 'redis-server' | 'redis-cli' | 'memcached'): string {
  const pkg = name === 'memcached' ? 'memcached' : 'redis-server'
  for (const dir of ['/usr/bin', '/usr/local/bin', '/usr/sbin', '/opt/homebrew/bin']) {
    try {
      execFileSync('test', ['-x', join(dir, name)])
      return join(dir, name)
    } catch {}
  }
  throw new Error(
    `${name} is not installed: run \`apt-get install -y ${pkg}\` (Debian/Ubuntu) or \`brew install ${pkg.replace('-server', '')}\``,
  )
}

/** Resolves once something accepts TCP connections on host:port, or rejects after timeoutMs. */
export async function waitForPort(port: number, host = HOST, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = new Socket()
      socket.once('connect', () => {
        socket.destroy()
        resolve(true)
      })
      socket.once('error', () => resolve(false))
      socket.connect(port, host)
    })
    if (ok) return
    await new Promise((r) => setTimeout(r, 25))
  }
  throw new Error(`nothing listens on ${host}:${port} after ${timeoutMs} ms`)
}

/** A server process the harness controls: it can be killed and started again on the same port. */
export class ManagedServer {
  private child: ChildProcess | undefined
  constructor(
    readonly name: string,
    readonly port: number,
    private readonly command: string,
    private readonly args: string[],
    private readonly cwd: string | undefined,
  ) {}

  get pid(): number | undefined {
    return this.child?.pid
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null
  }

  async start(): Promise<void> {
    if (this.running) return
    const child = spawn(this.command, this.args, { cwd: this.cwd, stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr?.on('data', (chunk) => {
      stderr += chunk
    })
    children.add(child)
    child.once('exit', () => children.delete(child))
    this.child = child
    // A process that cannot bind its port (another harness, running in parallel, took it after
    // freePort() chose it) exits at once: that is a failure to start, even if the other one accepts.
    const exited = new Promise<never>((_, reject) =>
      child.once('exit', (code, signal) => reject(new Error(`exited (${signal ?? code})`))),
    )
    exited.catch(() => {})
    try {
      await Promise.race([waitForPort(this.port), exited])
      if (!this.running) throw new Error('exited')
    } catch (error) {
      child.kill('SIGKILL')
      throw new Error(
        `${this.name} did not start on port ${this.port}: ${stderr || (error as Error).message}`,
      )
    }
  }

  /** Kills the process (default SIGKILL: no graceful shutdown) and waits for it to exit. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child
    if (!child || !this.running) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill(signal)
    await exited
  }

  async stop(): Promise<void> {
    await this.kill('SIGTERM')
  }

  /**
   * SIGSTOP, and resolves once every thread of the process is stopped (the signal takes effect a
   * moment after it is sent: a request sent right after could still be answered).
   */
  async freeze(): Promise<void> {
    const pid = this.pid
    if (pid === undefined || !this.running) throw new Error(`${this.name} is not running`)
    process.kill(pid, 'SIGSTOP')
    const deadline = Date.now() + 2000
    while (!allStopped(pid)) {
      if (Date.now() > deadline) throw new Error(`${this.name} (pid ${pid}) did not stop`)
      await new Promise((r) => setTimeout(r, 2))
    }
  }

  /** SIGCONT: a frozen process runs again. */
  thaw(): void {
    if (this.pid !== undefined && this.running) process.kill(this.pid, 'SIGCONT')
  }
}

/** True when every thread of `pid` is stopped (Linux /proc; elsewhere: assumed after the signal). */
function allStopped(pid: number): boolean {
  let tasks: string[]
  try {
    tasks = readdirSync(`/proc/${pid}/task`)
  } catch {
    return true
  }
  return tasks.every((task) => {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${task}/stat`, 'utf8')
      return /\) [Tt] /.test(stat)
    } catch {
      return true
    }
  })
}

export interface RedisServer {
  readonly url: string
  readonly host: string
  readonly port: number
  /** The process, when the harness started it (undefined for an external `REDIS_URL`). */
  readonly process?: ManagedServer
  /** With `tls: true`: the self-signed certificate (PEM) the server presents; pass `{ ca }` to clients. */
  readonly tls?: TlsFiles
  stop(): Promise<void>
}

/** PEM texts of a self-signed certificate for 127.0.0.1, and where they were written. */
export interface TlsFiles {
  ca: string
  cert: string
  key: string
  certFile: string
  keyFile: string
}

/** Writes a self-signed certificate for 127.0.0.1 and localhost into `dir` with `openssl`. */
export function selfSignedCertificate(dir: string): TlsFiles {
  const certFile = join(dir, 'cert.pem')
  const keyFile = join(dir, 'key.pem')
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      keyFile,
      '-out',
      certFile,
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1,DNS:localhost',
    ],
    { stdio: 'pipe' },
  )
  const cert = readFileSync(certFile, 'utf8')
  return { ca: cert, cert, key: readFileSync(keyFile, 'utf8'), certFile, keyFile }
}

export interface RedisOptions {
  /** Start a server even when `REDIS_URL` is set (tests that kill the server). */
  spawn?: boolean
  /** `requirepass`. */
  password?: string
  /** More `redis-server` arguments, e.g. `['--maxmemory', '10mb']`. */
  args?: string[]
  /** Listen on this port instead of a free one (e.g. a port a client already tries to reach). */
  port?: number
  /** Serve TLS only (`--tls-port`) with a fresh self-signed certificate; the URL is `rediss://`. */
  tls?: boolean
}

/** Starts a redis-server on a free loopback port with no persistence. */
export async function startRedis(options: RedisOptions = {}): Promise<RedisServer> {
  if (!options.spawn && process.env.REDIS_URL && !options.password && !options.tls) {
    const url = new URL(process.env.REDIS_URL)
    return {
      url: process.env.REDIS_URL,
      host: url.hostname,
      port: Number(url.port || 6379),
      stop: async () => {},
    }
  }
  const port = options.port ?? (await freePort())
  const dir = mkdtempSync(join(tmpdir(), 'cache-redis-'))
  const tls = options.tls ? selfSignedCertificate(dir) : undefined
  const listen = tls
    ? [
        '--port',
        '0',
        '--tls-port',
        String(port),
        '--tls-cert-file',
        tls.certFile,
        '--tls-key-file',
        tls.keyFile,
        '--tls-ca-cert-file',
        tls.certFile,
        '--tls-auth-clients',
        'no',
      ]
    : ['--port', String(port)]
  const args = [
    ...listen,
    '--bind',
    HOST,
    '--save',
    '',
    '--appendonly',
    'no',
    '--dir',
    dir,
    ...(options.password ? ['--requirepass', options.password] : []),
    ...(options.args ?? []),
  ]
  const server = new ManagedServer('redis-server', port, requireBinary('redis-server'), args, dir)
  await server.start()
  const auth = options.password ? `:${encodeURIComponent(options.password)}@` : ''
  return {
    url: `${tls ? 'rediss' : 'redis'}://${auth}${HOST}:${port}`,
    host: HOST,
    port,
    process: server,
    ...(tls ? { tls } : {}),
    async stop() {
      await server.stop()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

export interface RedisCluster {
  /** Every node, masters first as `redis-cli --cluster create` assigned them (roles change on failover). */
  readonly nodes: { host: string; port: number }[]
  /** The process of each node, in the order of {@link RedisCluster.nodes}. */
  readonly processes: ManagedServer[]
  /** The masters now and their replicas, by port, as CLUSTER NODES on a running node says (failed nodes left out). */
  shards(): ClusterShard[]
  /** Resolves once the node on `port` is a master and every running node says `cluster_state:ok`. */
  failedOver(port: number, timeoutMs?: number): Promise<void>
  /** Resolves once a running node says `cluster_state:fail` (CLUSTERDOWN). */
  down(timeoutMs?: number): Promise<void>
  /** The process listening on `port`. */
  processOn(port: number): ManagedServer
  /**
   * Starts one more node and joins it as a master that serves no slot yet (`redis-cli --cluster
   * add-node`), as a scale-out begins; resolves once every node knows it. Appended to
   * {@link RedisCluster.nodes} and stopped with the cluster.
   */
  addMaster(): Promise<{ host: string; port: number }>
  stop(): Promise<void>
}

/** A master of a cluster and its replicas, by port. */
export interface ClusterShard {
  master: number
  replicas: number[]
}

export interface RedisClusterOptions {
  /** Replicas per master (`--cluster-replicas`). Default: 0. */
  replicas?: number
  /** `cluster-node-timeout` in ms: how long a silent node takes to be marked failed. Default: 2000. */
  nodeTimeout?: number
}

/**
 * Builds a Redis Cluster of `masters` nodes, each with `replicas` replicas, on loopback with
 * `redis-cli --cluster create`. Resolves once every node reports `cluster_state:ok` and every
 * replica has synced with its master.
 */
export async function startRedisCluster(
  masters = 3,
  options: RedisClusterOptions = {},
): Promise<RedisCluster> {
  // A node whose port another harness took in the meantime (freePort() only says the port was
  // free) fails the whole creation: it is made again on fresh ports, twice at most.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startRedisClusterOnce(masters, options)
    } catch (error) {
      if (attempt >= 3) throw error
    }
  }
}

async function startRedisClusterOnce(masters: number, options: RedisClusterOptions): Promise<RedisCluster> {
  const { replicas = 0, nodeTimeout = 2000 } = options
  const redisServer = requireBinary('redis-server')
  const redisCli = requireBinary('redis-cli')
  const root = mkdtempSync(join(tmpdir(), 'cache-cluster-'))
  const processes: ManagedServer[] = []
  const nodes: { host: string; port: number }[] = []
  const newNode = async () => {
    const port = await freePort()
    const dir = join(root, String(port))
    execFileSync('mkdir', ['-p', dir])
    const node = new ManagedServer(
      'redis-server (cluster)',
      port,
      redisServer,
      [
        '--port',
        String(port),
        '--bind',
        HOST,
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        'nodes.conf',
        '--cluster-node-timeout',
        String(nodeTimeout),
        // A replica syncs at once, not after the default 5 s wait for more replicas.
        '--repl-diskless-sync-delay',
        '0',
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        dir,
      ],
      dir,
    )
    processes.push(node)
    nodes.push({ host: HOST, port })
    return node
  }
  for (let i = 0; i < masters * (1 + replicas); i++) await newNode()
  const stop = async () => {
    await Promise.all(processes.map((p) => p.stop()))
    rmSync(root, { recursive: true, force: true })
  }
  try {
    await Promise.all(processes.map((p) => p.start()))
    execFileSync(
      redisCli,
      [
        '--cluster',
        'create',
        ...nodes.map((n) => `${n.host}:${n.port}`),
        '--cluster-replicas',
        String(replicas),
        '--cluster-yes',
      ],
      { stdio: 'pipe' },
    )
    // Wait until every node agrees the cluster is up and every replica has its master's data.
    const deadline = Date.now() + 20_000
    const info = (node: { host: string; port: number }, ...command: string[]) =>
      execFileSync(redisCli, ['-h', node.host, '-p', String(node.port), ...command]).toString()
    const synced = (replication: string) =>
      !replication.includes('role:slave') || replication.includes('master_link_status:up')
    // Every node knows each master's replicas (gossip carries them a little after the create):
    // `shards()` reads one node's view, and a test picks a replica from it.
    const knowsReplicas = (clusterNodes: string) => {
      const lines = clusterNodes
        .trim()
        .split('\n')
        .map((line) => line.split(' '))
      const masters = lines.filter((fields) => fields[2]!.split(',').includes('master'))
      return masters.every((master) => lines.filter((fields) => fields[3] === master[0]).length >= replicas)
    }
    for (const node of nodes) {
      while (
        !info(node, 'cluster', 'info').includes('cluster_state:ok') ||
        !synced(info(node, 'info', 'replication')) ||
        !knowsReplicas(info(node, 'cluster', 'nodes'))
      ) {
        if (Date.now() > deadline) throw new Error('redis cluster did not reach cluster_state:ok')
        await new Promise((r) => setTimeout(r, 100))
      }
    }
  } catch (error) {
    await stop()
    throw error
  }
  const cli = (port: number, ...command: string[]) =>
    execFileSync(redisCli, ['-h', HOST, '-p', String(port), ...command], { stdio: 'pipe' }).toString()
  const live = () => {
    const running = processes.find((p) => p.running)
    if (!running) throw new Error('no cluster node is running')
    return running.port
  }
  // Asynchronous: the process polling is often the one under test, whose event loop must not stall.
  const cliAsync = (port: number, ...command: string[]) =>
    new Promise<string>((resolve) =>
      execFile(redisCli, ['-h', HOST, '-p', String(port), ...command], (error, stdout) =>
        resolve(error ? '' : stdout.toString()),
      ),
    )
  const poll = async (done: () => Promise<boolean>, timeoutMs: number, what: string) => {
    const deadline = Date.now() + timeoutMs
    while (!(await done())) {
      if (Date.now() > deadline) throw new Error(`${what} within ${timeoutMs} ms`)
      await new Promise((r) => setTimeout(r, 20))
    }
  }
  return {
    nodes,
    processes,
    shards() {
      const known = cli(live(), 'cluster', 'nodes')
        .trim()
        .split('\n')
        .map((line) => {
          const [id, address, flags, masterId] = line.split(' ')
          const port = Number(address!.split('@')[0]!.split(':').pop())
          return { id: id!, port, flags: flags!.split(','), masterId: masterId! }
        })
        .filter((node) => !node.flags.includes('fail'))
      return known
        .filter((node) => node.flags.includes('master'))
        .map((master) => ({
          master: master.port,
          replicas: known.filter((node) => node.masterId === master.id).map((node) => node.port),
        }))
    },
    failedOver: (port, timeoutMs = 20_000) =>
      poll(
        async () => {
          if (!(await cliAsync(port, 'role')).startsWith('master')) return false
          const states = await Promise.all(
            processes.filter((p) => p.running).map((p) => cliAsync(p.port, 'cluster', 'info')),
          )
          return states.every((info) => info.includes('cluster_state:ok'))
        },
        timeoutMs,
        `${port} did not take over`,
      ),
    down: (timeoutMs = 20_000) =>
      poll(
        async () => (await cliAsync(live(), 'cluster', 'info')).includes('cluster_state:fail'),
        timeoutMs,
        'the cluster did not go down',
      ),
    processOn(port) {
      const process = processes.find((p) => p.port === port)
      if (!process) throw new Error(`no cluster node on port ${port}`)
      return process
    },
    async addMaster() {
      const node = await newNode()
      await node.start()
      const seed = live()
      await new Promise<void>((resolve, reject) =>
        execFile(
          redisCli,
          ['--cluster', 'add-node', `${HOST}:${node.port}`, `${HOST}:${seed}`],
          (error, _stdout, stderr) => (error ? reject(new Error(`add-node failed: ${stderr}`)) : resolve()),
        ),
      )
      const others = processes.filter((p) => p.running && p !== node)
      await poll(
        async () => {
          const views = await Promise.all(others.map((p) => cliAsync(p.port, 'cluster', 'nodes')))
          const known = views.every((view) => view.includes(`:${node.port}@`))
          return known && (await cliAsync(node.port, 'cluster', 'info')).includes('cluster_state:ok')
        },
        20_000,
        `the new node ${node.port} did not join`,
      )
      return { host: HOST, port: node.port }
    },
    stop,
  }
}

export interface RedisSentinel {
  /** `redis+sentinel://127.0.0.1:port/name`. */
  readonly url: string
  readonly port: number
  /** The master name the sentinel monitors. */
  readonly name: string
  readonly process: ManagedServer
  stop(): Promise<void>
}

/**
 * Starts one `redis-server --sentinel` on a free loopback port that monitors `master` under
 * `name` (quorum 1). Sentinel rewrites its config file, so it gets a private directory.
 */
export async function startRedisSentinel(
  master: { host: string; port: number },
  name = 'mymaster',
): Promise<RedisSentinel> {
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'cache-sentinel-'))
  const config = join(dir, 'sentinel.conf')
  writeFileSync(
    config,
    [
      `port ${port}`,
      `bind ${HOST}`,
      `dir ${dir}`,
      `sentinel monitor ${name} ${master.host} ${master.port} 1`,
      `sentinel down-after-milliseconds ${name} 1000`,
      '',
    ].join('\n'),
  )
  const server = new ManagedServer(
    'redis-sentinel',
    port,
    requireBinary('redis-server'),
    [config, '--sentinel'],
    dir,
  )
  await server.start()
  return {
    url: `redis+sentinel://${HOST}:${port}/${name}`,
    port,
    name,
    process: server,
    async stop() {
      await server.stop()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

export interface MemcachedServer {
  /** `host:port`. */
  readonly server: string
  readonly port: number
  readonly process?: ManagedServer
  stop(): Promise<void>
}

export interface MemcachedOptions {
  /** Start a server even when `MEMCACHED_SERVERS` is set. */
  spawn?: boolean
  /** Item size limit, e.g. `'1m'` (memcached's default). */
  maxItemSize?: string
  /** Memory in MB. Default: 64. */
  memoryMb?: number
  /** Start with CAS turned off (`-C`): every item's CAS version is 0. */
  noCas?: boolean
  /** Listen on this port (e.g. to restart a server with other options). Default: a free port. */
  port?: number
}

/** Starts memcached on a free loopback port. */
export async function startMemcached(options: MemcachedOptions = {}): Promise<MemcachedServer> {
  if (!options.spawn && process.env.MEMCACHED_SERVERS) {
    const server = process.env.MEMCACHED_SERVERS.split(',')[0]!.trim()
    return { server, port: Number(server.split(':').pop()), stop: async () => {} }
  }
  const port = options.port ?? (await freePort())
  const args = [
    '-l',
    HOST,
    '-p',
    String(port),
    '-U',
    '0',
    '-m',
    String(options.memoryMb ?? 64),
    ...(options.maxItemSize ? ['-I', options.maxItemSize] : []),
    ...(options.noCas ? ['-C'] : []),
  ]
  if (process.getuid?.() === 0) args.push('-u', 'root')
  const server = new ManagedServer('memcached', port, requireBinary('memcached'), args, undefined)
  await server.start()
  return { server: `${HOST}:${port}`, port, process: server, stop: () => server.stop() }
}
export { type NodeScriptOutcome, runNodeScript } from './node-script.js'
export { type FaultProxy, type ProxyMode, startFaultProxy } from './proxy.js'
export {
  type RedisSentinelGroup,
  type RedisSentinelGroupOptions,
  startRedisSentinelGroup,
} from './sentinels.js'
export { recorder, until } from './waiting.js'
