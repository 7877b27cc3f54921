import { describe, expect, it } from "vitest";
import { VirtualClock } from "./clock.ts";

describe("VirtualClock", () => {
  it("continues from the checkpointed value on another host clock", () => {
    let host = 1_000_000; // a new process whose clock reads much later
    const c = new VirtualClock(() => host, 5_000_000_000n);
    expect(c.monotonicNs()).toBe(5_000_000_000n);
    host += 2;
    expect(c.monotonicNs()).toBe(5_002_000_000n);
  });

  it("never goes back, even if the host clock does", () => {
    let host = 100;
    const c = new VirtualClock(() => host, 0n);
    host = 150;
    const a = c.monotonicNs();
    host = 120;
    expect(c.monotonicNs()).toBe(a);
  });

  it("says how long until a virtual deadline", () => {
    let host = 0;
    const c = new VirtualClock(() => host, 0n);
    expect(c.msUntil(3_000_000n)).toBe(3);
    host = 5;
    expect(c.msUntil(3_000_000n)).toBe(0);
  });
});
