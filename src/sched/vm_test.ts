// The scheduler: compute-bound tasks share the CPU (fuel preemption), and
// the interleaving is deterministic.
import { describe, expect, it } from "vitest";
import { createHost } from "../host/mod.ts";
import { instrumentModule, watToWasm } from "../instrument/mod.ts";
import { FdTable } from "../wasi/fd_table.ts";
import { Vm } from "./vm.ts";

// Counts to 30 million in memory[1024], then exits: no system call on the way.
const SPIN = `(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $l
      (i32.store (i32.const 1024) (i32.add (i32.load (i32.const 1024)) (i32.const 1)))
      (br_if $l (i32.lt_u (i32.load (i32.const 1024)) (i32.const 30000000))))
    (call $exit (i32.const 0))))`;

async function twoSpinners() {
  const host = createHost();
  const module = await instrumentModule(await watToWasm(SPIN, "spin.wat"), { name: "spin.wat", cacheDir: null, fs: host.fs });
  const compiled = await WebAssembly.compile(module.wasm as Uint8Array<ArrayBuffer>);
  const vm = new Vm(host);
  const a = vm.spawn(module, compiled, { args: ["a"], env: [], fds: new FdTable() });
  const b = vm.spawn(module, compiled, { args: ["b"], env: [], fds: new FdTable() });
  b.ppid = a.pid;
  const out = await vm.run();
  const counter = (t: typeof a) => new DataView(t.memory.buffer).getUint32(1024, true);
  return { out, a: counter(a), b: counter(b), yields: vm.yieldCount };
}

describe("scheduler", () => {
  it("preempts a compute-bound task so another one progresses as much", async () => {
    const r = await twoSpinners();
    expect(r.out).toEqual({ kind: "exited", code: 0, trap: null });
    expect(r.a).toBe(30_000_000);
    // Equal slices of fuel: the other task is at most a couple of slices behind.
    expect(r.b).toBeGreaterThan(20_000_000);
  }, 60_000);

  it("switches at the same points in every run", async () => {
    const [x, y] = [await twoSpinners(), await twoSpinners()];
    expect(y.b).toBe(x.b);
    expect(y.yields).toBe(x.yields);
  }, 60_000);
});
