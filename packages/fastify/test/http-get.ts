import { request } from 'node:http'

export interface Answer {
  status: number
  body: string
  cacheStatus: string
}

/** A GET over real HTTP with the headers as given (fetch does not send a Host of its own choosing). */
export function get(url: string, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    request(url, { headers, agent: false }, (response) => {
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
    })
      .on('error', reject)
      .end()
  })
}
