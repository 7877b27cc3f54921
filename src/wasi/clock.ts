/**
 * The guest's clocks. The monotonic clock is virtual: it continues across
 * checkpoint/restore from the value it had at the checkpoint and never jumps
 * back, whatever the host's own monotonic clock says. The realtime clock is
 * the host's wall clock (as in CRIU: a restored program sees the real date).
 *
 * @example
 * const clock = new VirtualClock(() => performance.now());
 * const t = clock.monotonicNs();
 */
export class VirtualClock {
  #offsetNs: bigint;
  #last = 0n;
  constructor(private readonly hostNowMs: () => number, startNs = 0n) {
    this.#offsetNs = startNs - this.#hostNs();
  }
  #hostNs(): bigint {
    return BigInt(Math.round(this.hostNowMs() * 1e6));
  }
  /** Virtual monotonic time in nanoseconds. */
  monotonicNs(): bigint {
    const t = this.#hostNs() + this.#offsetNs;
    // Rounding of the host clock must never make it go back.
    if (t > this.#last) this.#last = t;
    return this.#last;
  }
  /** Wall clock in nanoseconds since the epoch. */
  realtimeNs(): bigint {
    return BigInt(Date.now()) * 1_000_000n;
  }
  /** Milliseconds of host time until virtual time `ns` (0 if past). */
  msUntil(ns: bigint): number {
    const d = ns - this.monotonicNs();
    return d <= 0n ? 0 : Number(d) / 1e6;
  }
}
