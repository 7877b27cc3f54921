// `crvm bench`: the checkpoint/restore hot path on the runtime it runs on,
// each figure next to a plain copy of the same number of bytes measured in
// the same process. Prints a Markdown table; `--json FILE` writes every
// sample. `bench/run.mjs` runs it on Node, Deno and Bun and combines them.
// A benchmark records figures: it never fails on a time. It does fail when
// a restored guest's memory differs from the checkpointed one.
import { type CheckpointStats, dumpVm } from "../checkpoint/dump.ts";
import { restoreMemory } from "../checkpoint/memory.ts";
import { MemoryPool } from "../checkpoint/pool.ts";
import { type LoadedModule, restoreVm } from "../checkpoint/restore.ts";
import { CrvmError, SnapshotError } from "../errors.ts";
import type { Host } from "../host/mod.ts";
import { instrumentModule } from "../instrument/mod.ts";
import type { Task } from "../sched/task.ts";
import { Vm } from "../sched/vm.ts";
import { decodeSnapshot, Hashing, PAGE_SIZE, type SnapshotImage } from "../snapshot/mod.ts";
import { FdTable } from "../wasi/fd_table.ts";
import { stdioFds } from "../wasi/preopens.ts";
import { readImage, writeImage } from "../api/images.ts";

export interface BenchOptions {
  quick: boolean;
  /** Write the full record (every sample) here. */
  json?: string;
  /** Directory for the image files (default $TMPDIR or /tmp). */
  dir?: string;
}

/**
 * Guest: grows its memory to MIB MiB, writes distinct non-zero 8-byte words
 * to every STRIDE-th 64 KiB page, then calls sched_yield forever (the VM is
 * frozen there). Distinct pages: the format elides zero pages and stores
 * identical pages once, so a constant fill would measure neither hashing
 * nor copying. Word at address a: (a + 1) * 0x9E3779B97F4A7C15.
 */
const MEMFILL_WAT = `(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sched_yield" (func $sched_yield (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (func $parse (param $p i32) (result i32)
    (local $n i32) (local $c i32)
    (if (i32.eqz (i32.load8_u (local.get $p))) (then (call $proc_exit (i32.const 2))))
    (block $done
      (loop $next
        (local.set $c (i32.load8_u (local.get $p)))
        (br_if $done (i32.eqz (local.get $c)))
        (if (i32.or (i32.lt_u (local.get $c) (i32.const 48)) (i32.gt_u (local.get $c) (i32.const 57)))
          (then (call $proc_exit (i32.const 2))))
        (local.set $n (i32.add (i32.mul (local.get $n) (i32.const 10)) (i32.sub (local.get $c) (i32.const 48))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $next)))
    (local.get $n))
  (func (export "_start")
    (local $argc i32) (local $mib i32) (local $stride i32) (local $pages i32)
    (local $page i32) (local $addr i32) (local $end i32)
    (local.set $mib (i32.const 1))
    (local.set $stride (i32.const 1))
    (drop (call $args_sizes_get (i32.const 0) (i32.const 4)))
    (local.set $argc (i32.load (i32.const 0)))
    (if (i32.or (i32.gt_u (local.get $argc) (i32.const 200)) (i32.gt_u (i32.load (i32.const 4)) (i32.const 60000)))
      (then (call $proc_exit (i32.const 2))))
    (drop (call $args_get (i32.const 16) (i32.const 1024)))
    (if (i32.ge_u (local.get $argc) (i32.const 2)) (then (local.set $mib (call $parse (i32.load (i32.const 20))))))
    (if (i32.ge_u (local.get $argc) (i32.const 3)) (then (local.set $stride (call $parse (i32.load (i32.const 24))))))
    (if (i32.or (i32.eqz (local.get $mib)) (i32.gt_u (local.get $mib) (i32.const 4095))) (then (call $proc_exit (i32.const 2))))
    (if (i32.eqz (local.get $stride)) (then (call $proc_exit (i32.const 2))))
    (local.set $pages (i32.mul (local.get $mib) (i32.const 16)))
    (if (i32.gt_u (local.get $pages) (memory.size))
      (then (if (i32.eq (memory.grow (i32.sub (local.get $pages) (memory.size))) (i32.const -1))
        (then (call $proc_exit (i32.const 3))))))
    (block $filled
      (loop $pageloop
        (br_if $filled (i32.ge_u (local.get $page) (local.get $pages)))
        (local.set $addr (i32.shl (local.get $page) (i32.const 16)))
        (local.set $end (i32.add (local.get $addr) (i32.const 65536)))
        (loop $word
          (i64.store (local.get $addr)
            (i64.mul (i64.add (i64.extend_i32_u (local.get $addr)) (i64.const 1)) (i64.const 0x9E3779B97F4A7C15)))
          (local.set $addr (i32.add (local.get $addr) (i32.const 8)))
          (br_if $word (i32.lt_u (local.get $addr) (local.get $end))))
        (local.set $page (i32.add (local.get $page) (local.get $stride)))
        (br $pageloop)))
    (loop $idle (drop (call $sched_yield)) (br $idle))))`;

interface Case {
  mib: number;
  /** Every `stride`-th page is written (1 = all). */
  stride: number;
  /** Only the copy and the checkpoint to memory (the dense 1 GiB reference for the sparse case). */
  checkpointOnly?: boolean;
}

/** Median, extremes and every sample of one measurement (ms, 2 decimals). */
export interface Stat {
  median: number;
  min: number;
  max: number;
  samples: number[];
}

interface CaseResult {
  memoryMiB: number;
  nonZeroPages: number;
  reps: number;
  copyMs: Stat;
  /** The same copy in 64 KiB pieces (informational: V8 copies one huge range markedly slower than many small ones). */
  copyPagedMs: Stat;
  checkpointMemMs: Stat;
  /** Where the checkpoint's time goes: dumpVm with a sink that keeps views (no copy), and the scan + page ids alone. */
  checkpointViewsMs: Stat;
  scanHashMs: Stat;
  checkpointFileMs?: Stat;
  /** The floor for the file figures: the image's bytes written in one piece (write, fsync, rename) and read back. */
  writeFloorMs?: Stat;
  readFloorMs?: Stat;
  imageBytes: number;
  restoreMemFresh?: { decodeMs: Stat; restoreMs: Stat; totalMs: Stat };
  restoreMemPooled?: { decodeMs: Stat; restoreMs: Stat; totalMs: Stat };
  restoreFilePooled?: { readMs: Stat; restoreMs: Stat; totalMs: Stat };
  /** Untimed part of the pooled path: `MemoryPool.release` (zeroing the memory) after each restore. */
  poolReleaseMs?: Stat;
  /** "restoreVm": restoreVm with `memories`; "emulated": this build's Task cannot take a pooled memory, so the bench instantiated the pool's module variant itself and ran restoreMemory (see bench/README.md). */
  pooledVia?: "restoreVm" | "emulated";
  incremental?: { changedPages: number; checkpointMs: Stat; imageBytes: number; bytesRatio: number };
  verified: boolean;
  ratios: Record<string, number>;
}

const MiB = 1 << 20;
const now = () => performance.now();
export const r2 = (x: number) => Math.round(x * 100) / 100;

export function stat(samples: number[]): Stat {
  const s = [...samples].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { median: r2(median), min: r2(s[0]!), max: r2(s[s.length - 1]!), samples: samples.map(r2) };
}


function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Int32Array(a.buffer, a.byteOffset, a.length >> 2);
  const y = new Int32Array(b.buffer, b.byteOffset, b.length >> 2);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

/** A host whose stdio goes nowhere: the guest's output is not part of the figures. */
function quiet(host: Host): Host {
  return { ...host, stdio: { write: () => {}, read: () => Promise.resolve(null), isTerminal: () => false } };
}

/** Runs `vm` until pid 1 is frozen in its idle `sched_yield` (not at a fuel yield inside the fill). */
async function freezeAtIdle(vm: Vm, what: string): Promise<Task> {
  const task = vm.tasks.get(1)!;
  for (let tries = 0; tries < 100_000; tries++) {
    vm.requestFreeze({ afterYields: 1000 });
    const out = await vm.run();
    if (out.kind === "exited") throw new CrvmError(`${what}: guest exited with ${out.code}${out.trap ? ` (trap: ${out.trap})` : ""}`);
    if (task.pending?.call === "wasi_snapshot_preview1.sched_yield") return task;
    vm.thaw();
  }
  throw new CrvmError(`${what}: guest never reached its idle loop`);
}

/** The cost restoreVm would have over a pooled memory, for a build whose Task cannot take one: instantiate the pool's variant, restore the memory. */
async function emulatePooledRestore(image: SnapshotImage, loaded: LoadedModule, pool: MemoryPool): Promise<WebAssembly.Memory> {
  const tr = image.vm.tasks[0]!;
  const lease = await pool.lease(loaded.module, tr.memory.pages);
  const imports: Record<string, Record<string, unknown>> = { [lease.import.module]: { [lease.import.name]: lease.memory } };
  for (const imp of loaded.module.imports) (imports[imp.module] ??= {})[imp.name] = () => 0;
  new WebAssembly.Instance(lease.compiled, imports as WebAssembly.Imports);
  restoreMemory(lease.memory, tr.memory, image.pages, "bench", { dirtyPages: lease.dirtyPages });
  return lease.memory;
}

async function benchCase(c: Case, reps: number, host: Host, loaded: LoadedModule, dir: string, log: (s: string) => void): Promise<CaseResult> {
  const runtime = `${host.runtime.name} ${host.runtime.version}`;
  const what = `${c.mib} MiB, every ${c.stride === 1 ? "" : `${c.stride}th `}page written`;
  log(what);
  host.collectGarbage();
  const vm = new Vm(host);
  const fds = new FdTable();
  for (const f of stdioFds(host)) fds.add(f);
  vm.spawn(loaded.module, loaded.compiled, { args: ["memfill", String(c.mib), String(c.stride)], env: [], fds });
  const task = await freezeAtIdle(vm, what);
  const mem = new Uint8Array(task.memory.buffer);
  const hashing = await Hashing.create();
  const pool = await MemoryPool.create();
  const file = `${dir}/crvm-bench-${host.runtime.name}-${c.mib}.snap`;
  const fileChild = `${dir}/crvm-bench-${host.runtime.name}-${c.mib}-incr.snap`;
  const rawFile = `${dir}/crvm-bench-${host.runtime.name}-${c.mib}.raw`;

  const copyDst = new Uint8Array(mem.length);
  let size = 0;
  dumpVm(vm, hashing, (ch) => void (size += ch.length), { runtime });
  const image = new Uint8Array(size + 65536);
  let off = 0;
  // Chunks can be views of guest memory (valid until the guest runs again): the sink copies them.
  const sink = (ch: Uint8Array) => {
    image.set(ch, off);
    off += ch.length;
  };
  let stats: CheckpointStats | null = null;
  const s: Record<string, number[]> = {};
  const add = (k: string, v: number) => void (s[k] ??= []).push(v);
  let pooledVia: CaseResult["pooledVia"] = "restoreVm";
  let verified = false;
  const restoreOpts = { host, load: () => Promise.resolve(loaded), dirs: new Map<string, string>(), name: "bench" };

  for (let rep = 0; rep <= reps; rep++) {
    // rep 0 warms up: engines tier up, buffers and pooled memories get touched.
    const keep = rep > 0 ? add : () => {};
    let a = now();
    copyDst.set(mem);
    keep("copy", now() - a);
    a = now();
    for (let at = 0; at < mem.length; at += PAGE_SIZE) copyDst.set(mem.subarray(at, at + PAGE_SIZE), at);
    keep("copyPaged", now() - a);

    off = 0;
    a = now();
    stats = dumpVm(vm, hashing, sink, { runtime });
    keep("ckptMem", now() - a);

    const views: Uint8Array[] = [];
    a = now();
    dumpVm(vm, hashing, (ch) => void views.push(ch), { runtime });
    keep("ckptViews", now() - a);
    views.length = 0;

    a = now();
    const scan = hashing.scanMemory(task.memory);
    for (let p = scan.nextNonZero(0); p < scan.pages; p = scan.nextNonZero(p + 1)) scan.pageId(p);
    keep("scanHash", now() - a);
    if (c.checkpointOnly) continue;
    const bytes = image.subarray(0, off);

    a = now();
    await writeImage(host, vm, file);
    keep("ckptFile", now() - a);
    a = now();
    host.fs.writeFileAtomic(rawFile, bytes);
    keep("writeFloor", now() - a);
    a = now();
    host.fs.readFile(rawFile);
    keep("readFloor", now() - a);

    // Restore from memory into fresh memories (the engine allocates, pages fault in).
    a = now();
    let img = await decodeSnapshot(bytes, { name: "bench" });
    let b = now();
    let restored: Vm | null = await restoreVm(img, restoreOpts);
    let e = now();
    keep("freshDecode", b - a);
    keep("freshRestore", e - b);
    keep("freshTotal", e - a);
    restored = null;
    host.collectGarbage();

    // From memory into pooled memories.
    a = now();
    img = await decodeSnapshot(bytes, { name: "bench" });
    b = now();
    let pooled: WebAssembly.Memory;
    if (pooledVia === "restoreVm") {
      try {
        restored = await restoreVm(img, { ...restoreOpts, memories: pool });
        pooled = restored.tasks.get(1)!.memory;
      } catch (err) {
        if (!(err instanceof SnapshotError && /pooled memory/.test(err.message))) throw err;
        log(`  ${err.message}: measuring the pooled restore without restoreVm`);
        pooledVia = "emulated";
        b = now();
        pooled = await emulatePooledRestore(img, loaded, pool);
      }
    } else {
      pooled = await emulatePooledRestore(img, loaded, pool);
    }
    e = now();
    keep("pooledDecode", b - a);
    keep("pooledRestore", e - b);
    keep("pooledTotal", e - a);
    a = now();
    pool.release(pooled);
    keep("poolRelease", now() - a);
    restored = null;

    // From the file into pooled memories.
    a = now();
    const loadedImage = await readImage(host, file);
    b = now();
    if (pooledVia === "restoreVm") {
      restored = await restoreVm(loadedImage.image, { ...restoreOpts, memories: pool });
      pooled = restored.tasks.get(1)!.memory;
    } else {
      pooled = await emulatePooledRestore(loadedImage.image, loaded, pool);
    }
    e = now();
    keep("fileRead", b - a);
    keep("fileRestore", e - b);
    keep("fileTotal", e - a);
    if (rep === reps) {
      // Untimed: the restored guest runs on to its next yield; its memory must equal the original.
      const got = restored ? new Uint8Array((await freezeAtIdle(restored, `${what} (restored)`)).memory.buffer) : new Uint8Array(pooled.buffer);
      verified = sameBytes(got, mem);
      if (!verified) throw new CrvmError(`${what}: the restored memory differs from the checkpointed one`);
    }
    pool.release(pooled);
    restored = null;
    host.collectGarbage();
  }

  const r: CaseResult = {
    memoryMiB: c.mib,
    nonZeroPages: Math.ceil((c.mib * 16) / c.stride),
    reps,
    copyMs: stat(s.copy!),
    copyPagedMs: stat(s.copyPaged!),
    checkpointMemMs: stat(s.ckptMem!),
    checkpointViewsMs: stat(s.ckptViews!),
    scanHashMs: stat(s.scanHash!),
    imageBytes: stats!.bytes,
    verified,
    ratios: {},
  };
  const copy = r.copyMs.median;
  r.ratios.checkpointMem = r2(r.checkpointMemMs.median / copy);
  if (!c.checkpointOnly) {
    r.checkpointFileMs = stat(s.ckptFile!);
    r.writeFloorMs = stat(s.writeFloor!);
    r.readFloorMs = stat(s.readFloor!);
    r.restoreMemFresh = { decodeMs: stat(s.freshDecode!), restoreMs: stat(s.freshRestore!), totalMs: stat(s.freshTotal!) };
    r.restoreMemPooled = { decodeMs: stat(s.pooledDecode!), restoreMs: stat(s.pooledRestore!), totalMs: stat(s.pooledTotal!) };
    r.restoreFilePooled = { readMs: stat(s.fileRead!), restoreMs: stat(s.fileRestore!), totalMs: stat(s.fileTotal!) };
    r.poolReleaseMs = stat(s.poolRelease!);
    r.pooledVia = pooledVia;
    r.ratios.checkpointFile = r2(r.checkpointFileMs.median / copy);
    r.ratios.restoreMemFresh = r2(r.restoreMemFresh.totalMs.median / copy);
    r.ratios.restoreMemPooled = r2(r.restoreMemPooled.totalMs.median / copy);
    r.ratios.restoreVmPooled = r2(r.restoreMemPooled.restoreMs.median / copy);
    r.ratios.restoreFilePooled = r2(r.restoreFilePooled.totalMs.median / copy);

    // Incremental: 1% of the pages change (at least one), then a checkpoint against the full image.
    const parentImage = (await readImage(host, file, { verifyPages: false })).image;
    const parent = {
      ref: { id: parentImage.meta.id, digest: parentImage.digest, path: file },
      pages: new Set(parentImage.pages.keys()),
      modules: new Set(parentImage.modules.map((m) => m.sourceHash)),
    };
    // 1% of the non-zero pages (at least one) change, each to content no other page has (so dedup cannot hide it).
    const nonZero: number[] = [];
    for (let p = 0; p < c.mib * 16; p += c.stride) nonZero.push(p);
    const changed = Math.max(1, Math.round(nonZero.length / 100));
    const step = Math.floor(nonZero.length / changed);
    const words = new DataView(mem.buffer, mem.byteOffset, mem.byteLength);
    for (let i = 0; i < changed; i++) {
      const at = nonZero[i * step]! * PAGE_SIZE + 8;
      words.setUint32(at, words.getUint32(at, true) ^ ((Math.imul(i + 1, 0x9e3779b1) | 1) >>> 0), true);
    }
    const incr: number[] = [];
    let incrBytes = 0;
    for (let rep = 0; rep <= reps; rep++) {
      off = 0;
      const a = now();
      const st = dumpVm(vm, hashing, sink, { runtime, parent });
      if (rep > 0) incr.push(now() - a);
      incrBytes = st.bytes;
    }
    // The incremental image restores, with its parent, to the changed memory.
    host.fs.writeFileAtomic(fileChild, image.subarray(0, off));
    const child = await readImage(host, fileChild);
    const back = await restoreVm(child.image, restoreOpts);
    if (!sameBytes(new Uint8Array((await freezeAtIdle(back, `${what} (incremental)`)).memory.buffer), mem)) {
      throw new CrvmError(`${what}: the memory restored from the incremental image differs`);
    }
    r.incremental = { changedPages: changed, checkpointMs: stat(incr), imageBytes: incrBytes, bytesRatio: Math.round((incrBytes / r.imageBytes) * 10000) / 10000 };
    r.ratios.incrementalCheckpoint = r2(r.incremental.checkpointMs.median / copy);
    for (const f of [file, fileChild, rawFile]) if (host.fs.exists(f)) host.fs.unlink(f);
  }
  log(`  copy ${copy} ms; checkpoint ${r.checkpointMemMs.median} ms (${r.ratios.checkpointMem}×)` +
    (r.restoreMemPooled ? `; restore pooled ${r.restoreMemPooled.totalMs.median} ms (${r.ratios.restoreMemPooled}×), fresh ${r.restoreMemFresh!.totalMs.median} ms (${r.ratios.restoreMemFresh}×)` : ""));
  return r;
}

const f = (x: number | undefined) => (x === undefined ? "–" : x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
const x = (ratio: number | undefined) => (ratio === undefined ? "–" : `${ratio >= 10 ? ratio.toFixed(1) : ratio.toFixed(2)}×`);
const mib = (n: number) => `${f(n / MiB)} MiB`;

/** Markdown rows for one runtime's results (bench/run.mjs prints the same table for several). */
export function benchTable(runs: { runtime: string; cases: CaseResult[] }[]): string {
  const lines = [
    "| memory (non-zero) | runtime | copy | ckpt → memory | ckpt → file | image | restore, fresh memory | restore, pooled (restoreVm alone) | restore from file, pooled | incremental ckpt (1% changed) | incremental image |",
    "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
  ];
  const rows = runs.flatMap((r) => r.cases.map((c) => ({ r, c })));
  rows.sort((a, b) => a.c.memoryMiB - b.c.memoryMiB || b.c.nonZeroPages - a.c.nonZeroPages);
  for (const { r, c } of rows) {
    const nz = c.nonZeroPages === c.memoryMiB * 16 ? "all" : `${f(c.nonZeroPages / 16)} MiB`;
    const pooled = c.restoreMemPooled
      ? `${f(c.restoreMemPooled.totalMs.median)} (${x(c.ratios.restoreMemPooled)}; ${x(c.ratios.restoreVmPooled)})${c.pooledVia === "emulated" ? "*" : ""}`
      : "–";
    lines.push(
      `| ${c.memoryMiB} MiB (${nz}) | ${r.runtime} | ${f(c.copyMs.median)} | ${f(c.checkpointMemMs.median)} (${x(c.ratios.checkpointMem)}) | ` +
        `${c.checkpointFileMs ? `${f(c.checkpointFileMs.median)} (${x(c.ratios.checkpointFile)}) [${f(c.writeFloorMs!.median)}]` : "–"} | ${mib(c.imageBytes)} | ` +
        `${c.restoreMemFresh ? `${f(c.restoreMemFresh.totalMs.median)} (${x(c.ratios.restoreMemFresh)})` : "–"} | ${pooled} | ` +
        `${c.restoreFilePooled ? `${f(c.restoreFilePooled.totalMs.median)} (${x(c.ratios.restoreFilePooled)}) [${f(c.readFloorMs!.median)}]` : "–"} | ` +
        `${c.incremental ? `${f(c.incremental.checkpointMs.median)} (${x(c.ratios.incrementalCheckpoint)})` : "–"} | ` +
        `${c.incremental ? `${mib(c.incremental.imageBytes)} (${(c.incremental.bytesRatio * 100).toFixed(2)}%)` : "–"} |`,
    );
  }
  return lines.join("\n");
}

/**
 * Runs the snapshot benchmark and returns the process exit code.
 *
 * @example
 * await benchCommand(host, { quick: true });   // crvm bench --quick
 */
export async function benchCommand(host: Host, o: BenchOptions): Promise<number> {
  const enc = new TextEncoder();
  const log = (msg: string) => host.stdio.write(2, enc.encode(`[bench ${host.runtime.name}] ${msg}\n`));
  const cases: Case[] = o.quick
    ? [{ mib: 1, stride: 1 }, { mib: 64, stride: 1 }, { mib: 256, stride: 100 }]
    : [{ mib: 1, stride: 1 }, { mib: 64, stride: 1 }, { mib: 512, stride: 1 }, { mib: 1024, stride: 100 }, { mib: 1024, stride: 1, checkpointOnly: true }];
  const reps = o.quick ? 3 : 5;
  const dir = host.resolvePath(o.dir ?? host.env("TMPDIR") ?? "/tmp");
  const started = new Date().toISOString();
  const t0 = now();
  const q = quiet(host);
  const module = await instrumentModule(enc.encode(MEMFILL_WAT), { name: "memfill.wat", cacheDir: null, fs: host.fs });
  const loaded: LoadedModule = { module, compiled: await WebAssembly.compile(module.wasm as Uint8Array<ArrayBuffer>) };
  const results: CaseResult[] = [];
  for (const c of cases) results.push(await benchCase(c, reps, q, loaded, dir, log));
  const runtime = `${host.runtime.name} ${host.runtime.version}`;
  const machine = host.machine();
  const sparse = results.find((r) => r.nonZeroPages < r.memoryMiB * 16 && r.memoryMiB === 1024);
  const dense = results.find((r) => r.nonZeroPages === r.memoryMiB * 16 && r.memoryMiB === 1024);
  const record = {
    runtime: { name: host.runtime.name, version: host.runtime.version },
    machine: { ...machine, memoryGiB: r2(machine.memoryBytes / 2 ** 30) },
    startedAt: started,
    quick: o.quick,
    totalMs: r2(now() - t0),
    cases: results,
    /** Sparse 1 GiB checkpoint over dense 1 GiB checkpoint (target ≤ 0.10). */
    sparseOverDense: sparse && dense ? Math.round((sparse.checkpointMemMs.median / dense.checkpointMemMs.median) * 1000) / 1000 : null,
    meaning: {
      units: "Milliseconds (performance.now()), median of `reps` after one warm-up; × = median / copyMs.median of the same case in the same process.",
      copyMs: "Uint8Array.prototype.set of the whole guest memory into an allocated, touched buffer (the baseline of every ×).",
      copyPagedMs: "The same copy as 64 KiB set() calls (informational).",
      checkpointMemMs: "dumpVm into one preallocated buffer (the sink copies every chunk).",
      checkpointViewsMs: "The same dumpVm with a sink that only keeps the chunks (views of guest memory): no copy.",
      scanHashMs: "Hashing.scanMemory over the guest memory: zero-page scan and the id of every non-zero page, nothing else.",
      checkpointFileMs: "writeImage (src/cli/images.ts) to a file in `dir`: dumpVm, write, fsync, rename.",
      writeFloorMs: "The image's bytes written with one writeFileAtomic (write, fsync, rename): what the disk costs; shown in [brackets] after ckpt → file.",
      readFloorMs: "host.fs.readFile of that file (page cache): shown in [brackets] after restore from file.",
      restoreMemFresh: "decodeSnapshot (every page's hash verified) + restoreVm into a fresh Vm; the engine allocates each memory.",
      restoreMemPooled: "The same with restoreVm's `memories` pool (memories released back after each restore; release time in poolReleaseMs).",
      restoreFilePooled: "readImage (read + decode + verify) + restoreVm with the pool.",
      incremental: "After 1% of the non-zero pages changed (at least one; each to content no other page has): dumpVm with `parent` (the full image's page ids) into memory; bytesRatio = its bytes / the full image's.",
    },
  };
  const table = benchTable([{ runtime, cases: results }]);
  host.stdio.write(1, enc.encode(`${table}\n`));
  if (results.some((r) => r.pooledVia === "emulated")) {
    host.stdio.write(1, enc.encode("\n* restoreVm cannot take a pooled memory in this build (TaskSpec.pooled): instantiate + restoreMemory measured directly.\n"));
  }
  if (record.sparseOverDense !== null) host.stdio.write(1, enc.encode(`\nsparse 1 GiB / dense 1 GiB checkpoint: ${record.sparseOverDense}\n`));
  if (o.json !== undefined) host.fs.writeFileAtomic(host.resolvePath(o.json), enc.encode(JSON.stringify(record) + "\n"));
  return 0;
}
