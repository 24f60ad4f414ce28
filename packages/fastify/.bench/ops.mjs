import Fastify from 'fastify'
const MARK = Symbol('m')
const app = Fastify()
const token = {}
const captured = []
app.get('/p', { config: { [MARK]: token } }, async (request) => { captured.push(request); return 'x' })
await app.ready()
const N = 20000
for (let i = 0; i < N; i++) await app.inject({ url: '/p' })
const ctx = Object.getOwnPropertySymbols(captured[0]).find((s) => s.description === 'fastify.context')
function run(name, fn) {
  let best = Infinity
  for (let round = 0; round < 15; round++) {
    const t0 = process.hrtime.bigint()
    let x = 0
    for (const r of captured) x += fn(r) ? 1 : 0
    const ns = Number(process.hrtime.bigint() - t0) / captured.length
    if (x !== captured.length) throw new Error(name)
    best = Math.min(best, ns)
  }
  console.log(name.padEnd(40), best.toFixed(1), 'ns/request (best of 15)')
}
run('nothing', () => true)
run('routeOptions.config[MARK] === token', (r) => r.routeOptions.config[MARK] === token)
run('[fastify.context].config[MARK] === token', (r) => r[ctx].config[MARK] === token)
let set = new WeakSet()
run('WeakSet has + add (fresh set each round)', (r) => { const had = set.has(r); set.add(r); return !had || true })
run('all: routeOptions + WeakSet', (r) => { if (r.routeOptions.config[MARK] !== token) return false; if (set.has(r)) { set = new WeakSet() } set.add(r); return true })
await app.close()
