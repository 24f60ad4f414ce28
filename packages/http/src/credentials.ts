import type { IncomingHttpHeaders } from 'node:http'

/**
 * The `Authorization` and `Cookie` rules are about what the client sent, not about what the
 * layers before the cache left in the headers: an auth hook that moves the token into
 * `request.user` and deletes the header still made the response for that user. Adapters hand the
 * header lines ({@link HttpRequestView.rawHeaders}, Node's `rawHeaders`) and the credential lines
 * the server noted as it emitted the request ({@link HttpRequestView.arrivedLines}): a layer may
 * delete a line from `rawHeaders` too. A credential in any of them applies the rule; an allowed
 * one is keyed on the noted lines as what was sent. The header object is read first, the lines
 * only to confirm that no credential was sent.
 *
 * Returns why the request bypasses (`authorization`, `cookie`: sent, and not allowed), or the
 * headers to key it with: `headers` itself when the allowed credentials reach the app as sent (the
 * usual case, no copy), else a copy whose `authorization` / `cookie` hold both what the client
 * sent and what the app sees, so that the `vary` option and a response's `Vary` key on both: a
 * layer that rewrites `sid=bob; theme=dark` to `theme=dark` never makes Bob share Alice's entry,
 * nor one that deletes the header make Alice's page the variant of clients that sent none.
 */
export function credentialHeaders(
  headers: IncomingHttpHeaders,
  rawHeaders: readonly string[] | undefined,
  allowAuthorized: boolean,
  allowCookies: boolean,
  arrivedLines?: readonly string[],
): IncomingHttpHeaders | 'authorization' | 'cookie' {
  const seenAuthorization = headers.authorization
  const seenCookie = headers.cookie
  if (!allowAuthorized && seenAuthorization !== undefined) return 'authorization'
  if (!allowCookies && seenCookie !== undefined) return 'cookie'
  // What the client sent: the lines noted as the server emitted the request, when it noted them
  // (a layer may have deleted a line from `rawHeaders` too), else the lines as they are now.
  const sent = credentialLines(arrivedLines ?? rawHeaders)
  if (sent === undefined) return headers
  // A credential in the live lines that the noted ones lack (a layer added it) is one too.
  const live =
    arrivedLines === undefined || (allowAuthorized && allowCookies) ? sent : credentialLines(rawHeaders)
  if (!allowAuthorized && (sent.authorization !== undefined || live?.authorization !== undefined))
    return 'authorization'
  if (!allowCookies && (sent.cookie !== undefined || live?.cookie !== undefined)) return 'cookie'
  // Several lines compare as Node reads them: Cookie lines joined by `; `, the first Authorization.
  const sameAuthorization = asSent(sent.authorization?.[0], seenAuthorization)
  const sameCookie = asSent(sent.cookie?.join('; '), seenCookie)
  if (sameAuthorization && sameCookie) return headers
  const keyed: Record<string, unknown> = { ...headers }
  if (!sameAuthorization) keyed.authorization = sentAndSeen(sent.authorization, seenAuthorization)
  if (!sameCookie) keyed.cookie = sentAndSeen(sent.cookie, seenCookie)
  return keyed as IncomingHttpHeaders
}

/** The values of the `Authorization` and `Cookie` lines of `lines` (name, value, …); `undefined` without lines. */
function credentialLines(
  lines: readonly string[] | undefined,
): { authorization?: string[]; cookie?: string[] } | undefined {
  if (!Array.isArray(lines)) return undefined
  let authorization: string[] | undefined
  let cookie: string[] | undefined
  for (let i = 0; i < lines.length; i += 2) {
    const name = lines[i]
    if (typeof name !== 'string') continue
    // The first letter and the length rule out every other name before a lower-case copy is made.
    const first = name.charCodeAt(0) | 0x20
    if (first === 0x61 && name.length === 13 && name.toLowerCase() === 'authorization')
      (authorization ??= []).push(String(lines[i + 1]))
    else if (first === 0x63 && name.length === 6 && name.toLowerCase() === 'cookie')
      (cookie ??= []).push(String(lines[i + 1]))
  }
  return authorization === undefined && cookie === undefined ? NO_CREDENTIALS : { authorization, cookie }
}

/** Lines without a credential: the usual request makes no object. */
const NO_CREDENTIALS: { authorization?: string[]; cookie?: string[] } = Object.freeze({})

/**
 * Whether the app sees a credential as the client sent it (as Node reads its lines), or none at
 * all. The same lines then key the same, whether they came on one line or on several (a
 * refresh's copy sends the value Node read, on one line).
 */
function asSent(sent: string | undefined, seen: unknown): boolean {
  return seen === sent
}

/**
 * A key value for a credential the app does not see as sent (deleted, rewritten, added): a list,
 * which no single header value a client sends can spell.
 */
function sentAndSeen(sent: string[] | undefined, seen: unknown): string[] {
  return [`sent ${JSON.stringify(sent ?? null)}`, `seen ${JSON.stringify(seen ?? null)}`]
}
