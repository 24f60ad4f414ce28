import type { OutgoingHttpHeaders, ServerResponse } from 'node:http'

/** What a handler sent, as seen at the capture layer. */
export interface CapturedResponse {
  status: number
  headers: OutgoingHttpHeaders
  /** The body bytes, or `undefined` when they exceeded the size limit. */
  body: Buffer | undefined
}

/**
 * Records what passes through `res.writeHead`/`write`/`end` of one response, then hands it to
 * `onEnd` just before the final `end` goes out (so headers may still be set when nothing was
 * sent yet). `onAbort` runs instead when the connection closes before `end`.
 *
 * Status and headers are taken as they stand at this layer, before the layers below see them.
 * So a transform installed before this one (e.g. `compression` registered earlier) is not part of
 * the capture and runs again on replay, while one installed after it (registered later) is
 * captured in its output: either order replays correctly.
 */
export function captureResponse(
  res: ServerResponse,
  maxBodySize: number,
  onEnd: (captured: CapturedResponse) => void,
  onAbort: () => void,
): void {
  const original = { writeHead: res.writeHead, write: res.write, end: res.end }
  // Headers set before the handler ran (a request id, CORS) belong to each request, not to the
  // stored response: the middleware that set them sets them again on a hit.
  const before = res.getHeaders()
  const chunks: Buffer[] = []
  let size = 0
  let tooLarge = false
  let status: number | undefined
  let headers: OutgoingHttpHeaders | undefined
  let done = false

  const snapshot = (code?: number, extra?: unknown) => {
    if (headers !== undefined) return
    status = code ?? res.statusCode
    headers = {}
    const current = res.getHeaders()
    for (const name of Object.keys(current)) {
      const value = current[name]
      if (value !== undefined && String(value) !== String(before[name])) headers[name] = value
    }
    if (Array.isArray(extra)) {
      for (let i = 0; i + 1 < extra.length; i += 2) headers[String(extra[i]).toLowerCase()] = extra[i + 1]
    } else if (extra && typeof extra === 'object') {
      for (const [k, v] of Object.entries(extra)) headers[k.toLowerCase()] = v as string
    }
  }
  const collect = (chunk: unknown, encoding: unknown) => {
    if (chunk === undefined || chunk === null || typeof chunk === 'function' || tooLarge) return
    const bytes =
      typeof chunk === 'string'
        ? Buffer.from(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8')
        : Buffer.isBuffer(chunk)
          ? chunk
          : Buffer.from(chunk as Uint8Array)
    size += bytes.length
    if (size > maxBodySize) {
      tooLarge = true
      chunks.length = 0
    } else {
      chunks.push(bytes)
    }
  }

  res.writeHead = function (this: ServerResponse, code: number, ...rest: unknown[]) {
    snapshot(code, typeof rest[0] === 'string' ? rest[1] : rest[0])
    return (original.writeHead as (...args: unknown[]) => ServerResponse).call(this, code, ...rest)
  } as ServerResponse['writeHead']

  res.write = function (this: ServerResponse, chunk: unknown, encoding?: unknown, cb?: unknown) {
    if (!done) {
      snapshot()
      collect(chunk, encoding)
    }
    return (original.write as (...args: unknown[]) => boolean).call(this, chunk, encoding, cb)
  } as ServerResponse['write']

  res.end = function (this: ServerResponse, chunk?: unknown, encoding?: unknown, cb?: unknown) {
    if (!done) {
      done = true
      snapshot()
      collect(chunk, encoding)
      onEnd({
        status: status!,
        headers: headers!,
        body: tooLarge ? undefined : chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size),
      })
    }
    return (original.end as (...args: unknown[]) => ServerResponse).call(this, chunk, encoding, cb)
  } as ServerResponse['end']

  res.once('close', () => {
    if (!done) {
      done = true
      onAbort()
    }
  })
}
