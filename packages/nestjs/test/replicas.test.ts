/**
 * Replicas of one app in several processes share entries: what places an entry (the decorators'
 * metadata) holds nothing that differs between processes, such as the random class name of a
 * guard made with Nest's `mixin()` or the random id of a `createParamDecorator` parameter. Runs
 * the built package (`dist`) in two processes, one after the other, on one port and one SQLite file.
 */
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, describe, expect, it } from 'vitest'

const dist = pathToFileURL(join(__dirname, '../dist/index.js')).href
const dir = mkdtempSync(join(tmpdir(), 'cache-nestjs-replicas-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const script = `
  import 'reflect-metadata'
  import { Controller, Get, Module, UseGuards, createParamDecorator, mixin } from '@nestjs/common'
  import { NestFactory } from '@nestjs/core'
  import { diskBackend } from '@cache/disk'
  import { CacheModule, CacheResponse } from '${dist}'

  const Who = createParamDecorator((_data, ctx) => ctx.switchToHttp().getRequest().headers['x-who'] ?? 'anyone')
  function AllowGuard(kind) {
    class Guard { canActivate() { return kind === 'all' } }
    return mixin(Guard)
  }
  class ItemsController {
    find(who) { return { pid: process.pid, who } }
  }
  const descriptor = Object.getOwnPropertyDescriptor(ItemsController.prototype, 'find')
  Who()(ItemsController.prototype, 'find', 0)
  Get()(ItemsController.prototype, 'find', descriptor)
  CacheResponse({ ttl: 60 })(ItemsController.prototype, 'find', descriptor)
  UseGuards(AllowGuard('all'))(ItemsController)
  Controller('items')(ItemsController)
  class AppModule {}
  Module({
    imports: [CacheModule.forRoot({ backend: diskBackend({ path: process.env.DB }), isGlobal: true })],
    controllers: [ItemsController],
  })(AppModule)
  const app = await NestFactory.create(AppModule, { logger: false })
  await app.listen(Number(process.env.PORT), '127.0.0.1')
  const reply = await fetch('http://127.0.0.1:' + process.env.PORT + '/items')
  console.log(JSON.stringify({ body: await reply.json(), status: reply.headers.get('cache-status') }))
  await app.close()
`

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  await new Promise((resolve) => server.close(resolve))
  return port
}

describe('two processes of one Nest app', () => {
  it('share an entry, with a mixin() guard and a custom parameter decorator on the handler', async () => {
    const port = await freePort()
    const env = { ...process.env, PORT: String(port), DB: join(dir, 'cache.db') }
    const run = async () => {
      const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], {
        cwd: join(__dirname, '..'),
        env,
        timeout: 20_000,
      })
      return JSON.parse(stdout.trim().split('\n').at(-1)!) as { body: { pid: number }; status: string }
    }
    const first = await run()
    const second = await run()
    expect(first.status).toMatch(/stored/)
    expect(second.status).toMatch(/hit/)
    expect(second.body.pid).toBe(first.body.pid)
  })
})
