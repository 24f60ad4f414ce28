/**
 * Two deployments of one NestJS service on one port and backend, whose controller code is the
 * same and whose guard differs: the guard (on the method or the controller) is part of the site,
 * so the public deployment never replays what the admin one stored.
 */
import 'reflect-metadata'
import type { CacheBackend } from '@cache/core'
import { describe, expect, it } from 'vitest'
import { memory, type Reply, request } from './http.js'

interface DeploymentsFixture {
  startDeployment(
    build: 'admin' | 'public',
    backend: CacheBackend,
    port: number,
  ): Promise<{ app: { close(): Promise<void> }; port: number }>
}
// A path the TC39-mode typecheck of this file does not follow into the legacy-mode fixture.
const FIXTURE: string = './fixtures/nest/deployments.js'
const json = (reply: Reply) => JSON.parse(reply.body.toString())

describe('@cacheResponse across deployments whose guards differ', () => {
  it('the public deployment never replays the admin deployment’s entry; each caches its own', async () => {
    const { startDeployment } = (await import(FIXTURE)) as DeploymentsFixture
    const backend = memory()
    const admin = await startDeployment('admin', backend, 0)
    try {
      expect((await request(admin.port, '/reports')).status).toBe(403)
      const stored = await request(admin.port, '/reports', { headers: { 'x-api-key': 'admin-key' } })
      expect(json(stored).data).toBe('ADMIN-ONLY')
      const hit = await request(admin.port, '/reports', { headers: { 'x-api-key': 'admin-key' } })
      expect(hit.headers['cache-status']).toMatch(/hit/)
    } finally {
      await admin.app.close()
    }
    const open = await startDeployment('public', backend, admin.port)
    try {
      const first = await request(open.port, '/reports')
      expect(json(first).data).toBe('public')
      expect(first.headers['cache-status']).not.toMatch(/hit/)
      expect((await request(open.port, '/reports')).headers['cache-status']).toMatch(/hit/)
    } finally {
      await open.app.close()
    }
  })
})
