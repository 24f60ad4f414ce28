import { cacheIncr } from '@cache/core'
import type { NextFunction, Request, Response } from 'express'

/**
 * A fixed-window rate limiter on `cacheIncr`: one atomic counter per client and window, created
 * with the window as its TTL. With a shared backend (redis) the limit holds across processes.
 */
export function rateLimit(options: { limit: number; windowSeconds: number }) {
  const { limit, windowSeconds } = options
  return async (req: Request, res: Response, next: NextFunction) => {
    const window = Math.floor(Date.now() / 1000 / windowSeconds)
    let count: number
    try {
      count = await cacheIncr(`ratelimit:${req.ip}:${window}`, 1, windowSeconds)
    } catch (error) {
      // The limiter fails open: a cache outage must not take the API down with it.
      console.warn('rate limiter unavailable:', (error as Error).message)
      return next()
    }
    res.setHeader('RateLimit-Limit', String(limit))
    res.setHeader('RateLimit-Remaining', String(Math.max(0, limit - count)))
    if (count > limit) {
      res.setHeader('Retry-After', String(windowSeconds))
      res.status(429).json({ error: 'too many requests' })
      return
    }
    next()
  }
}
