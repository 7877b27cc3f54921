// The embedding API end to end, in process: run, freeze and thaw at random
// moments, external checkpoints to a stream, restore.
import { describe, expect, it } from "vitest";
import { capturingHost } from "../host/testing.ts";
import { concatBytes } from "../bytes.ts";
import { decodeSnapshot } from "../snapshot/mod.ts";
import { Machine } from "./machine.ts";

const GUESTS = new URL("../../guests/build/", import.meta.url).pathname;

/** Seeded PRNG (mulberry32): the same moments on every run of the test. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function plainRun(guest: string, args: string[] = []): Promise<string> {
  const { host, text: out } = capturingHost();
  const m = await Machine.create(GUESTS + guest, { host, args, cgroupfs: false });
  const r = await m.run();
  expect(r).toEqual({ kind: "exited", code: 0, trap: null });
  return out();
}

describe("Machine", () => {
  it("runs a guest to its exit code", async () => {
    expect(await plainRun("hello.wasm", ["x"])).toContain("argv[1]=x");
  });

  it("freezes and thaws the whole VM at random moments without changing the output", async () => {
    const want = await plainRun("sieve.wasm");
    for (const seed of [1, 2, 3]) {
      const rnd = prng(seed);
      const { host, text: out } = capturingHost();
      const m = await Machine.create(GUESTS + "sieve.wasm", { host, cgroupfs: false });
      let running = m.run();
      let freezes = 0;
      for (;;) {
        const done = await Promise.race([running, sleep(rnd() * 8).then(() => null)]);
        if (done) {
          expect(done.kind).toBe("exited");
          break;
        }
        await m.freeze();
        freezes++;
        expect(await running).toEqual({ kind: "frozen" });
        const yields = m.vm.yieldCount;
        await sleep(rnd() * 4);
        expect(m.vm.yieldCount).toBe(yields); // frozen means nothing runs
        expect(m.tasks().every((t) => t.state === "frozen" || t.state === "zombie")).toBe(true);
        await m.thaw();
        running = m.run();
      }
      expect(out()).toBe(want);
      expect(freezes).toBeGreaterThan(0);
    }
  }, 60_000);

  it("freezes one group while the rest of the tree runs, at random moments, without changing the output", async () => {
    const want = await plainRun("sieve.wasm");
    const rnd = prng(7);
    const { host, text: out } = capturingHost();
    const m = await Machine.create(GUESTS + "sieve.wasm", { host });
    const g = m.vm.freezer.create("/stage");
    const running = m.run();
    let frozenRounds = 0;
    while (!(await Promise.race([running.then(() => true), sleep(rnd() * 6).then(() => false)]))) {
      const live = m.tasks().filter((t) => t.state !== "zombie" && t.pid !== 1);
      if (live.length === 0) continue;
      const picked = live.filter(() => rnd() < 0.3);
      for (const t of picked) m.vm.freezer.attach(t.pid, g);
      await m.freeze("/stage");
      const yields = picked.map((t) => m.vm.tasks.get(t.pid)?.yields);
      await sleep(rnd() * 4);
      expect(picked.map((t) => m.vm.tasks.get(t.pid)?.yields)).toEqual(yields);
      frozenRounds++;
      await m.thaw("/stage");
      for (const t of picked) if (m.vm.tasks.has(t.pid)) m.vm.freezer.attach(t.pid, m.vm.freezer.root);
    }
    expect(await running).toEqual({ kind: "exited", code: 0, trap: null });
    expect(out()).toBe(want);
    expect(frozenRounds).toBeGreaterThan(0);
  }, 60_000);

  it("takes an external checkpoint to a stream while frozen, and the restored machine ends like the original", async () => {
    const want = await plainRun("forktree.wasm");
    const { host, text: out } = capturingHost();
    const m = await Machine.create(GUESTS + "forktree.wasm", { host, cgroupfs: false });
    m.vm.requestFreeze({ afterYields: 60 }); // mid-run, wherever the machine is fast
    expect(await m.run()).toEqual({ kind: "frozen" });
    const before = out();
    const chunks: Uint8Array[] = [];
    const stats = await m.checkpoint(new WritableStream({ write: (c) => void chunks.push(c) }));
    expect(stats.tasks).toBeGreaterThan(0);
    // The original goes on to the end...
    await m.thaw();
    expect((await m.run()).kind).toBe("exited");
    expect(out()).toBe(want);
    // ...and so does its image, printing only what came after the checkpoint.
    const image = await decodeSnapshot(concatBytes(chunks), { name: "stream" });
    const second = capturingHost();
    const r = await Machine.restore(image, { host: second.host });
    expect(await r.run()).toEqual({ kind: "exited", code: 0, trap: null });
    expect(before + second.text()).toBe(want);
  }, 60_000);

  it("restores frozen with `frozen: true` until thawed", async () => {
    const { host } = capturingHost();
    const m = await Machine.create(GUESTS + "forktree.wasm", { host, cgroupfs: false });
    m.vm.requestFreeze({ afterYields: 60 }); // mid-run, however fast the machine is
    expect(await m.run()).toEqual({ kind: "frozen" });
    const chunks: Uint8Array[] = [];
    await m.checkpoint((c) => chunks.push(c.slice()));
    const image = await decodeSnapshot(concatBytes(chunks), { name: "mem" });
    const second = capturingHost();
    const r = await Machine.restore(image, { host: second.host, frozen: true });
    expect(await r.run()).toEqual({ kind: "frozen" });
    expect(r.vm.yieldCount).toBe(0);
    await r.thaw();
    expect((await r.run()).kind).toBe("exited");
  }, 60_000);

  it("refuses to checkpoint tasks that are not frozen, and unknown groups", async () => {
    const { host } = capturingHost();
    const m = await Machine.create(GUESTS + "hello.wasm", { host });
    expect(() => m.checkpoint(() => {})).toThrow(/not frozen/);
    expect(() => m.checkpoint(() => {}, { pid: 7 })).toThrow(/no task 7/);
    expect(() => m.freeze("/nope")).toThrow(/No freezer group "\/nope"/);
  });
});
