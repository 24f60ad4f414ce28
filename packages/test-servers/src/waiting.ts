/** A logger that keeps every line it is given (`warn <message>`, `error …`, `info …`), for tests. */
export function recorder(): {
  lines: string[]
  warn(message: string): void
  error(message: string): void
  info(message: string): void
} {
  const lines: string[] = []
  return {
    lines,
    warn: (message: string) => void lines.push(`warn ${message}`),
    error: (message: string) => void lines.push(`error ${message}`),
    info: (message: string) => void lines.push(`info ${message}`),
  }
}

/** Waits (at most `ms`) until `check` holds, looking every 20 ms. */
export async function until(check: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out waiting')
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}
