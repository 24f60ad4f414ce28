/**
 * `@CacheResponse` on real Nest 11 apps, on both platforms, over real HTTP: where it runs among
 * guards and pipes, what identifies a handler, value-returning and `@Res()` handlers.
 */
import 'reflect-metadata'
import {
  type CanActivate,
  Controller,
  type ExecutionContext,
  Get,
  Header,
  Injectable,
  type INestApplication,
  Module,
  Param,
  ParseIntPipe,
  Res,
  UseGuards,
  VersioningType,
} from '@nestjs/common'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CacheModule, CacheResponse } from '../src/index.js'
import { PLATFORMS, send, startApp } from './harness.js'

/** Counts handler runs per route, so a replay from the cache is visible. */
@Injectable()
class Runs {
  readonly counts = new Map<string, number>()
  next(route: string): number {
    const n = (this.counts.get(route) ?? 0) + 1
    this.counts.set(route, n)
    return n
  }
}

@Injectable()
class AdminGuard implements CanActivate {
  constructor(private readonly runs: Runs) {}
  canActivate(context: ExecutionContext): boolean {
    this.runs.next('guard')
    return context.switchToHttp().getRequest().headers['x-role'] === 'admin'
  }
}

@Controller('reports')
@UseGuards(AdminGuard)
class ReportsController {
  constructor(private readonly runs: Runs) {}

  @Get()
  @CacheResponse({ ttl: 60 })
  list() {
    return { secret: 'admin report', run: this.runs.next('reports') }
  }
}

@Controller('items')
class ItemsController {
  constructor(private readonly runs: Runs) {}

  @Get(':id')
  @CacheResponse(60)
  find(@Param('id', ParseIntPipe) id: number) {
    return { id, run: this.runs.next('items') }
  }
}

// Two controllers answering the same URL: Nest picks one by the X-API-Version header.
@Controller({ path: 'catalog', version: '1' })
class CatalogV1Controller {
  constructor(private readonly runs: Runs) {}
  @Get()
  @CacheResponse(60)
  list() {
    return { version: 1, run: this.runs.next('v1') }
  }
}

@Controller({ path: 'catalog', version: '2' })
class CatalogV2Controller {
  constructor(private readonly runs: Runs) {}
  @Get()
  @CacheResponse(60)
  list() {
    return { version: 2, run: this.runs.next('v2') }
  }
}

@Controller('raw')
@CacheResponse({ ttl: 60, statusHeader: 'x-cache' })
class RawController {
  constructor(private readonly runs: Runs) {}

  @Get('passthrough')
  passthrough(@Res({ passthrough: true }) res: { header(name: string, value: string): unknown }) {
    res.header('x-from', 'handler')
    return { run: this.runs.next('passthrough') }
  }

  @Get('manual')
  manual(
    @Res() res: {
      header(n: string, v: string): unknown
      status(code: number): unknown
      send(body: string): unknown
    },
  ) {
    res.header('content-type', 'application/json; charset=utf-8')
    res.status(200)
    res.send(JSON.stringify({ run: this.runs.next('manual') }))
  }

  @Get('header')
  @Header('x-static', 'yes')
  @CacheResponse({ ttl: 60, keyPrefix: 'method-level' })
  withHeader() {
    return `run ${this.runs.next('header')}`
  }
}

@Module({
  imports: [CacheModule.forRoot({ backend: 'memory', isGlobal: true })],
  controllers: [ReportsController, ItemsController, CatalogV1Controller, CatalogV2Controller, RawController],
  providers: [Runs],
})
class AppModule {}

describe.each(PLATFORMS)('@CacheResponse on Nest 11 (platform-%s)', (platform) => {
  let app: INestApplication
  let url: string
  let runs: Runs
  beforeAll(async () => {
    ;({ app, url } = await startApp(platform, AppModule, (nest) => {
      nest.enableVersioning({ type: VersioningType.HEADER, header: 'x-api-version' })
    }))
    runs = app.get(Runs)
  })
  afterAll(async () => {
    await app?.close()
  })
  const ran = (route: string) => runs.counts.get(route) ?? 0
  const get = (path: string, headers: Record<string, string> = {}) => send(url, path, { headers })

  it('a guard denies an anonymous request after an admin filled the cache', async () => {
    const admin = await get('/reports', { 'x-role': 'admin' })
    expect(admin.status).toBe(200)
    expect(JSON.parse(admin.text)).toEqual({ secret: 'admin report', run: 1 })
    expect((await get('/reports', { 'x-role': 'admin' })).text).toBe(admin.text)
    expect(ran('reports')).toBe(1)
    const anonymous = await get('/reports')
    expect(anonymous.status).toBe(403)
    expect(anonymous.text).not.toContain('admin report')
    // The guard ran for every request, hits included.
    expect(ran('guard')).toBe(3)
  })

  it('a request its pipe rejects is answered by the pipe, and never stored', async () => {
    expect(JSON.parse((await get('/items/7')).text)).toEqual({ id: 7, run: 1 })
    expect(JSON.parse((await get('/items/7')).text)).toEqual({ id: 7, run: 1 })
    for (let i = 0; i < 2; i++) expect((await get('/items/seven')).status).toBe(400)
    expect(ran('items')).toBe(1)
  })

  it('two controllers answering the same URL never share an entry', async () => {
    for (let i = 0; i < 2; i++) {
      expect(JSON.parse((await get('/catalog', { 'x-api-version': '1' })).text)).toEqual({
        version: 1,
        run: 1,
      })
      expect(JSON.parse((await get('/catalog', { 'x-api-version': '2' })).text)).toEqual({
        version: 2,
        run: 1,
      })
    }
  })

  it.each([
    ['@Res({ passthrough: true }) handler', '/raw/passthrough', 'passthrough'],
    ['@Res() handler', '/raw/manual', 'manual'],
  ])('caches a %s (controller-level @CacheResponse), with its headers', async (_, path, route) => {
    const miss = await get(path)
    const hit = await get(path)
    expect(miss.headers['x-cache']).toBe('MISS')
    expect(hit.headers['x-cache']).toBe('HIT')
    expect(JSON.parse(hit.text)).toEqual({ run: 1 })
    expect(hit.text).toBe(miss.text)
    expect(hit.headers['content-type']).toBe(miss.headers['content-type'])
    if (route === 'passthrough') expect(hit.headers['x-from']).toBe('handler')
    expect(ran(route)).toBe(1)
  })

  it('the method-level @CacheResponse wins over the controller one, and @Header headers are replayed', async () => {
    const miss = await get('/raw/header')
    const hit = await get('/raw/header')
    expect(hit.text).toBe('run 1')
    expect(miss.headers['cache-status']).toMatch(/stored/)
    expect(hit.headers['cache-status']).toMatch(/hit/)
    expect(hit.headers['x-static']).toBe('yes')
    expect(ran('header')).toBe(1)
  })
})
