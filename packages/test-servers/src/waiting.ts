/**
 * A logger that keeps every line it is given, for tests: `warn <message>`, `error …`, `info …`,
 * or the messages alone with `{ levels: false }`.
 */
export function recorder({ levels = true }: { levels?: boolean } = {}): {
  lines: string[]
  warn(message: string): void
  error(message: string): void
  info(message: string): void
} {
  const lines: string[] = []
  const keep = (level: string) => (message: string) =>
    void lines.push(levels ? `${level} ${message}` : message)
  return { lines, warn: keep('warn'), error: keep('error'), info: keep('info') }
}

/** Waits (at most `ms`) until `check` holds, looking every 20 ms. */
export async function until(check: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out waiting')
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}
