// on-headers (what express-session and cookie-session use on Node) ships no types.
declare module 'on-headers' {
  import type { ServerResponse } from 'node:http'
  export default function onHeaders(res: ServerResponse, listener: (this: ServerResponse) => void): void
}
