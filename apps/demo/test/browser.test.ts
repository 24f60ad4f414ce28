/**
 * End to end in a real browser: starts the demo on memory,disk, opens its HTML pages in headless
 * Chromium (the system one at /usr/bin/chromium, driven by playwright-core), clicks through the
 * home page (a slow request missing then hitting, each invalidation button, the charts), follows
 * its links to a cached JSON route, then reads the hit counts back out of the rendered stats tables.
 *
 * The demo is built into its own directory under node_modules (not dist/) so this file never
 * touches the dist/ the other files use. Set KEEP_SCREENSHOT=1 to keep the home-page screenshot
 * and print its path.
 */
import { execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type Browser, chromium, type Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Demo, demoDir, startDemo } from './start-demo.js'

const CHROMIUM = '/usr/bin/chromium'
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]
const STEP_TIMEOUT_MS = 10_000
const INDEX_LINKS = [
  '/api/products',
  '/api/products?category=office',
  '/api/products/1',
  '/report.pdf',
  '/api/quote',
  '/stats',
]

/** One rendered table as row name → column → cell text, read from the DOM after layout. */
type RenderedTable = Record<string, Record<string, string>>

async function readTable(page: Page, heading: string): Promise<RenderedTable> {
  const table = page.locator('h2', { hasText: heading }).locator('xpath=following-sibling::table[1]')
  const rows: string[][] = []
  for (const row of await table.locator('tr').all()) {
    rows.push((await row.locator('th, td').allInnerTexts()).map((text) => text.trim()))
  }
  const [head = [], ...body] = rows
  const result: RenderedTable = {}
  for (const cells of body) {
    result[cells[0] ?? ''] = Object.fromEntries(head.map((column, i) => [column, cells[i] ?? '']))
  }
  return result
}

describe('the demo in a real browser (memory,disk)', () => {
  let buildDir: string
  let diskPath: string
  let shotDir: string
  let demo: Demo | undefined
  let browser: Browser | undefined
  let page: Page

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(`The browser test needs Chromium at ${CHROMIUM}: apt-get install -y chromium`)
    }
    buildDir = mkdtempSync(join(demoDir, 'node_modules', '.browser-test-'))
    execFileSync('pnpm', ['exec', 'tsup', '--out-dir', buildDir], { cwd: demoDir, stdio: 'ignore' })
    diskPath = mkdtempSync(join(tmpdir(), 'cache-demo-browser-'))
    shotDir = mkdtempSync(join(tmpdir(), 'cache-demo-screenshot-'))
    demo = await startDemo(
      // The catalog as slow as by default, so the page shows what a 300 ms miss looks like.
      { CACHE_BACKEND: 'memory,disk', CACHE_DISK_PATH: diskPath, CATALOG_DELAY_MS: '300' },
      join(buildDir, 'server.js'),
    )
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: CHROMIUM_ARGS,
      headless: true,
      timeout: 20_000,
    })
    page = await browser.newPage({ viewport: { width: 1100, height: 900 } })
    page.setDefaultTimeout(STEP_TIMEOUT_MS)
    page.setDefaultNavigationTimeout(STEP_TIMEOUT_MS)
  }, 60_000)

  afterAll(async () => {
    await browser?.close()
    await demo?.stop()
    if (diskPath) rmSync(diskPath, { recursive: true, force: true })
    if (buildDir) rmSync(buildDir, { recursive: true, force: true })
    if (shotDir && !process.env.KEEP_SCREENSHOT) rmSync(shotDir, { recursive: true, force: true })
  }, 20_000)

  it('renders the index with its title, heading and links', async () => {
    const res = await page.goto(`${demo!.base}/`)
    expect(res?.status()).toBe(200)
    expect(await page.title()).toBe('@cache demo')
    expect(await page.locator('h1').textContent()).toBe('@cache demo')
    const hrefs = await page
      .locator('#links a')
      .evaluateAll((links) => links.map((a) => a.getAttribute('href')))
    expect(hrefs).toEqual(INDEX_LINKS)
    for (const href of INDEX_LINKS)
      await expect(page.locator(`a[href="${href}"]`).isVisible()).resolves.toBe(true)
  })

  it('shows a request going from a 300 ms miss to a hit, and missing again after each invalidation', async () => {
    await page.goto(`${demo!.base}/`)
    const entries = page.locator('#requests li[data-kind]')
    /** Clicks a button, waits for the request it fires, and returns that request's row. */
    const request = async (button: string) => {
      const before = await entries.count()
      await page.locator(button).click()
      await expect.poll(() => entries.count(), { timeout: STEP_TIMEOUT_MS }).toBe(before + 1)
      const row = entries.first()
      return {
        kind: await row.getAttribute('data-kind'),
        ms: Number(await row.getAttribute('data-ms')),
        status: (await row.locator('.cache-status').textContent()) ?? '',
        latency: (await row.locator('.latency').textContent()) ?? '',
      }
    }
    const miss = await request('#fire')
    expect(miss).toMatchObject({ kind: 'miss', status: '@cache; fwd=uri-miss; stored' })
    expect(miss.ms).toBeGreaterThanOrEqual(300)
    expect(miss.latency).toMatch(/^\d+\.\d ms$/)
    const hit = await request('#fire')
    expect(hit.kind).toBe('hit')
    expect(hit.status).toMatch(/^@cache; hit; ttl=\d+$/)
    // The hit is proved by the server's Cache-Status above; its latency is only shown, not
    // compared: on a loaded machine a browser round trip can take a third of the miss's 300 ms.
    expect(hit.latency).toMatch(/^\d+\.\d ms$/)
    expect(Number.isFinite(hit.ms)).toBe(true)

    for (const how of ['key', 'tag', 'prefix']) {
      const after = await request(`#invalidate-${how}`)
      expect(after, `after invalidating by ${how}`).toMatchObject({
        kind: 'miss',
        status: '@cache; fwd=uri-miss; stored',
      })
      expect(after.ms).toBeGreaterThanOrEqual(300)
      expect(await page.locator('#requests li.action').first().textContent()).toContain(
        `invalidated by ${how}`,
      )
      expect((await request('#fire')).kind).toBe('hit')
    }
  })

  it('draws hit ratio and read latency per level as charts, from live stats', async () => {
    for (const chart of ['#hit-ratio-chart', '#latency-chart']) {
      for (const level of ['memory', 'disk']) {
        const line = page.locator(`${chart} polyline[data-level="${level}"]`)
        await expect
          .poll(async () => Number(await line.getAttribute('data-points')), { timeout: STEP_TIMEOUT_MS })
          .toBeGreaterThanOrEqual(2)
        // Drawn inside the chart's 460×170 box, one point a second.
        const points = ((await line.getAttribute('points')) ?? '')
          .split(' ')
          .map((p) => p.split(',').map(Number))
        expect(new Set(points.map(([x]) => x)).size).toBe(points.length)
        for (const [x, y] of points) {
          expect(x).toBeGreaterThanOrEqual(0)
          expect(x).toBeLessThanOrEqual(460)
          expect(y).toBeGreaterThanOrEqual(0)
          expect(y).toBeLessThanOrEqual(170)
        }
      }
    }
    const memory = await page.locator('.legend[data-of="ratio"] span[data-level="memory"]').textContent()
    expect(memory).toMatch(/^memory: \d+% \(\d+ of \d+\)$/)
    const latency = await page.locator('.legend[data-of="latency"] span[data-level="disk"]').textContent()
    expect(latency).toMatch(/^disk: \d+ µs$/)
  })

  it('follows the product-list link twice: a stored miss, then a hit', async () => {
    const statuses: (string | null)[] = []
    for (let i = 0; i < 2; i++) {
      await page.goto(`${demo!.base}/`)
      const [response] = await Promise.all([
        page.waitForResponse((r) => new URL(r.url()).pathname === '/api/products'),
        page.locator('a[href="/api/products"]').click(),
      ])
      expect(response.status()).toBe(200)
      statuses.push(await response.headerValue('cache-status'))
      const products = JSON.parse((await page.locator('body').textContent()) ?? '') as unknown[]
      expect(products).toHaveLength(4)
    }
    expect(statuses[0]).toBe('@cache; fwd=uri-miss; stored')
    expect(statuses[1]).toMatch(/^@cache; hit; ttl=\d+$/)
  })

  it('shows both levels and the hits in the rendered stats tables', async () => {
    await page.goto(`${demo!.base}/`)
    await Promise.all([page.waitForURL('**/stats'), page.locator('a[href="/stats"]').click()])
    expect(await page.title()).toBe('@cache demo: stats')
    expect(await page.locator('h1').textContent()).toBe('@cache demo: stats')

    const levels = await readTable(page, 'Backend levels')
    expect(Object.keys(levels)).toEqual(['memory', 'disk'])
    expect(Number(levels.memory!.hits)).toBeGreaterThan(0)
    expect(Number(levels.memory!.sets)).toBeGreaterThan(0)
    expect(Number(levels.disk!.sets)).toBeGreaterThan(0)
    expect(levels.memory!['hit ratio']).toMatch(/^\d+%$/)

    const responses = await readTable(page, 'Cached responses')
    expect(Number(responses.productPages?.hits)).toBeGreaterThan(0)
    expect(Number(responses.productPages?.misses)).toBeGreaterThan(0)

    const memoized = await readTable(page, 'Memoized service methods')
    expect(Object.keys(memoized)).toEqual(['ProductService.product', 'ProductService.products'])
    expect(Number(memoized['ProductService.products']!.misses)).toBeGreaterThan(0)
  })

  it('takes a non-empty PNG screenshot of the home page', async () => {
    const file = join(shotDir, 'home.png')
    await page.goto(`${demo!.base}/`)
    // An invalidation (which requests again: a miss), then a hit.
    await page.locator('#invalidate-key').click()
    await page.locator('#requests li[data-kind]').first().waitFor()
    await page.locator('#fire').click()
    await expect.poll(() => page.locator('#requests li[data-kind]').count()).toBe(2)
    await page.screenshot({ path: file, fullPage: true, timeout: STEP_TIMEOUT_MS })
    const png = readFileSync(file)
    expect(statSync(file).size).toBeGreaterThan(1000)
    expect(png.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))).toBe(
      true,
    )
    expect(png.subarray(12, 16).toString('latin1')).toBe('IHDR')
    expect(png.readUInt32BE(16)).toBe(1100)
    expect(png.readUInt32BE(20)).toBeGreaterThan(0)
    if (process.env.KEEP_SCREENSHOT) console.log(`home-page screenshot kept at ${file}`)
  })
})
