/** What is known of one other bus: the number expected next, when it was last heard, its heartbeat. */
interface Sender {
  next: number
  heardAt: number
  beatMs: number
}

/**
 * The other buses on the channel, by their sequence numbers. Every bus numbers its payloads 1, 2,
 * 3… (heartbeats included) and sends a heartbeat every `heartbeat`, so a receiver that skips a
 * number, or stops hearing from a bus, knows it missed messages — also where no link of its own
 * failed: a cluster subscriber that ioredis moved to another node, a node that relays nothing, a
 * sender left on a demoted Sentinel master.
 */
export class Senders {
  private readonly known = new Map<string, Sender>()

  constructor(private readonly defaultBeatMs: number) {}

  /**
   * A payload of bus `from`, numbered `seq`. `missed`: payloads of it before this one never
   * arrived; `first`: it was not known (new, or heard again after its silence).
   */
  heard(
    from: string,
    seq: number,
    payload: { beat?: number; farewell?: boolean },
    now: number,
  ): { first: boolean; missed: boolean } {
    const sender = this.known.get(from)
    if (sender === undefined) {
      if (!payload.farewell)
        this.known.set(from, { next: seq + 1, heardAt: now, beatMs: payload.beat ?? this.defaultBeatMs })
      // Its earlier payloads were sent before this bus listened, or lost: either way they may name
      // keys cached here.
      return { first: true, missed: seq !== 1 }
    }
    // A bus that closed says so: its silence from then on is no loss.
    if (payload.farewell) this.known.delete(from)
    const missed = seq > sender.next
    sender.next = Math.max(sender.next, seq + 1)
    sender.heardAt = now
    if (payload.beat !== undefined) sender.beatMs = payload.beat
    return { first: false, missed }
  }

  /**
   * Forgets the buses not heard from for two of their heartbeats plus `slackMs` (gone, or cut off
   * from this one: what they sent meanwhile is lost here). Returns how many.
   */
  forgetSilent(now: number, slackMs: number): number {
    let silent = 0
    for (const [id, sender] of this.known) {
      if (now - sender.heardAt <= 2 * sender.beatMs + slackMs) continue
      this.known.delete(id)
      silent++
    }
    return silent
  }
}
