import type { StatsSnapshot } from './app.js'

const COLUMNS = ['hits', 'misses', 'sets', 'deletes', 'backfills', 'errors', 'timeouts', 'skipped', 'state']

/** The stats page: one table per kind of cache, refreshed every 5 s. */
export function statsPage(s: StatsSnapshot): string {
  return `<!doctype html><html><head><meta charset="utf-8"><title>@cache demo: stats</title>
<meta http-equiv="refresh" content="5">
<style>body{font-family:system-ui,sans-serif;margin:2rem}table{border-collapse:collapse;margin-bottom:1.5rem}
td,th{border:1px solid #ccc;padding:.3rem .7rem;text-align:right}th:first-child,td:first-child{text-align:left}</style>
</head><body><h1>@cache demo: stats</h1>
<p>Backend: <b>${escapeHtml(s.backend)}</b>. Queries that reached the slow catalog: <b>${s.catalogQueries}</b>.</p>
<h2>Backend levels</h2>${table(s.levels)}
<h2>Cached responses (@cache/express)</h2>${table(s.responses)}
<h2>Memoized service methods (@cache decorator)</h2>${table(s.memoized)}
<p><a href="/">home</a> · <a href="/stats.json">JSON</a></p></body></html>`
}

function table(rows: { name: string; stats: object | undefined }[]): string {
  const used = COLUMNS.filter((c) => rows.some((r) => r.stats !== undefined && c in r.stats))
  const head = `<tr><th>name</th>${used.map((c) => `<th>${c}</th>`).join('')}<th>hit ratio</th></tr>`
  const body = rows
    .map((row) => {
      const stats = (row.stats ?? {}) as Record<string, unknown>
      const hits = Number(stats.hits ?? 0)
      const lookups = hits + Number(stats.misses ?? 0)
      const ratio = lookups === 0 ? '–' : `${Math.round((hits / lookups) * 100)}%`
      return `<tr><td>${escapeHtml(row.name)}</td>${used.map((c) => `<td>${escapeHtml(String(stats[c] ?? ''))}</td>`).join('')}<td>${ratio}</td></tr>`
    })
    .join('')
  return `<table>${head}${body}</table>`
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}
