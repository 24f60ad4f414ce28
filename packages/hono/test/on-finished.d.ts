// on-finished (what Express and morgan use on Node) ships no types here.
declare module 'on-finished' {
  import type { IncomingMessage, ServerResponse } from 'node:http'
  export default function onFinished<T extends IncomingMessage | ServerResponse>(
    message: T,
    listener: (error: Error | null, message: T) => void,
  ): T
}
