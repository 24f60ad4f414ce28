/**
 * A Sentinel deployment on loopback: one master, its replicas and several sentinels that agree by
 * quorum, as production runs it (a single sentinel with quorum 1 cannot show a real failover).
 */
import { execFile, execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort, HOST, ManagedServer, type RedisServer, requireBinary, startRedis } from './index.js'

export interface RedisSentinelGroupOptions {
  /** The master name the sentinels monitor. Default: `'mymaster'`. */
  name?: string
  /** Replicas of the master. Default: 1. */
  replicas?: number
  /** Sentinel processes. Default: 3. */
  sentinels?: number
  /** Sentinels that must agree the master is down before a failover. Default: 2. */
  quorum?: number
  /** More `redis-server` arguments for the master and the replicas, e.g. `['--min-replicas-to-write', '1']`. */
  args?: string[]
}

export interface RedisSentinelGroup {
  /** `redis+sentinel://127.0.0.1:p1,127.0.0.1:p2,…/name`. */
  readonly url: string
  readonly name: string
  /** The master at start (roles change on failover: ask the sentinels who leads now). */
  readonly master: RedisServer
  readonly replicas: RedisServer[]
  readonly sentinels: ManagedServer[]
  /** `SENTINEL <args…>` on the first running sentinel, as redis-cli prints it. */
  sentinel(...args: string[]): Promise<string>
  /** The address the sentinels give for the master now. */
  currentMaster(): Promise<{ host: string; port: number }>
  stop(): Promise<void>
}

/**
 * Starts a master, `replicas` replicas synced to it and `sentinels` sentinels (quorum `quorum`,
 * `down-after-milliseconds` 1000) that all know each other and every replica, so that both a
 * forced `SENTINEL FAILOVER` and a failover after a crash can run at once.
 */
export async function startRedisSentinelGroup(
  options: RedisSentinelGroupOptions = {},
): Promise<RedisSentinelGroup> {
  const { name = 'mymaster', replicas: replicaCount = 1, sentinels: sentinelCount = 3, quorum = 2 } = options
  // A replica syncs at once, not after the default 5 s wait for more replicas.
  const args = ['--repl-diskless-sync-delay', '0', ...(options.args ?? [])]
  const redisCli = requireBinary('redis-cli')
  const cli = (port: number, ...command: string[]) =>
    execFileSync(redisCli, ['-h', HOST, '-p', String(port), ...command], { stdio: 'pipe' }).toString()
  const cliAsync = (port: number, ...command: string[]) =>
    new Promise<string>((resolve, reject) =>
      execFile(redisCli, ['-h', HOST, '-p', String(port), ...command], (error, stdout) =>
        error ? reject(error) : resolve(stdout.toString()),
      ),
    )

  const started: { stop(): Promise<void> }[] = []
  const dirs: string[] = []
  const stop = async () => {
    await Promise.all(started.map((s) => s.stop()))
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
  }
  try {
    const master = await startRedis({ spawn: true, args })
    started.push(master)
    const replicas = await Promise.all(
      Array.from({ length: replicaCount }, () =>
        startRedis({ spawn: true, args: [...args, '--replicaof', HOST, String(master.port)] }),
      ),
    )
    started.push(...replicas)
    await until(() =>
      replicas.every((r) => cli(r.port, 'info', 'replication').includes('master_link_status:up')),
    )

    const sentinels = await Promise.all(
      Array.from({ length: sentinelCount }, async () => {
        const port = await freePort()
        const dir = mkdtempSync(join(tmpdir(), 'cache-sentinel-'))
        dirs.push(dir)
        const config = join(dir, 'sentinel.conf')
        writeFileSync(
          config,
          [
            `port ${port}`,
            `bind ${HOST}`,
            `dir ${dir}`,
            `sentinel monitor ${name} ${HOST} ${master.port} ${quorum}`,
            `sentinel down-after-milliseconds ${name} 1000`,
            `sentinel failover-timeout ${name} 5000`,
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
        started.push(server)
        await server.start()
        return server
      }),
    )
    // Sentinels find replicas through the master's INFO and each other through hello messages
    // (every 2 s): a failover asked for earlier would find no replica or no peers.
    await until(() =>
      sentinels.every((s) => {
        const fields = pairs(cli(s.port, 'sentinel', 'master', name))
        return (
          Number(fields['num-slaves']) === replicaCount &&
          Number(fields['num-other-sentinels']) === sentinelCount - 1
        )
      }),
    )
    const running = () => {
      const sentinel = sentinels.find((s) => s.running)
      if (!sentinel) throw new Error('no sentinel is running')
      return sentinel
    }
    return {
      url: `redis+sentinel://${sentinels.map((s) => `${HOST}:${s.port}`).join(',')}/${name}`,
      name,
      master,
      replicas,
      sentinels,
      // Asynchronous: the caller is often the process under test, whose event loop must not stall.
      sentinel: (...command: string[]) => cliAsync(running().port, 'sentinel', ...command),
      async currentMaster() {
        const reply = await cliAsync(running().port, 'sentinel', 'get-master-addr-by-name', name)
        const [host, port] = reply.trim().split('\n')
        return { host: host!, port: Number(port) }
      },
      stop,
    }
  } catch (error) {
    await stop()
    throw error
  }
}

/** redis-cli prints a flat reply one item a line: field, value, field, value… */
function pairs(output: string): Record<string, string> {
  const lines = output.trim().split('\n')
  const fields: Record<string, string> = {}
  for (let i = 0; i + 1 < lines.length; i += 2) fields[lines[i]!] = lines[i + 1]!
  return fields
}

async function until(condition: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('the sentinel group did not settle')
    await new Promise((r) => setTimeout(r, 100))
  }
}
