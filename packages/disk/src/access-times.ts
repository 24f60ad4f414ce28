import type { DiskContext } from './context.js'
import { isBusy } from './store.js'

/**
 * Access times, which steer LRU eviction: the keys read are written in one batch about a second
 * later, off the read path. A read queues its key only when the stored time is at least
 * `accessResolution` old, so hot reads do not turn into writes.
 */
export class AccessTimes {
  private readonly touched = new Set<string>()
  private timer: NodeJS.Timeout | undefined

  constructor(private readonly ctx: DiskContext) {}

  /** Records a read of `key` whose stored access time is `accessedAt`, if that one is old enough. */
  read(key: string, accessedAt: number, now: number): void {
    if (now - accessedAt < this.ctx.settings.accessResolutionMs) return
    this.touched.add(key)
    this.timer ??= setTimeout(() => this.flush(), 1000).unref()
  }

  /** Writes the queued access times now, in one transaction. */
  flush(): void {
    clearTimeout(this.timer)
    this.timer = undefined
    if (this.touched.size === 0 || this.ctx.isClosed()) return
    const keys = [...this.touched]
    this.touched.clear()
    try {
      this.ctx.store.touch(this.ctx.ns, keys, this.ctx.settings.now())
    } catch (error) {
      // Access times only steer eviction: a busy database skips this batch rather than wait.
      if (!isBusy(error)) this.ctx.observer.error('touch', error)
    }
  }
}
