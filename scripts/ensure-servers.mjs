#!/usr/bin/env node
// Makes sure redis-server, redis-cli, memcached and /usr/bin/chromium (for the demo's browser test)
// are installed before the tests run: installs them with apt-get when we are root on Debian/Ubuntu,
// otherwise stops with the exact command.
import { execFileSync, execSync } from 'node:child_process'
import { existsSync } from 'node:fs'

const needed = {
  'redis-server': 'redis-server',
  'redis-cli': 'redis-tools',
  memcached: 'memcached',
  chromium: 'chromium',
}
// The browser test launches Chromium from this exact path, so look nowhere else for it.
const searchDirs = (bin) => (bin === 'chromium' ? ['/usr/bin'] : ['/usr/bin', '/usr/local/bin', '/usr/sbin'])
const missing = Object.keys(needed).filter(
  (bin) => !searchDirs(bin).some((dir) => existsSync(`${dir}/${bin}`)),
)
if (missing.length === 0) process.exit(0)

const packages = [...new Set(missing.map((bin) => needed[bin]))]
const command = `apt-get install -y ${packages.join(' ')}`
const isRoot = process.getuid?.() === 0
const hasApt = existsSync('/usr/bin/apt-get')
if (!isRoot || !hasApt) {
  console.error(
    `The tests need ${missing.join(', ')}. Install them first:\n  sudo apt-get update && sudo ${command}\n(on macOS: brew install redis memcached; the browser test needs Chromium at /usr/bin/chromium)`,
  )
  process.exit(1)
}
console.log(`Installing ${packages.join(', ')} for the tests…`)
execSync('apt-get update -qq', { stdio: 'inherit' })
execFileSync('apt-get', ['install', '-y', '-qq', ...packages], {
  stdio: 'inherit',
  env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
})
