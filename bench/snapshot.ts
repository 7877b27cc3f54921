// crvm benchmark, one runtime: the run-time cost of instrumentation and the
// transform cost, measured in this one process so that the ratios compare
// like with like (the snapshot hot path is `crvm bench`, src/cli/bench.ts).
// Prints one JSON document (the last
// line of stdout); progress goes to stderr. `bench/run.mjs` runs this on
// Node, Deno and Bun and tabulates the results.
//
//   node --stack-size=4000 --expose-gc dist/bench/snapshot.js [--quick] [--only overhead,transform]
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
import { r2, type Stat, stat } from "../src/cli/bench.ts";
import { createHost, type Host } from "../src/host/mod.ts";
import { type InstrumentedModule, instrumentModule } from "../src/instrument/mod.ts";
import { Vm } from "../src/sched/vm.ts";
import { FdTable } from "../src/wasi/fd_table.ts";
import { canCollect, engine, log } from "./_runtime.ts";
import { stdioFds } from "../src/wasi/preopens.ts";

// ---------------------------------------------------------------- options

interface Options {
  quick: boolean;
  sections: Set<string>;
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
  const sections = new Set(only >= 0 ? (argv[only + 1] ?? "").split(",") : ["overhead", "transform"]);
  return quick
    ? {
      quick, sections, overheadReps: 1, computeScale: "0.25", coldReps: 1, cachedReps: 3, sqlite: false,
    }
    : {
      quick, sections, overheadReps: 5, computeScale: "1", coldReps: 3, cachedReps: 7, sqlite: true,
    };
}

// ---------------------------------------------------------------- helpers

const now = () => performance.now();






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

async function compile(bytes: Uint8Array): Promise<WebAssembly.Module> {
  return await WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>);
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
    host.collectGarbage();
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
    host.collectGarbage();
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
