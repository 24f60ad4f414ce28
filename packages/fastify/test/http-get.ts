import { request as httpRequest } from 'node:http'
import { request as httpsRequest } from 'node:https'

export interface Answer {
  status: number
  body: string
  cacheStatus: string
}

export interface GetOptions {
  /** The request target sent exactly as given (a URL would normalise some spellings). */
  target?: string
  /** The local address to send from (the loopback network has 127.0.0.0/8). */
  from?: string
  /** The certificate to trust, for an `https:` URL. */
  ca?: string
}

/** A GET over real HTTP(S) with the headers as given (fetch does not send a Host of its own choosing). */
export function get(
  url: string,
  headers: Record<string, string> = {},
  options: GetOptions = {},
): Promise<Answer> {
  const send = url.startsWith('https:') ? httpsRequest : httpRequest
  return new Promise((resolve, reject) => {
    send(
      url,
      {
        headers,
        agent: false,
        ...(options.target === undefined ? {} : { path: options.target }),
        ...(options.from === undefined ? {} : { localAddress: options.from }),
        ...(options.ca === undefined ? {} : { ca: options.ca }),
      },
      (response) => {
        const chunks: Buffer[] = []
        response.on('data', (chunk: Buffer) => chunks.push(chunk))
        response.on('end', () =>
          resolve({
            status: response.statusCode ?? 0,
            body: Buffer.concat(chunks).toString(),
            cacheStatus: String(response.headers['cache-status']),
          }),
        )
        response.on('error', reject)
      },
    )
      .on('error', reject)
      .end()
  })
}
