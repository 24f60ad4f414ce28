import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { compileFixture } from './compile.js'

describe('@cache among NestJS decorators (experimentalDecorators, emitDecoratorMetadata)', () => {
  let app: { url: string; close(): Promise<void> }
  let calls: Record<string, number>
  beforeAll(async () => {
    const fixture = await compileFixture('nest', 'legacy')('app.ts')
    calls = fixture.calls
    app = await fixture.start()
  }, 30_000)
  afterAll(async () => {
    await app?.close()
  })

  const get = async (path: string, authorized: boolean) => {
    const response = await fetch(`${app.url}${path}`, {
      headers: authorized ? { authorization: 'Bearer let-me-in' } : {},
    })
    return { status: response.status, body: await response.text() }
  }

  it.each([
    ['@Get() @cache(60) @UseGuards(AuthGuard) …', '/secret/7'],
    ['@cache(60) above @Get() @UseGuards(AuthGuard) …', '/above/7'],
  ])('%s: the route exists, and the guard runs before any cached answer', async (_order, path) => {
    const anonymous = await get(path, false)
    expect(anonymous.status).toBe(403)
    expect(anonymous.body).not.toContain('codes')
    const first = await get(path, true)
    expect(first.status).toBe(200)
    const body = JSON.parse(first.body)
    expect(body).toMatchObject({ id: 7, stamped: true }) // the pipe parsed the id, the interceptor ran
    const again = await get(path, true)
    expect(JSON.parse(again.body)).toEqual(body)
    // Cached now, and still guarded.
    const later = await get(path, false)
    expect(later.status).toBe(403)
    expect(later.body).not.toContain('codes')
  })

  it('ran each handler once per id (memoized), and the guard, interceptor and pipe every time', () => {
    expect(calls.secret).toBe(1)
    expect(calls.above).toBe(1)
    expect(calls.guard).toBe(8)
    expect(calls.interceptor).toBe(4)
    expect(calls.pipe).toBeGreaterThanOrEqual(4)
  })
})

describe('@cache among TC39 decorators', () => {
  it('keeps context.metadata and the reflect-metadata of decorators above and below it', async () => {
    const { Tagged } = await compileFixture('tc39-metadata', 'standard')('tagged.ts')
    const metadata = Tagged[(Symbol as unknown as { metadata: symbol }).metadata]
    expect(metadata).toMatchObject({ outer: 'run', inner: 'run' })
    const reflect = Reflect as unknown as { getMetadata(key: string, target: object): unknown }
    expect(reflect.getMetadata('inner', Tagged.prototype.run)).toBe('yes')
    expect(reflect.getMetadata('outer', Tagged.prototype.run)).toBe('yes')
    const tagged = new Tagged()
    expect(await tagged.run(2)).toBe(4)
    expect(await tagged.run(2)).toBe(4)
  })
})
