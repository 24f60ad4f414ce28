/**
 * The home page: fire a request at a slow cached route and watch a 300 ms miss become a hit,
 * invalidate it by key, tag and prefix, and follow hit ratio and read latency per cache level.
 * One self-contained page (inline CSS, script and SVG charts): nothing is loaded from elsewhere.
 */

/** The slow cached route the page requests: its reviews take the whole catalog delay on a miss. */
export const FEATURED_URL = '/api/products/1/reviews'

const LINKS = [
  ['/api/products', 'all products (JSON, cached response over a memoized service)'],
  ['/api/products?category=office', 'products in one category'],
  ['/api/products/1', 'one product'],
  ['/report.pdf', 'a PDF price list (binary, cached byte for byte)'],
  ['/api/quote', 'a rate-limited endpoint (5 per minute)'],
  ['/stats', 'every counter, per level, response cache and memoized method'],
]

const STYLE = `
body{font-family:system-ui,sans-serif;margin:0;color:#1d2330;background:#f5f6f8}
header{background:#1d2330;color:#fff;padding:1rem 2rem}header h1{margin:0;font-size:1.4rem}
header p{margin:.3rem 0 0;color:#c5cad3}main{display:flex;flex-wrap:wrap;gap:1.5rem;padding:1.5rem 2rem}
section{background:#fff;border-radius:8px;box-shadow:0 1px 3px #0002;padding:1rem 1.2rem;flex:1 1 420px}
h2{font-size:1.05rem;margin:0 0 .7rem}button{font:inherit;padding:.4rem .8rem;border-radius:6px;border:1px solid #8891a0;background:#fff;cursor:pointer}
button.primary{background:#2364d2;color:#fff;border-color:#2364d2}.buttons{display:flex;flex-wrap:wrap;gap:.5rem;margin:.6rem 0}
ol{list-style:none;padding:0;margin:.6rem 0 0;max-height:330px;overflow:auto;font-size:.9rem}
li{display:grid;grid-template-columns:2.2rem 5.5rem 1fr;gap:.5rem;align-items:center;padding:.25rem 0;border-bottom:1px solid #eee}
li.action{display:block;color:#6b5200;background:#fff8e0;padding:.25rem .4rem}
.latency{text-align:right;font-variant-numeric:tabular-nums;font-weight:600}
li.miss .latency{color:#c0392b}li.hit .latency{color:#1e8449}
.bar{height:6px;border-radius:3px;margin-top:3px}li.miss .bar{background:#e6a199}li.hit .bar{background:#7dcea0}
code{font-size:.85rem}svg{width:100%;height:auto;display:block}.legend span{margin-right:1rem;font-size:.9rem}
.legend i{display:inline-block;width:.8rem;height:.8rem;border-radius:2px;margin-right:.3rem;vertical-align:-1px}
.muted{color:#6b7280;font-size:.85rem}#links li{display:block;border:0;padding:.15rem 0}
`

/** Runs in the browser. Plain JavaScript on purpose: the page has no build step and no library. */
const SCRIPT = `
const URL_ = ${JSON.stringify(FEATURED_URL)}
const COLORS = ['#2364d2', '#e67e22', '#8e44ad', '#16a085']
const history = []
let count = 0
const list = document.getElementById('requests')
const esc = (t) => String(t).replace(/[&<>"']/g, (c) => '&#' + c.charCodeAt(0) + ';')

function log(html, cls, attrs) {
  const li = document.createElement('li')
  li.className = cls
  for (const [k, v] of Object.entries(attrs || {})) li.setAttribute(k, v)
  li.innerHTML = html
  list.prepend(li)
}

async function fire() {
  const start = performance.now()
  const res = await fetch(URL_, { cache: 'no-store' })
  await res.arrayBuffer()
  const ms = performance.now() - start
  const status = res.headers.get('cache-status') || '(none)'
  const kind = /; hit/.test(status) ? 'hit' : 'miss'
  count++
  const width = Math.max(1, Math.min(100, (ms / 350) * 100))
  log('<span>#' + count + '</span><span class="latency">' + ms.toFixed(1) + ' ms</span>' +
      '<span><code class="cache-status">' + esc(status) + '</code><div class="bar" style="width:' + width + '%"></div></span>',
      kind, { 'data-kind': kind, 'data-ms': ms.toFixed(2) })
  refresh()
}

async function invalidate(how) {
  const target = {
    key: ['/admin/invalidate?url=' + encodeURIComponent(URL_), 'key ' + URL_],
    tag: ['/admin/invalidate/tag/product:1', 'tag product:1'],
    prefix: ['/admin/invalidate/prefix/pages', 'prefix pages (every cached page)'],
  }[how]
  const res = await fetch(target[0], { method: 'POST' })
  log('invalidated by ' + esc(target[1]) + (res.ok ? '' : ' — failed: ' + res.status) + '; requesting again…', 'action')
  await fire()
}

function chart(svg, series, opts) {
  const W = 460, H = 170, L = 42, R = 8, T = 10, B = 22
  const max = opts.max || Math.max(1, ...series.flatMap((s) => s.values.filter((v) => v != null))) * 1.15
  let out = ''
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4, y = T + (H - T - B) * (1 - i / 4)
    out += '<line x1="' + L + '" x2="' + (W - R) + '" y1="' + y + '" y2="' + y + '" stroke="#e3e6ea"/>' +
      '<text x="' + (L - 6) + '" y="' + (y + 4) + '" text-anchor="end" font-size="10" fill="#6b7280">' + opts.format(v) + '</text>'
  }
  const n = Math.max(2, ...series.map((s) => s.values.length))
  series.forEach((s, k) => {
    const points = []
    s.values.forEach((v, i) => {
      if (v == null) return
      const x = L + ((W - L - R) * i) / (n - 1), y = T + (H - T - B) * (1 - Math.min(v, max) / max)
      points.push(x.toFixed(1) + ',' + y.toFixed(1))
    })
    out += '<polyline data-level="' + esc(s.name) + '" data-points="' + points.length + '" fill="none" stroke="' + COLORS[k % COLORS.length] +
      '" stroke-width="2.5" stroke-linejoin="round" points="' + points.join(' ') + '"/>'
  })
  out += '<text x="' + (W - R) + '" y="' + (H - 6) + '" text-anchor="end" font-size="10" fill="#6b7280">last ' + n + ' s</text>'
  svg.innerHTML = out
}

async function refresh() {
  const stats = await (await fetch('/stats.json', { cache: 'no-store' })).json()
  history.push(stats.levels)
  if (history.length > 60) history.shift()
  const names = stats.levels.map((l) => l.name)
  const ratio = (s) => { const n = s.hits + s.misses; return n === 0 ? null : (100 * s.hits) / n }
  chart(document.getElementById('hit-ratio-chart'),
    names.map((name, i) => ({ name, values: history.map((h) => (h[i] ? ratio(h[i].stats) : null)) })),
    { max: 100, format: (v) => Math.round(v) + '%' })
  chart(document.getElementById('latency-chart'),
    names.map((name, i) => ({ name, values: history.map((h) => (h[i] ? h[i].readLatencyUs : null)) })),
    { format: (v) => (v >= 1000 ? (v / 1000).toFixed(1) + ' ms' : Math.round(v) + ' µs') })
  document.querySelectorAll('.legend').forEach((el) => {
    el.innerHTML = stats.levels.map((l, i) => {
      const r = ratio(l.stats)
      const text = el.dataset.of === 'ratio'
        ? (r == null ? '–' : Math.round(r) + '%') + ' (' + l.stats.hits + ' of ' + (l.stats.hits + l.stats.misses) + ')'
        : l.readLatencyUs + ' µs'
      return '<span data-level="' + esc(l.name) + '"><i style="background:' + COLORS[i % COLORS.length] + '"></i>' + esc(l.name) + ': ' + text + '</span>'
    }).join('')
  })
  document.getElementById('backend').textContent = stats.backend + ' (' + names.join(' → ') + ')'
  document.getElementById('queries').textContent = stats.catalogQueries
}

document.getElementById('fire').onclick = fire
for (const how of ['key', 'tag', 'prefix']) document.getElementById('invalidate-' + how).onclick = () => invalidate(how)
refresh()
setInterval(refresh, 1000)
`

/** The home page's HTML. */
export function homePage(): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>@cache demo</title>
<meta name="viewport" content="width=device-width,initial-scale=1"><style>${STYLE}</style></head><body>
<header><h1>@cache demo</h1><p>An Express app on <span id="backend">…</span>. The slow catalog has been queried <b id="queries">0</b> times.</p></header>
<main>
<section><h2>A slow route, cached</h2>
<p class="muted"><code>GET ${FEATURED_URL}</code> takes the catalog's whole delay on a miss; its response is cached by
<code>cacheResponse()</code> for 60 s, tagged <code>reviews</code> and <code>product:1</code>. Each request below shows its
latency in the browser and its <code>Cache-Status</code> header.</p>
<div class="buttons"><button id="fire" class="primary">Request ${FEATURED_URL}</button></div>
<div class="buttons"><button id="invalidate-key">Invalidate by key</button><button id="invalidate-tag">Invalidate tag product:1</button><button id="invalidate-prefix">Invalidate prefix pages</button></div>
<ol id="requests"></ol></section>
<section><h2>Hit ratio per level</h2><div class="legend" data-of="ratio"></div>
<svg id="hit-ratio-chart" viewBox="0 0 460 170" role="img" aria-label="hit ratio per level over time"></svg>
<p class="muted">Lookups of entries only (not the cache's reads of its invalidation state), since the app started.</p>
<h2>Read latency per level</h2><div class="legend" data-of="latency"></div>
<svg id="latency-chart" viewBox="0 0 460 170" role="img" aria-label="read latency per level over time"></svg>
<p class="muted">Median of 15 reads of one entry in each level, every second.</p></section>
<section><h2>More to try</h2><ul id="links">${LINKS.map(([href, text]) => `<li><a href="${href}">${href}</a>: ${text}</li>`).join('')}</ul>
<p class="muted">Every response carries a <code>Cache-Status</code> header; the README has curl commands for each.</p></section>
</main><script>${SCRIPT}</script></body></html>`
}
