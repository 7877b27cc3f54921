// crvm benchmark, one runtime: the snapshot hot path, the run-time cost of
// instrumentation and the transform cost, all measured in this one process so
// that the ratios compare like with like. Prints one JSON document (the last
// line of stdout); progress goes to stderr. `bench/run.mjs` runs this on
// Node, Deno and Bun and tabulates the results.
//
//   node --stack-size=4000 --expose-gc dist/bench/snapshot.js [--quick] [--only snapshot,overhead,transform]
//   npx deno run -A --v8-flags=--stack-size=4000,--expose-gc bench/snapshot.ts [--quick]
//   npx bun bench/snapshot.ts [--quick]
//
// A benchmark records; it never fails on a time. It does fail when a guest
// misbehaves (wrong exit code, a restored memory that differs), because then
// the figures would describe something else.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { ConsoleStdout, File, OpenFile, WASI } from "@bjorn3/browser_wasi_shim";
import { dumpVm } from "../src/checkpoint/dump.ts";
import { type LoadedModule, restoreVm } from "../src/checkpoint/restore.ts";
import { createHost, type Host } from "../src/host/mod.ts";
import { type InstrumentedModule, instrumentModule } from "../src/instrument/mod.ts";
import type { Task } from "../src/sched/task.ts";
import { Vm } from "../src/sched/vm.ts";
import { decodeSnapshot, Hashing } from "../src/snapshot/mod.ts";
import { FdTable } from "../src/wasi/fd_table.ts";
import { stdioFds } from "../src/wasi/preopens.ts";

// ---------------------------------------------------------------- options

interface SnapshotCase {
  /** Guest memory size. */
  mib: number;
  /** Every `stride`-th 64 KiB page is written (1 = all). */
  stride: number;
}

interface Options {
  quick: boolean;
  sections: Set<string>;
  cases: SnapshotCase[];
  /** Timed repetitions of the snapshot path (after one warm-up). */
  snapshotReps: number;
  /** Timed runs of each of the two compute variants (after one warm-up run each). */
  overheadReps: number;
  computeScale: string;
  /** Cold transforms of compute.wasm (each into a fresh cache directory). */
  coldReps: number;
  /** Cache hits timed per module. */
  cachedReps: number;
  sqlite: boolean;
}

function parseOptions(argv: string[]): Options {
  const quick = argv.includes("--quick");
  const only = argv.indexOf("--only");
  const sections = new Set(only >= 0 ? (argv[only + 1] ?? "").split(",") : ["snapshot", "overhead", "transform"]);
  return quick
    ? {
      quick, sections, cases: [{ mib: 1, stride: 1 }, { mib: 64, stride: 1 }],
      snapshotReps: 3, overheadReps: 1, computeScale: "0.25", coldReps: 1, cachedReps: 3, sqlite: false,
    }
    : {
      quick, sections,
      cases: [{ mib: 1, stride: 1 }, { mib: 64, stride: 1 }, { mib: 512, stride: 1 }, { mib: 1024, stride: 100 }],
      snapshotReps: 5, overheadReps: 5, computeScale: "1", coldReps: 3, cachedReps: 7, sqlite: true,
    };
}

// ---------------------------------------------------------------- helpers

const MiB = 1 << 20;
const now = () => performance.now();
const log = (msg: string) => process.stderr.write(`[bench ${runtimeLabel()}] ${msg}\n`);

function runtimeLabel(): string {
  const g = globalThis as { Deno?: unknown; Bun?: unknown };
  return g.Deno ? "deno" : g.Bun ? "bun" : "node";
}

/** The JavaScript engine under the runtime (Bun's process.versions.v8 is a compatibility fiction). */
function engine(): string {
  const v = process.versions as Record<string, string | undefined>;
  if ((globalThis as { Bun?: unknown }).Bun) return `JavaScriptCore (WebKit ${v.webkit ?? "?"})`;
  const deno = (globalThis as { Deno?: { version: { v8: string } } }).Deno;
  return `V8 ${deno ? deno.version.v8 : v.v8 ?? "?"}`;
}

/** Full collection between measurements, where the runtime lets us (never inside a timed region). */
function collect(): void {
  const g = globalThis as { gc?: () => void; Bun?: { gc(force: boolean): void } };
  if (g.Bun) g.Bun.gc(true);
  else g.gc?.();
}
const canCollect = () => !!((globalThis as { gc?: unknown; Bun?: unknown }).gc ?? (globalThis as { Bun?: unknown }).Bun);

interface Stat {
  median: number;
  min: number;
  max: number;
  samples: number[];
}

const r2 = (x: number) => Math.round(x * 100) / 100;
const r3 = (x: number) => Math.round(x * 1000) / 1000;

function stat(samples: number[]): Stat {
  const s = [...samples].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { median: r2(median), min: r2(s[0]!), max: r2(s[s.length - 1]!), samples: samples.map(r2) };
}

function projectRoot(): string {
  // dist/bench/snapshot.js (Node) or bench/snapshot.ts (Deno, Bun).
  const here = path.dirname(fileURLToPath(import.meta.url));
  return path.basename(path.dirname(here)) === "dist" ? path.resolve(here, "../..") : path.resolve(here, "..");
}

/** The host with stdio swapped for an in-memory one: guest output is kept for checks, never printed. */
function quietHost(base: Host, out: string[]): Host {
  const dec = new TextDecoder();
  return {
    ...base,
    stdio: {
      write: (_fd, data) => void out.push(dec.decode(data)),
      read: () => Promise.resolve(null),
      isTerminal: () => false,
    },
  };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  const n = a.length >> 2;
  const x = new Int32Array(a.buffer, a.byteOffset, n);
  const y = new Int32Array(b.buffer, b.byteOffset, n);
  for (let i = 0; i < n; i++) if (x[i] !== y[i]) return false;
  for (let i = n << 2; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

async function compile(bytes: Uint8Array): Promise<WebAssembly.Module> {
  return await WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>);
}

// ---------------------------------------------------------------- 1. snapshot hot path

interface SnapshotResult {
  memoryMiB: number;
  touchedPages: number;
  touchedMiB: number;
  reps: number;
  /** Time the guest took to grow and fill its memory (one run, informational). */
  fillMs: number;
  copyMs: Stat;
  checkpointMs: Stat;
  checkpointRatio: number;
  checkpointViewsMs: Stat;
  checkpointViewsRatio: number;
  imageBytes: number;
  imageMiB: number;
  imageRatio: number;
  decodeMs: Stat;
  restoreMs: Stat;
  decodeRestoreMs: Stat;
  decodeRestoreRatio: number;
  restoredMemoryVerified: boolean;
}

/** Runs `vm` until its pid 1 is frozen in `wasi_snapshot_preview1.sched_yield` (not at a fuel yield inside the fill). */
async function freezeAtIdle(vm: Vm, what: string): Promise<Task> {
  const task = vm.tasks.get(1)!;
  for (let tries = 0; tries < 100_000; tries++) {
    vm.requestFreeze({ afterYields: 1000 });
    const out = await vm.run();
    if (out.kind === "exited") throw new Error(`${what}: guest exited with ${out.code}${out.trap ? ` (trap: ${out.trap})` : ""}`);
    if (task.pending?.call === "wasi_snapshot_preview1.sched_yield") return task;
    vm.thaw();
  }
  throw new Error(`${what}: guest never reached its idle loop`);
}

async function benchSnapshot(o: Options, host: Host, hashing: Hashing, root: string): Promise<SnapshotResult[]> {
  const runtime = `${host.runtime.name} ${host.runtime.version}`;
  const out: string[] = [];
  const qhost = quietHost(host, out);
  const watPath = path.join(root, "bench/memfill.wat");
  const module = await instrumentModule(fs.readFileSync(watPath), { name: "memfill.wat", cacheDir: null, fs: host.fs });
  const loaded: LoadedModule = { module, compiled: await compile(module.wasm) };
  const results: SnapshotResult[] = [];

  for (const c of o.cases) {
    const what = `memfill ${c.mib} MiB stride ${c.stride}`;
    log(`snapshot: ${what}`);
    collect();
    const vm = new Vm(qhost);
    const fds = new FdTable();
    for (const f of stdioFds(qhost)) fds.add(f);
    vm.spawn(module, loaded.compiled, { args: ["memfill", String(c.mib), String(c.stride)], env: [], fds });
    const t0 = now();
    const task = await freezeAtIdle(vm, what);
    const fillMs = now() - t0;
    const mem = new Uint8Array(task.memory.buffer);
    if (mem.length !== c.mib * MiB) throw new Error(`${what}: memory is ${mem.length} bytes, expected ${c.mib * MiB}`);

    // (d) a plain copy of the same number of bytes into a buffer that exists and is touched already.
    const copyDst = new Uint8Array(mem.length);
    // (a) checkpoint into one preallocated buffer: the sink copies every chunk (chunks can be views of
    // guest memory, which are only valid until the guest runs again). Sized by a first dump.
    let imageLen = 0;
    dumpVm(vm, hashing, (ch) => void (imageLen += ch.length), { runtime });
    const image = new Uint8Array(imageLen + 65536);
    let off = 0;
    const copySink = (ch: Uint8Array) => {
      image.set(ch, off);
      off += ch.length;
    };
    // (a') the same checkpoint, the sink keeping only the views (scan + hash + framing, no copy).
    let views: Uint8Array[] = [];
    const viewSink = (ch: Uint8Array) => void views.push(ch);

    const s = { copy: [] as number[], ckpt: [] as number[], views: [] as number[], decode: [] as number[], restore: [] as number[] };
    let verified = false;
    for (let rep = 0; rep <= o.snapshotReps; rep++) {
      // rep 0 is the warm-up: it touches every buffer and lets the engine compile the hot code.
      let a = now();
      copyDst.set(mem);
      const copy = now() - a;

      off = 0;
      a = now();
      dumpVm(vm, hashing, copySink, { runtime });
      const ckpt = now() - a;
      imageLen = off;

      views = [];
      a = now();
      dumpVm(vm, hashing, viewSink, { runtime });
      const vms = now() - a;
      views = [];

      a = now();
      const img = await decodeSnapshot(image.subarray(0, imageLen), { name: "bench" });
      const b = now();
      let restored: Vm | null = await restoreVm(img, { host: qhost, load: () => Promise.resolve(loaded), dirs: new Map(), name: "bench" });
      const e = now();

      if (rep > 0) {
        s.copy.push(copy);
        s.ckpt.push(ckpt);
        s.views.push(vms);
        s.decode.push(b - a);
        s.restore.push(e - b);
      }
      if (rep === o.snapshotReps) {
        // Untimed: the restored VM runs on to its next yield, and its memory must equal the original.
        const rt = await freezeAtIdle(restored, `${what} (restored)`);
        verified = sameBytes(new Uint8Array(rt.memory.buffer), mem);
        if (!verified) throw new Error(`${what}: restored memory differs from the checkpointed one`);
      }
      restored = null;
      collect();
    }
    const copyMs = stat(s.copy);
    const checkpointMs = stat(s.ckpt);
    const checkpointViewsMs = stat(s.views);
    const decodeMs = stat(s.decode);
    const restoreMs = stat(s.restore);
    const decodeRestoreMs = stat(s.decode.map((d, i) => d + s.restore[i]!));
    const touchedPages = Math.ceil((c.mib * 16) / c.stride);
    results.push({
      memoryMiB: c.mib,
      touchedPages,
      touchedMiB: touchedPages / 16,
      reps: o.snapshotReps,
      fillMs: r2(fillMs),
      copyMs,
      checkpointMs,
      checkpointRatio: r2(checkpointMs.median / copyMs.median),
      checkpointViewsMs,
      checkpointViewsRatio: r2(checkpointViewsMs.median / copyMs.median),
      imageBytes: imageLen,
      imageMiB: r3(imageLen / MiB),
      imageRatio: r3(imageLen / mem.length),
      decodeMs,
      restoreMs,
      decodeRestoreMs,
      decodeRestoreRatio: r2(decodeRestoreMs.median / copyMs.median),
      restoredMemoryVerified: verified,
    });
    log(`  copy ${copyMs.median} ms, checkpoint ${checkpointMs.median} ms, decode+restore ${decodeRestoreMs.median} ms, image ${r3(imageLen / MiB)} MiB`);
  }
  return results;
}

// ---------------------------------------------------------------- 2. instrumentation overhead

interface OverheadResult {
  guest: string;
  args: string[];
  reps: number;
  plainMs: Stat;
  crvmMs: Stat;
  ratio: number;
  warmupPlainMs: number;
  warmupCrvmMs: number;
  /** crvm runs (warm-up included) that ended in "call stack exhausted" and were run again. */
  crvmStackExhausted: number;
}

/** A crvm run that ended in "call stack exhausted" (see README, Limitations): counted, then run again. */
class StackExhausted extends Error {}

async function runCrvm(host: Host, mod: InstrumentedModule, compiled: WebAssembly.Module, args: string[]): Promise<number> {
  const out: string[] = [];
  const qhost = quietHost(host, out);
  const vm = new Vm(qhost);
  const fds = new FdTable();
  for (const f of stdioFds(qhost)) fds.add(f);
  const t0 = now();
  vm.spawn(mod, compiled, { args, env: [], fds });
  const r = await vm.run();
  const ms = now() - t0;
  if (r.kind === "exited" && r.trap?.startsWith("call stack exhausted")) throw new StackExhausted(r.trap);
  if (r.kind !== "exited" || r.code !== 0 || !out.join("").includes("compute: ok")) {
    throw new Error(`compute under crvm: ${JSON.stringify(r)}, output ${JSON.stringify(out.join("").slice(-300))}`);
  }
  return ms;
}

function runPlain(compiled: WebAssembly.Module, args: string[]): number {
  const lines: string[] = [];
  const t0 = now();
  const wasi = new WASI(args, [], [
    new OpenFile(new File([])),
    ConsoleStdout.lineBuffered((l) => void lines.push(l)),
    ConsoleStdout.lineBuffered((l) => void lines.push(l)),
  ], { debug: false });
  const instance = new WebAssembly.Instance(compiled, {
    wasi_snapshot_preview1: wasi.wasiImport as WebAssembly.ModuleImports,
    crvm: { yield: () => {} },
  });
  const code = wasi.start(instance as unknown as Parameters<WASI["start"]>[0]);
  const ms = now() - t0;
  if (code !== 0 || !lines.includes("compute: ok")) throw new Error(`compute under browser_wasi_shim: exit ${code}, output ${JSON.stringify(lines.slice(-5))}`);
  return ms;
}

async function benchOverhead(o: Options, host: Host, source: Uint8Array, mod: InstrumentedModule): Promise<OverheadResult> {
  const args = ["compute", o.computeScale];
  const plain = await compile(source);
  const instrumented = await compile(mod.wasm);
  log(`overhead: compute ${o.computeScale}, warm-up`);
  // Bun gives no flag for a larger stack to the CLI, and its less optimized wasm tiers use bigger
  // frames: under CPU load (tier-up late) compute's 12,000-deep recursion can exhaust the stack.
  // Such a run is counted and repeated, so the figures survive and the event is on record.
  let stackExhausted = 0;
  const crvm = async (): Promise<number> => {
    for (;;) {
      try {
        return await runCrvm(host, mod, instrumented, args);
      } catch (e) {
        if (!(e instanceof StackExhausted) || ++stackExhausted > 5) throw e;
        log(`  crvm run ended in "${e.message}"; running it again (${stackExhausted} so far)`);
      }
    }
  };
  // One compiled module each, reused by every run: later instances get the tiered-up code.
  const warmupPlainMs = runPlain(plain, args);
  const warmupCrvmMs = await crvm();
  const p: number[] = [];
  const c: number[] = [];
  for (let i = 0; i < o.overheadReps; i++) {
    // Alternate which one goes first, so slow drift (other load, heat) hits both alike.
    collect();
    if (i % 2 === 0) {
      p.push(runPlain(plain, args));
      c.push(await crvm());
    } else {
      c.push(await crvm());
      p.push(runPlain(plain, args));
    }
    log(`  run ${i + 1}/${o.overheadReps}: plain ${r2(p[i]!)} ms, crvm ${r2(c[i]!)} ms`);
  }
  const plainMs = stat(p);
  const crvmMs = stat(c);
  return {
    guest: "guests/build/compute.wasm", args, reps: o.overheadReps, plainMs, crvmMs,
    ratio: r2(crvmMs.median / plainMs.median), warmupPlainMs: r2(warmupPlainMs), warmupCrvmMs: r2(warmupCrvmMs),
    crvmStackExhausted: stackExhausted,
  };
}

// ---------------------------------------------------------------- 3. transform cold vs cached

interface TransformResult {
  module: string;
  sourceBytes: number;
  instrumentedBytes: number;
  coldReps: number;
  coldMs: Stat;
  /** instrumentModule's own transformMs (binaryen work only, without validation and hashing). */
  coldTransformMs: Stat;
  cachedReps: number;
  cachedMs: Stat;
  ratio: number;
}

async function benchTransform(
  o: Options, host: Host, name: string, source: Uint8Array, coldReps: number,
): Promise<{ result: TransformResult; module: InstrumentedModule }> {
  const cold: number[] = [];
  const coldT: number[] = [];
  const cached: number[] = [];
  let cacheDir = "";
  let module: InstrumentedModule | null = null;
  for (let i = 0; i < coldReps; i++) {
    if (cacheDir) fs.rmSync(cacheDir, { recursive: true, force: true });
    cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), "crvm-bench-cache-"));
    collect();
    log(`transform: ${name} cold ${i + 1}/${coldReps}`);
    const t0 = now();
    module = await instrumentModule(source, { name, cacheDir, fs: host.fs });
    cold.push(now() - t0);
    coldT.push(module.transformMs);
    if (module.cached) throw new Error(`${name}: a fresh cache directory served a hit`);
  }
  try {
    for (let i = 0; i <= o.cachedReps; i++) {
      const t0 = now();
      const m = await instrumentModule(source, { name, cacheDir, fs: host.fs });
      const ms = now() - t0;
      if (!m.cached) throw new Error(`${name}: second load was not a cache hit`);
      if (m.wasmHash !== module!.wasmHash) throw new Error(`${name}: cache returned a different module`);
      if (i > 0) cached.push(ms); // the first hit warms up the file and hash code paths
    }
  } finally {
    fs.rmSync(cacheDir, { recursive: true, force: true });
  }
  const coldMs = stat(cold);
  const cachedMs = stat(cached);
  log(`  cold ${coldMs.median} ms, cached ${cachedMs.median} ms`);
  return {
    module: module!,
    result: {
      module: name, sourceBytes: source.length, instrumentedBytes: module!.wasm.length, coldReps, coldMs,
      coldTransformMs: stat(coldT), cachedReps: o.cachedReps, cachedMs, ratio: r2(coldMs.median / cachedMs.median),
    },
  };
}

// ---------------------------------------------------------------- main

const MEANING = {
  units: "Times in milliseconds (wall clock, performance.now()); every Stat is {median, min, max, samples} over the timed repetitions, after one untimed warm-up.",
  snapshot: {
    guest: "bench/memfill.wat: grows its memory to memoryMiB, writes distinct non-zero 8-byte words to every stride-th 64 KiB page (touchedPages of them), then calls sched_yield forever; the VM is frozen in that sched_yield. One guest instance per size; it is checkpointed and restored repeatedly.",
    copyMs: "(d) Uint8Array.prototype.set of the whole guest memory (memoryMiB) into an already allocated and touched buffer of the same size: the floor every ratio is relative to.",
    checkpointMs: "(a) dumpVm of the frozen VM into memory: the sink copies every chunk into one preallocated buffer (sized by an earlier dump). Includes the zero-page scan, xxh128 of every non-zero page, CRCs, JSON records and the copy.",
    checkpointViewsMs: "(a') the same dumpVm with a sink that only keeps the chunks (views of guest memory, valid until the guest runs again): the checkpoint without the copy.",
    imageBytes: "(b) size of the encoded image (zero pages elided, identical pages written once). imageRatio = imageBytes / memory size.",
    decodeMs: "(c1) decodeSnapshot of the image bytes: CRC of every record, xxh128 of every page (verification); pages stay views of the image.",
    restoreMs: "(c2) restoreVm into a fresh Vm until it is ready to run (not run): instantiates the already compiled module (the load callback returns the module loaded before, as a module cache or pool would), grows the fresh memory, copies the pages in, globals, stack, fds.",
    decodeRestoreMs: "(c) decode + restore per repetition (median of the sums).",
    ratios: "checkpointRatio, checkpointViewsRatio, decodeRestoreRatio: the median divided by copyMs.median of the same size in the same process.",
    restoredMemoryVerified: "After the last repetition the restored VM ran to its next yield and its whole memory was compared with the original (untimed).",
    fillMs: "Informational: the instrumented guest growing and writing its memory, once.",
  },
  overhead: {
    plainMs: "The unmodified compute.wasm on @bjorn3/browser_wasi_shim's WASI (debug off, crvm.yield a no-op), instantiate + _start, same compiled module reused.",
    crvmMs: "The instrumented compute.wasm in a crvm Vm (spawn + run to exit; one task, so fuel yields never unwind), same compiled module reused.",
    ratio: "crvmMs.median / plainMs.median. Both ran in the same process, alternating, after one warm-up run each (first runs are tier-up slow).",
    crvmStackExhausted: "crvm runs that trapped with 'call stack exhausted' (compute recurses 12,000 deep; seen on Bun under CPU load, which runs without a larger stack) and were repeated; not in the samples.",
  },
  transform: {
    coldMs: "instrumentModule with a fresh, empty cache directory: validate, transform with binaryen (already loaded in this process), hash, write the cache entry.",
    coldTransformMs: "The transformMs instrumentModule reports for those cold runs (binaryen work only).",
    cachedMs: "instrumentModule again with the same cache directory: read and verify the entry (a cache hit).",
    ratio: "coldMs.median / cachedMs.median.",
  },
};

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  const host = createHost();
  const root = projectRoot();
  const hashing = await Hashing.create();
  const started = new Date();
  const wall0 = now();
  const machine = host.machine();
  log(`start (${o.quick ? "quick" : "full"}); gc between measurements: ${canCollect() ? "yes" : "no"}`);

  // Loading binaryen (ESM with top-level await) is a one-off per process: keep it out of the cold times.
  let a = now();
  await import("binaryen");
  const binaryenLoadMs = r2(now() - a);
  a = now();
  await import("@bytecodealliance/jco");
  const jcoLoadMs = r2(now() - a);

  const result: Record<string, unknown> = {
    runtime: { name: host.runtime.name, version: host.runtime.version, engine: engine() },
    machine: { ...machine, memoryGiB: r2(machine.memoryBytes / 2 ** 30) },
    startedAt: started.toISOString(),
    quick: o.quick,
    gcBetweenMeasurements: canCollect(),
    oneOffs: { binaryenLoadMs, jcoLoadMs },
  };

  let computeModule: InstrumentedModule | null = null;
  const computeSource = fs.readFileSync(path.join(root, "guests/build/compute.wasm"));
  if (o.sections.has("transform")) {
    const transform: TransformResult[] = [];
    const c = await benchTransform(o, host, "compute.wasm", computeSource, o.coldReps);
    transform.push(c.result);
    computeModule = c.module;
    if (o.sqlite) {
      const s = await benchTransform(o, host, "sqlite.wasm", fs.readFileSync(path.join(root, "guests/build/sqlite.wasm")), 1);
      transform.push(s.result);
    }
    result.transform = transform;
  }
  if (o.sections.has("snapshot")) result.snapshot = await benchSnapshot(o, host, hashing, root);
  if (o.sections.has("overhead")) {
    computeModule ??= await instrumentModule(computeSource, { name: "compute.wasm", cacheDir: null, fs: host.fs });
    result.overhead = await benchOverhead(o, host, computeSource, computeModule);
  }
  result.totalMs = r2(now() - wall0);
  result.meaning = MEANING;
  log("done");
  process.stdout.write(JSON.stringify(result) + "\n");
}

await main();
