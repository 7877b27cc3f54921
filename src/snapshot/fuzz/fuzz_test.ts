// Fuzzing the image decoder with fast-check, starting from real images that
// the CLI writes in `beforeAll`. The properties (docs/snapshot-format.md,
// "What a decoder verifies"):
//   * whatever the bytes, decoding ends in an image or a SnapshotError: never
//     another exception, never a hang, never an allocation ahead of the input;
//   * an image that decodes satisfies the format's invariants (checked here
//     by `violations`, written apart from schema.ts on purpose);
//   * no single-bit flip anywhere is accepted: every byte is covered by a
//     CRC, a page hash or an exact check;
//   * chunked input (a pipe, a socket) decodes exactly as one buffer does;
//   * an unmodified image re-encodes to the same bytes.
// `npm test` runs about 2,000 cases; `npm run fuzz` sets CRVM_FUZZ_RUNS (the
// total wanted) and every property and exhaustive sweep scales to it.
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import { gunzipSync } from "node:zlib";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { concatBytes } from "../../bytes.ts";
import { encodeJson } from "../../cli/inspect.ts";
import { SnapshotError } from "../../errors.ts";
import { HEADER_SIZE, Kind, LIMITS, MAGIC, PAGE_ID_SIZE, RECORD_HEADER } from "../format.ts";
import {
  bytesToHex, decodeSnapshot, decodeSnapshotStream, FORMAT_VERSION, Hashing, PAGE_SIZE, type RawRecord, type SnapshotImage, SnapshotReader,
  SnapshotWriter,
} from "../mod.ts";
import { type Frame, split, TRAILER_HERE, frame } from "./_test_framing.ts";
import { violations } from "./_test_invariants.ts";

// ---------------------------------------------------------------- scale

/** Total cases wanted (`npm run fuzz`); 0 for the quick run of `npm test`. */
const FUZZ = Number(process.env.CRVM_FUZZ_RUNS ?? 0) || 0;
/** Sum of the `runs()` bases and sweep sizes below, so CRVM_FUZZ_RUNS is the total. */
const BASE_TOTAL = 2000;
const scale = FUZZ > 0 ? FUZZ / BASE_TOTAL : 1;
const runs = (base: number) => Math.max(1, Math.round(base * scale));
/** fast-check's seed, for replaying a failure: CRVM_FUZZ_SEED=<seed printed by the failure>. */
const SEED = process.env.CRVM_FUZZ_SEED === undefined ? undefined : Number(process.env.CRVM_FUZZ_SEED);
const fcOpts = (base: number) => ({ numRuns: runs(base), ...(SEED === undefined ? {} : { seed: SEED }) });

let cases = 0;
const started = performance.now();
/** With CRVM_FUZZ_STATS=1: how often each kind of refusal was seen (which rules the generators reach). */
const stats = process.env.CRVM_FUZZ_STATS ? new Map<string, number>() : null;
afterAll(() => {
  const s = ((performance.now() - started) / 1000).toFixed(1);
  console.log(`snapshot fuzz: ${cases} cases in ${s} s (CRVM_FUZZ_RUNS=${FUZZ || "unset"})`);
  if (stats) console.log([...stats].sort((a, b) => b[1] - a[1]).map(([m, n]) => `${String(n).padStart(8)}  ${m}`).join("\n"));
});

// ---------------------------------------------------------------- real images

const ROOT = path.resolve(import.meta.dirname, "../../..");
const execFileP = promisify(execFile);

/** `crvm ARGS...` from the sources (Bun runs TypeScript as is, so no build is needed). */
async function crvm(args: string[], cwd: string): Promise<string> {
  const env = { ...process.env, NO_COLOR: "1", CRVM_CACHE: process.env.CRVM_CACHE ?? path.join(os.tmpdir(), "crvm-fuzz-cache") };
  const bun = path.join(ROOT, "node_modules", ".bin", "bun");
  return (await execFileP(bun, [path.join(ROOT, "src", "cli", "main.ts"), ...args], { cwd, env, maxBuffer: 1 << 26 })).stdout;
}

// A guest with nothing in memory (no PAGE record: the smallest real image), and one whose
// two non-zero pages are equal (one PAGE record, one deduplicated, one zero page).
const wat = (memory: number, data: string) => `(module
  (import "wasi_snapshot_preview1" "sched_yield" (func $yield (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") ${memory}) ${data}
  (func (export "_start") (local $i i32)
    (loop $l (drop (call $yield)) (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 10))))
    (call $exit (i32.const 0))))`;

interface Fixture {
  name: string;
  bytes: Uint8Array;
  records: RawRecord[];
  /** How fast-check prints it in a counterexample: by name, not by its bytes. */
  [fc.toStringMethod]: () => string;
}

/** Bytes to decode, with what they are (printed in a counterexample instead of the bytes). */
interface Input {
  label: string;
  bytes: Uint8Array;
  [fc.toStringMethod]: () => string;
}

function input(label: string, bytes: Uint8Array): Input {
  const shown = bytes.length <= 512 ? `${label} [${bytesToHex(bytes)}]` : `${label} (${bytes.length} bytes)`;
  return { label, bytes, [fc.toStringMethod]: () => shown };
}

const fixtures: Record<string, Fixture> = {};
const fx = (name: string): Fixture => fixtures[name]!;
let all: Fixture[] = [];
let dir = "";
const hashing = await Hashing.create();

async function makeFixtures(): Promise<void> {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "crvm-fuzz-"));
  fs.writeFileSync(path.join(dir, "tiny.wat"), wat(1, ""));
  fs.writeFileSync(path.join(dir, "dedup.wat"), wat(3, `(data (i32.const 16) "crvm fuzz page") (data (i32.const 65552) "crvm fuzz page")`));
  fs.mkdirSync(path.join(dir, "data"));
  const ticker = path.join(ROOT, "guests", "build", "ticker.wasm");
  const files = path.join(ROOT, "guests", "build", "files.wasm");
  const snap = (n: string) => ["--checkpoint-file", path.join(dir, n)];
  await Promise.all([
    crvm(["run", "--checkpoint-after-yields", "3", ...snap("tiny.snap"), "tiny.wat"], dir),
    crvm(["run", "--checkpoint-after-yields", "3", ...snap("dedup.snap"), "dedup.wat"], dir),
  ]);
  await Promise.all([
    crvm(["run", "--checkpoint-after-yields", "3", ...snap("ticker3.snap"), ticker, "20"], dir),
    crvm(["run", "--checkpoint-after-yields", "12", "--compress", ...snap("ticker12.snap.gz"), ticker, "20"], dir),
  ]);
  // A task tree: four tasks in a pipeline, pipes holding bytes, a zombie, a task blocked in proc_join.
  await crvm(["run", "--checkpoint-after-yields", "200", ...snap("sieve.snap"), path.join(ROOT, "guests", "build", "sieve.wasm"), "60"], dir);
  // Host files, an in-memory fs (inodes, a blob), then an incremental child (MODULE_REF, a parent ref).
  await crvm(["run", "--checkpoint-after-yields", "22", ...snap("files.snap"), "--dir", "data::/data", "--tmpfs", "/tmp", files], dir);
  await crvm(["restore", "--checkpoint-after-yields", "10", "--parent", "files.snap", ...snap("files-child.snap"), "files.snap"], dir);
  const load = async (name: string, file: string) => {
    let bytes = new Uint8Array(fs.readFileSync(path.join(dir, file)));
    if (bytes[0] === 0x1f && bytes[1] === 0x8b) bytes = new Uint8Array(gunzipSync(bytes));
    const records: RawRecord[] = [];
    await decodeSnapshot(bytes, { name, onRecord: (r) => records.push(r) });
    fixtures[name] = { name, bytes, records, [fc.toStringMethod]: () => name };
  };
  await load("tiny", "tiny.snap");
  await load("dedup", "dedup.snap");
  await load("ticker3", "ticker3.snap");
  await load("ticker12", "ticker12.snap.gz");
  await load("files", "files.snap");
  await load("files-child", "files-child.snap");
  await load("sieve", "sieve.snap");
  all = Object.values(fixtures);
}

beforeAll(makeFixtures);
afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

// ---------------------------------------------------------------- decoding

type Outcome = { ok: true; image: SnapshotImage; summary: string } | { ok: false; message: string };

function summarize(img: SnapshotImage): string {
  return JSON.stringify({
    meta: img.meta,
    modules: img.modules.map((m) => ({ ...m, source: bytesToHex(m.source.subarray(0, 64)) + `/${m.source.length}` })),
    pages: [...img.pages.keys()],
    blobs: [...img.blobs].map(([id, b]) => [id, b.length, bytesToHex(b.subarray(0, 32))]),
    vm: img.vm,
    digest: img.digest,
    bytes: img.bytes,
  });
}

/** Runs a decode; a SnapshotError is an outcome, anything else fails the property (thrown on). */
function outcome(run: () => SnapshotImage): Outcome {
  try {
    const image = run();
    return { ok: true, image, summary: summarize(image) };
  } catch (e) {
    if (e instanceof SnapshotError) {
      if (stats) {
        const kind = e.message.replace(/^Cannot read snapshot "[^"]*": /, "").replace(/[0-9a-f]{32}/g, "H").replace(/\d+/g, "N").slice(0, 100);
        stats.set(kind, (stats.get(kind) ?? 0) + 1);
      }
      return { ok: false, message: e.message };
    }
    throw e;
  }
}

/** What `decodeSnapshot` does, with one Hashing for the whole run (creating one costs more than a small decode). */
function decode(bytes: Uint8Array, chunks?: number[]): Outcome {
  return outcome(() => {
    const r = new SnapshotReader(hashing, { name: "fuzz" });
    if (!chunks || chunks.length === 0) r.push(bytes);
    else {
      for (let at = 0, i = 0; at < bytes.length; i++) {
        const n = Math.max(1, chunks[i % chunks.length]!);
        r.push(bytes.subarray(at, at + n));
        at += n;
      }
    }
    return r.end();
  });
}

/** A decode that must fail (with a SnapshotError). */
function rejected(bytes: Uint8Array, why: string): void {
  cases++;
  const o = decode(bytes);
  if (o.ok) throw new Error(`accepted: ${why}`);
}

/** A decode that either fails or gives an image meeting every invariant. */
function sound(bytes: Uint8Array): Outcome {
  const o = decode(bytes);
  if (o.ok) {
    const v = violations(o.image);
    if (v.length) throw new Error(`decoded an image that breaks the format's rules: ${v.join("; ")}`);
  }
  return o;
}

/** The writer's hashes, for `write()`. */
const digester = await Hashing.create();

// ---------------------------------------------------------------- records as values, written with SnapshotWriter

type Rec =
  | { kind: "META"; meta: unknown }
  | { kind: "MODULE"; info: unknown; source: Uint8Array }
  | { kind: "MODULE_REF"; info: unknown }
  | { kind: "PAGE"; id: string; data: Uint8Array }
  | { kind: "BLOB"; id: number; data: Uint8Array }
  | { kind: "VM"; vm: unknown }
  | { kind: "TRAILER" };

function recs(f: Fixture): Rec[] {
  return f.records.map((r): Rec => {
    switch (r.kind) {
      case "META":
        return { kind: r.kind, meta: structuredClone(r.meta) };
      case "MODULE":
        return { kind: r.kind, info: structuredClone(r.info), source: r.source };
      case "MODULE_REF":
        return { kind: r.kind, info: structuredClone(r.info) };
      case "PAGE":
      case "BLOB":
        return { kind: r.kind, id: r.id, data: r.data } as Rec;
      case "VM":
        return { kind: r.kind, vm: structuredClone(r.vm) };
      case "TRAILER":
        return { kind: r.kind };
    }
  });
}

/**
 * Writes records with the real writer: CRCs and the trailer are right,
 * whatever the JSON says. A trailer anywhere but last (which the writer
 * refuses to write) is framed here, with the count, length and digest of
 * what precedes it.
 */
function write(rs: Rec[]): Uint8Array {
  const parts: Uint8Array[] = [];
  const w = new SnapshotWriter(digester, (c) => parts.push(c.slice()));
  type Any = never;
  const trailers = rs.flatMap((r, i) => (r.kind === "TRAILER" ? [i] : []));
  const plain = trailers.length === 0 || (trailers.length === 1 && trailers[0] === rs.length - 1);
  for (const r of rs) {
    if (r.kind === "META") w.meta(r.meta as Any);
    else if (r.kind === "MODULE") w.module({ ...(r.info as object), source: r.source } as Any);
    else if (r.kind === "MODULE_REF") w.moduleRef(r.info as Any);
    else if (r.kind === "PAGE") w.page(r.id, r.data);
    else if (r.kind === "BLOB") w.blob(r.id, r.data);
    else if (r.kind === "VM") w.vm(r.vm as Any);
    else if (plain) w.finish();
  }
  if (plain) return concatBytes(parts);
  // Where each trailer goes, counted in written records (a deduplicated PAGE writes none).
  const frames: Frame[] = split(concatBytes(parts)).frames;
  const written = rs.filter((r) => r.kind !== "TRAILER").length === frames.length;
  const at = trailers.map((i) => (written ? i - trailers.filter((j) => j < i).length : frames.length));
  const out: Frame[] = [];
  frames.forEach((f, i) => {
    at.filter((x) => x === i).forEach(() => out.push(TRAILER_HERE));
    out.push(f);
  });
  at.filter((x) => x >= frames.length).forEach(() => out.push(TRAILER_HERE));
  return frame(out, false);
}

/** `write`, then each `deep()` and `long()` marker expanded to that many nested arrays (the CRCs and digest made right again). */
function writeMutated(rs: Rec[]): Uint8Array {
  const bytes = write(rs);
  const { frames } = split(bytes);
  const text = new TextDecoder();
  if (!frames.some((f) => f.kind !== Kind.Page && /\\u0000(deep|long):/.test(text.decode(f.payload)))) return bytes;
  const trailer = frames.at(-1)?.kind === Kind.Trailer;
  const expanded = (trailer ? frames.slice(0, -1) : frames).map((f) => {
    if (f.kind === Kind.Page || f.kind === Kind.Module || f.kind === Kind.Blob) return f;
    const json = text.decode(f.payload).replace(MARKER, (_, what: string, n: string) => {
      const k = Number(n);
      return what === "deep" ? "[".repeat(k) + "]".repeat(k) : JSON.stringify("x".repeat(k));
    });
    return { ...f, payload: new TextEncoder().encode(json) };
  });
  return frame(expanded, trailer);
}

/** The `crvm inspect --json --with-pages` document of an image's records. */
function inspectDoc(records: RawRecord[]): unknown {
  const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");
  return {
    format: 1,
    records: records.map((r) => {
      switch (r.kind) {
        case "META":
          return { kind: r.kind, meta: r.meta };
        case "MODULE":
          return { kind: r.kind, info: r.info, bytes: r.source.length, source: b64(r.source) };
        case "MODULE_REF":
          return { kind: r.kind, info: r.info };
        case "PAGE":
          return { kind: r.kind, id: r.id, data: b64(r.data) };
        case "BLOB":
          return { kind: r.kind, id: r.id, data: b64(r.data) };
        case "VM":
          return { kind: r.kind, vm: r.vm };
        case "TRAILER":
          return { kind: r.kind, records: r.records, length: r.length, digest: r.digest };
      }
    }),
  };
}

// ---------------------------------------------------------------- generators

const fixtureArb = () => fc.constantFrom(...all);
/** Chunk sizes for streaming: tiny, odd, around record sizes, whole pages. */
const chunkSizes = fc.array(
  fc.oneof(fc.integer({ min: 1, max: 16 }), fc.integer({ min: 1, max: 4096 }), fc.constantFrom(7, 8, 16, 24, 4095, 65536, 65540, 65556, 65560, 1 << 20)),
  { minLength: 1, maxLength: 8 },
);

/**
 * A value nested `depth` arrays deep. JSON.stringify (in the writer) cannot
 * write one as deep as a hostile image can hold, so it stands in as a marker
 * string that `writeMutated` expands in the JSON text.
 */
const deep = (depth: number): Json => `\u0000deep:${depth}`;
/** The same for a long string, so a counterexample does not print a megabyte. */
const long = (n: number): Json => `\u0000long:${n}`;
const MARKER = /"\\u0000(deep|long):(\d+)"/g;

const interestingInts = [-1, 0, 1, 2, 3, 7, 0.5, -0.5, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 53, 2 ** 53 + 2, 1e308, -1e308, 65535, 65536, 65537, 100_000, 100_001, 1 << 20, (1 << 20) + 1, 1 << 24];
const interestingStrings = ["", "-1", "-0", "1e3", "NaN", "Infinity", "0x10", "9".repeat(31), "00", " 1", "a".repeat(64), "f".repeat(32), "F".repeat(32), "0".repeat(32), ".", "..", "a/b", "__proto__", "\u0000", "é"];
/** Values of every JSON type, with the ones validators get wrong most often. */
const weird = fc.oneof(
  { arbitrary: fc.constantFrom(...interestingInts), weight: 4 },
  { arbitrary: fc.integer(), weight: 1 },
  { arbitrary: fc.double({ noNaN: true, noDefaultInfinity: true }), weight: 1 },
  { arbitrary: fc.constantFrom(...interestingStrings), weight: 3 },
  { arbitrary: fc.string({ maxLength: 40 }), weight: 1 },
  { arbitrary: fc.boolean(), weight: 1 },
  { arbitrary: fc.constant(null), weight: 1 },
  { arbitrary: fc.jsonValue({ maxDepth: 3 }), weight: 2 },
  { arbitrary: fc.constantFrom(long(1 << 20), long(4097), long(65)), weight: 1 },
);


type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Slot = { parent: Json[] | { [k: string]: Json }; key: string | number };

function slots(v: Json, out: Slot[] = []): Slot[] {
  if (Array.isArray(v)) v.forEach((x, i) => (out.push({ parent: v, key: i }), slots(x, out)));
  else if (v !== null && typeof v === "object") for (const k of Object.keys(v)) (out.push({ parent: v, key: k }), slots(v[k]!, out));
  return out;
}

const get = (s: Slot): Json => (s.parent as Record<string | number, Json>)[s.key]!;
const set = (s: Slot, x: Json) => void ((s.parent as Record<string | number, Json>)[s.key] = x);

/** One generic mutation somewhere in a JSON value (mutates it in place). */
function mutateJson(g: fc.GeneratorValue, root: Json): void {
  const all = slots(root);
  if (all.length === 0) return;
  const s = all[g(fc.nat, all.length - 1)]!;
  const old = get(s);
  switch (g(fc.constantFrom, "replace", "replace", "replace", "delete", "extra", "duplicate", "number", "nest")) {
    case "replace":
      set(s, g(() => weird) as Json);
      break;
    case "delete":
      if (Array.isArray(s.parent)) s.parent.splice(s.key as number, 1);
      else delete s.parent[s.key];
      break;
    case "extra":
      if (old !== null && typeof old === "object" && !Array.isArray(old)) {
        // defineProperty: `o["__proto__"] = v` would set the prototype instead of adding a key.
        const key = g(fc.constantFrom, "x", "extra", "__proto__", "id", "constructor");
        Object.defineProperty(old, key, { value: g(() => weird) as Json, enumerable: true, writable: true, configurable: true });
      }
      else if (Array.isArray(old)) old.push(g(() => weird) as Json);
      else set(s, [old, old]);
      break;
    case "duplicate":
      if (Array.isArray(s.parent)) s.parent.push(structuredClone(old));
      else set(s, structuredClone(root));
      break;
    case "number":
      set(s, typeof old === "number" ? old + g(fc.constantFrom, 1, -1, 2 ** 31, 0.5, 65536) : g(fc.constantFrom, ...interestingInts));
      break;
    case "nest":
      set(s, deep(g(fc.integer, { min: 1, max: g(fc.constantFrom, 4, 100, 20_000, 200_000) })));
      break;
  }
}

type Vm = { nextPid: number; tasks: Record<string, Json>[]; files: Record<string, Json>[]; inodes: Record<string, Json>[] } & Record<string, Json>;

/** A mutation that keeps the VM well-formed JSON but aims at one cross-record rule. */
function mutateVm(g: fc.GeneratorValue, vm: Vm): void {
  const t = () => vm.tasks[g(fc.nat, vm.tasks.length - 1)]!;
  const newTask = (pid: number, ppid: number) => {
    const c = structuredClone(vm.tasks[0]!);
    c.pid = pid;
    c.ppid = ppid;
    vm.tasks.push(c);
  };
  const nowhere = () => g(fc.constantFrom, 99, 2 ** 31, 1 << 20, vm.files.length, vm.inodes.length);
  switch (
    g(
      fc.constantFrom,
      "child", "dupPid", "cycle", "selfParent", "orphan", "pageBeyond", "pageUnordered", "pageNowhere", "moduleNowhere", "framesNowhere", "fdNowhere",
      "fdTwice", "fileIdNowhere", "inodeNowhere", "inodeKind", "preopenKind", "globalTwice", "globalValue", "dirLoop", "entryName", "deepState",
      "blobNowhere", "filePos", "state", "zombiePid", "zombieParent", "pipeNowhere", "pipeOverfull", "pipeId",
    )
  ) {
    case "child":
      newTask(vm.nextPid, t().pid as number);
      vm.nextPid++;
      break;
    case "dupPid":
      newTask(t().pid as number, 0);
      break;
    case "cycle": {
      const a = vm.nextPid, b = vm.nextPid + 1;
      newTask(a, b);
      newTask(b, a);
      vm.nextPid += 2;
      break;
    }
    case "selfParent": {
      const x = t();
      x.ppid = x.pid!;
      break;
    }
    case "orphan":
      t().ppid = g(fc.constantFrom, vm.nextPid, 12345, 2 ** 31);
      break;
    case "pageBeyond": {
      const mem = t().memory as { pages: number; map: [number, string][] };
      mem.map.push([mem.pages + g(fc.nat, 3), mem.map[0]?.[1] ?? "0".repeat(32)]);
      break;
    }
    case "pageUnordered": {
      const mem = t().memory as { pages: number; map: [number, string][] };
      if (mem.map.length) mem.map.push(structuredClone(mem.map[0]!));
      else mem.pages = 0;
      break;
    }
    case "pageNowhere": {
      const mem = t().memory as { pages: number; map: [number, string][] };
      mem.pages = Math.max(mem.pages, 1);
      mem.map = [[0, g(fc.constantFrom, "1".repeat(32), "0".repeat(32))]];
      break;
    }
    case "moduleNowhere":
      t().moduleId = g(fc.constantFrom, 1, 7, 2 ** 31);
      break;
    case "framesNowhere":
      t().frames = g(fc.constantFrom, 99, 2 ** 31);
      break;
    case "fdNowhere":
      (t().fds as [number, number][]).push([g(fc.constantFrom, 100, LIMITS.fds), nowhere()]);
      break;
    case "fdTwice": {
      const fds = t().fds as [number, number][];
      fds.push([fds[0]?.[0] ?? 0, 0]);
      break;
    }
    case "fileIdNowhere":
      if (vm.files.length) vm.files[g(fc.nat, vm.files.length - 1)]!.id = nowhere();
      break;
    case "inodeNowhere":
    case "inodeKind": {
      const withInode = vm.files.filter((f) => "inode" in f || "root" in f);
      if (withInode.length === 0) break;
      const f = withInode[g(fc.nat, withInode.length - 1)]!;
      const key = "root" in f && g(fc.boolean) ? "root" : "inode";
      const other = vm.inodes.findIndex((n) => n.type !== vm.inodes[f[key] as number]?.type);
      f[key] = g(fc.constantFrom, "inodeNowhere") === "inodeNowhere" && other < 0 ? nowhere() : other >= 0 ? other : nowhere();
      break;
    }
    case "preopenKind": {
      const host = vm.files.filter((f) => f.kind === "hostfile" || f.kind === "hostdir");
      if (host.length) host[0]!.preopen = g(fc.constantFrom, 0, 1, 2, nowhere());
      break;
    }
    case "globalTwice": {
      const gl = t().globals as [string, Json][];
      if (gl.length) gl.push(structuredClone(gl[0]!));
      break;
    }
    case "globalValue": {
      const gl = t().globals as [string, { type: string; value: string }][];
      if (gl.length) {
        gl[0]![1].type = g(fc.constantFrom, "num", "i64");
        gl[0]![1].value = g(fc.constantFrom, "abc", "", "1.5", "1e400", "-0", "NaN", "9223372036854775808", "-9223372036854775809", "0x10", " 1");
      }
      break;
    }
    case "dirLoop": {
      const dirs = vm.inodes.filter((n) => n.type === "dir");
      if (dirs.length === 0) break;
      const d = dirs[g(fc.nat, dirs.length - 1)]!;
      if (g(fc.boolean)) d.parent = d.id!;
      else (d.entries as Json[]).push([g(fc.constantFrom, "loop", "b.txt"), d.id!, "99"]);
      break;
    }
    case "entryName": {
      const dirs = vm.inodes.filter((n) => n.type === "dir" && (n.entries as Json[]).length > 0);
      if (dirs.length) ((dirs[0]!.entries as Json[][])[0]!)[0] = g(fc.constantFrom, "", ".", "..", "a/b", "x");
      break;
    }
    case "state": {
      // Any JSON at all may be a call's saved state, including keys that do not survive a copy into an object.
      const state = g(fc.jsonValue, { maxDepth: 4 });
      const own = (k: string, v: Json) => Object.defineProperty({} as Record<string, Json>, k, { value: v, enumerable: true, writable: true, configurable: true });
      (t().pending as Record<string, Json>).state = g(fc.boolean) ? (state as Json) : own(g(fc.constantFrom, "__proto__", "constructor", "toString"), state as Json);
      break;
    }
    case "zombiePid": {
      const zombies = (vm.zombies ??= []) as Record<string, Json>[];
      zombies.push({ pid: g(fc.constantFrom, t().pid as number, vm.nextPid, 2 ** 31), ppid: 0, code: 0, signal: null });
      break;
    }
    case "zombieParent": {
      const zombies = (vm.zombies ??= []) as Record<string, Json>[];
      if (zombies.length) zombies[0]!.ppid = g(fc.constantFrom, zombies[0]!.pid!, 12345, vm.nextPid);
      else zombies.push({ pid: vm.nextPid++, ppid: g(fc.constantFrom, vm.nextPid + 5, 0), code: 0, signal: g(fc.constantFrom, null, 9, 65) });
      break;
    }
    case "pipeNowhere":
      vm.files.push({ id: vm.files.length, kind: g(fc.constantFrom, "piperead", "pipewrite"), pipe: g(fc.constantFrom, 0, 7, 2 ** 31), nonblock: false });
      break;
    case "pipeOverfull": {
      const pipes = (vm.pipes ??= []) as Record<string, Json>[];
      const full = pipes.find((p) => p.data !== null);
      if (full) full.capacity = g(fc.constantFrom, 1, 4, 0);
      else pipes.push({ id: pipes.length, data: 0, capacity: 1 });
      break;
    }
    case "pipeId": {
      const pipes = (vm.pipes ??= []) as Record<string, Json>[];
      if (pipes.length) pipes[g(fc.nat, pipes.length - 1)]!.id = g(fc.constantFrom, pipes.length, 99);
      break;
    }
    case "deepState":
      (t().pending as Record<string, Json>).state = deep(g(fc.constantFrom, 10, 5000, 20_000, 200_000));
      break;
    case "blobNowhere": {
      const withBlob = vm.inodes.filter((n) => n.type === "file");
      if (withBlob.length) withBlob[0]!.data = g(fc.constantFrom, null, 99, 0);
      else {
        const stdin = vm.files.find((f) => f.kind === "stdin");
        if (stdin) stdin.buffered = 99;
      }
      break;
    }
    case "filePos": {
      const withPos = vm.files.filter((f) => "pos" in f);
      if (withPos.length) withPos[0]!.pos = g(fc.constantFrom, "-1", "-99999", "18446744073709551616", "0");
      break;
    }
  }
}

/** A real image's records with one to four mutations of JSON fields or of the record sequence. */
function mutateRecords(g: fc.GeneratorValue, f: Fixture): Rec[] {
  const rs = recs(f);
  for (let n = g(fc.integer, { min: 1, max: 4 }); n > 0; n--) {
    const op = g(fc.constantFrom, "json", "json", "vm", "vm", "vm", "drop", "dup", "swap", "parent");
    const jsonRecs = rs.filter((r) => r.kind === "META" || r.kind === "MODULE" || r.kind === "MODULE_REF" || r.kind === "VM");
    if (op === "json" && jsonRecs.length) {
      const r = jsonRecs[g(fc.nat, jsonRecs.length - 1)]!;
      const box = { v: (r.kind === "META" ? r.meta : r.kind === "VM" ? r.vm : (r as { info: unknown }).info) as Json };
      mutateJson(g, box as unknown as Json);
      if (r.kind === "META") r.meta = box.v;
      else if (r.kind === "VM") r.vm = box.v;
      else (r as { info: unknown }).info = box.v;
    } else if (op === "vm") {
      const r = rs.find((x) => x.kind === "VM") as { vm: Vm } | undefined;
      if (r && r.vm && Array.isArray(r.vm.tasks) && r.vm.tasks.length && Array.isArray(r.vm.files) && Array.isArray(r.vm.inodes)) {
        // Earlier mutations may have left the VM too broken to aim at (a task that is a number): then skip this one.
        try {
          mutateVm(g, r.vm);
        } catch (e) {
          if (!(e instanceof TypeError)) throw e;
        }
      }
    } else if (op === "drop") rs.splice(g(fc.nat, rs.length - 1), 1);
    else if (op === "dup") {
      const i = g(fc.nat, rs.length - 1);
      rs.splice(g(fc.nat, rs.length), 0, structuredClone(rs[i]!));
    } else if (op === "swap") {
      const i = g(fc.nat, rs.length - 1), j = g(fc.nat, rs.length - 1);
      [rs[i], rs[j]] = [rs[j]!, rs[i]!];
    } else {
      const m = rs.find((x) => x.kind === "META") as { meta: Record<string, Json> } | undefined;
      if (m?.meta && typeof m.meta === "object") {
        if ("parent" in m.meta) delete m.meta.parent;
        else m.meta.parent = { id: "1".repeat(32), digest: "2".repeat(32), path: g(fc.constantFrom, "p.snap", "", "../../etc/passwd") };
      }
    }
  }
  return rs;
}

/** Random records framed with correct CRCs (and usually a correct trailer): input that gets past the checksums. */
const soup = fc.gen().map((g) => {
  const frames: Frame[] = [];
  const base = g(fixtureArb);
  const what: string[] = [];
  const real = split(base.bytes).frames;
  for (let n = g(fc.integer, { min: 0, max: 6 }); n > 0; n--) {
    const pick = g(fc.constantFrom, "real", "real", "mutatedJson", "bytes", "json", "lying");
    const r = real[g(fc.nat, real.length - 1)]!;
    what.push(pick);
    if (pick === "real") frames.push(r);
    else if (pick === "mutatedJson") {
      // Byte-level edits inside a JSON payload: syntax errors, bad UTF-8, BOMs, a MODULE header length that lies.
      const p = r.payload.slice();
      for (let k = g(fc.integer, { min: 1, max: 3 }); k > 0 && p.length; k--) p[g(fc.nat, p.length - 1)] = g(fc.constantFrom, 0x22, 0x7b, 0x5d, 0x00, 0xff, 0xc3, 0xef, 0x30, 0x2d);
      frames.push({ kind: r.kind, flags: 0, payload: p });
    } else if (pick === "bytes") {
      frames.push({ kind: g(fc.constantFrom, 1, 2, 3, 4, 5, 6, 15, 0, 7, 16, 0xffff), flags: g(fc.constantFrom, 0, 0, 0, 1, 0x8000), payload: g(fc.uint8Array, { maxLength: 64 }) });
    } else if (pick === "json") {
      frames.push({ kind: g(fc.constantFrom, 1, 5, 6), flags: 0, payload: new TextEncoder().encode(JSON.stringify(g(fc.jsonValue, { maxDepth: 4 }))) });
    } else {
      // A record whose payload is shorter than its kind needs (a MODULE or BLOB under 4 bytes, a short PAGE).
      frames.push({ kind: g(fc.constantFrom, 2, 3, 4, 15), flags: 0, payload: g(fc.uint8Array, { maxLength: 30 }) });
    }
  }
  const insertAt = g(fc.nat, real.length);
  const prefix = g(fc.boolean);
  const framesAll = prefix ? [...real.slice(0, insertAt).filter((f) => f.kind !== Kind.Trailer), ...frames] : frames;
  const trailer = g(fc.boolean) || g(fc.boolean);
  const version = g(fc.constantFrom, FORMAT_VERSION, FORMAT_VERSION, FORMAT_VERSION, 0, 2);
  const label = `soup: ${prefix ? `${insertAt} records of ${base.name}, then ` : ""}${what.join(" ")}${trailer ? ", trailer" : ""}, version ${version}`;
  return input(label, frame(framesAll, trailer, version));
});

/** Bytes that are not an image: random, or random after a valid header. */
const randomBytes = fc.oneof(
  fc.uint8Array({ maxLength: 2048 }).map((b) => input("random", b)),
  fc.uint8Array({ maxLength: 2048 }).map((b) => input("header + random", concatBytes([frame([], false).subarray(0, HEADER_SIZE), b]))),
  fc.uint8Array({ maxLength: 64 }).map((b) => input("magic + random", concatBytes([MAGIC, b]))),
);

/** Any input the other generators make, for the streaming and allocation properties. */
const anyInput = () =>
  fc.oneof(
    fixtureArb().map((f) => input(f.name, f.bytes)),
    fc.tuple(fixtureArb(), fc.double({ min: 0, max: 1, noNaN: true })).map(([f, x]) => {
      const cut = Math.floor(x * f.bytes.length);
      return input(`${f.name} cut at ${cut}`, f.bytes.subarray(0, cut));
    }),
    fc.tuple(fixtureArb(), fc.nat(), fc.nat(7)).map(([f, x, bit]) => input(`${f.name} byte ${x % f.bytes.length} bit ${bit}`, flip(f.bytes, x % f.bytes.length, bit))),
    randomBytes,
    soup,
    fc.tuple(fixtureArb(), fc.gen()).map(([f, g]) => input(`mutated records of ${f.name}`, writeMutated(mutateRecords(g, f)))),
  );

function flip(bytes: Uint8Array, at: number, bit: number): Uint8Array {
  const b = bytes.slice();
  b[at]! ^= 1 << bit;
  return b;
}

/** Where the bytes of an image that only a page hash covers lie (page contents). */
function pageContent(f: Fixture): [number, number][] {
  return f.records.filter((r) => r.kind === "PAGE").map((r) => {
    const start = r.offset + RECORD_HEADER + PAGE_ID_SIZE;
    return [start, start + PAGE_SIZE];
  });
}

// ---------------------------------------------------------------- properties

describe("real images", () => {
  it("decode, meet every invariant, and re-encode to the same bytes (inspect --json --with-pages → --encode)", async () => {
    for (const f of all) {
      const o = sound(f.bytes);
      expect(o.ok, f.name).toBe(true);
      // Through JSON text, as the CLI does it.
      const doc = JSON.parse(JSON.stringify(inspectDoc(f.records)));
      expect(Buffer.from(await encodeJson(doc)).equals(f.bytes), f.name).toBe(true);
      expect(Buffer.from(write(recs(f))).equals(f.bytes), f.name).toBe(true);
    }
  });

  it("cover what the fuzzers need: no page, a deduplicated page, host files, inodes, blobs, a parent and a MODULE_REF", () => {
    const kinds = (f: Fixture) => new Set(f.records.map((r) => r.kind));
    expect(kinds(fx("tiny")).has("PAGE")).toBe(false);
    const dedup = fx("dedup").records.find((r) => r.kind === "VM")!;
    expect(dedup.kind === "VM" && dedup.vm.tasks[0]!.memory.map.length).toBe(2);
    expect(fx("dedup").records.filter((r) => r.kind === "PAGE")).toHaveLength(1);
    const vm = (f: Fixture) => (f.records.find((r) => r.kind === "VM") as Extract<RawRecord, { kind: "VM" }>).vm;
    expect(vm(fx("files")).files.map((x) => x.kind)).toEqual(expect.arrayContaining(["hostpreopen", "hostfile", "mempreopen", "memfile"]));
    expect(vm(fx("files")).inodes.length).toBeGreaterThan(1);
    expect(kinds(fx("files-child")).has("MODULE_REF")).toBe(true);
    expect(fx("files-child").records[0]!.kind === "META" && fx("files-child").records[0]).toMatchObject({ meta: { parent: { path: "files.snap" } } });
    const sieve = vm(fx("sieve"));
    expect(sieve.tasks.length).toBeGreaterThan(2);
    expect(sieve.tasks.some((t) => t.ppid !== 0)).toBe(true);
    expect(sieve.pipes?.some((p) => p.data !== null)).toBe(true);
    expect(sieve.zombies?.length).toBeGreaterThan(0);
    expect(sieve.tasks.some((t) => t.pending.join !== undefined)).toBe(true);
  });

  it("round-trip through the CLI byte for byte: inspect --json --with-pages, then inspect --encode", async () => {
    fs.writeFileSync(path.join(dir, "child.json"), await crvm(["inspect", "--json", "--with-pages", "files-child.snap"], dir));
    await crvm(["inspect", "--encode", "child.json", "-o", "again.snap"], dir);
    expect(fs.readFileSync(path.join(dir, "again.snap")).equals(Buffer.from(fx("files-child").bytes))).toBe(true);
  });

  it("the framing of docs/snapshot-format.md rebuilds every real image exactly (CRCs, trailer, digest)", () => {
    for (const f of all) {
      const { frames } = split(f.bytes);
      expect(frames.at(-1)!.kind).toBe(Kind.Trailer);
      expect(Buffer.from(frame(frames.slice(0, -1))).equals(Buffer.from(f.bytes)), f.name).toBe(true);
    }
  });
});

describe("truncation", () => {
  it("is refused at every offset of a small image", () => {
    const sweep = (f: Fixture, stride: number) => {
      for (let cut = 0; cut < f.bytes.length; cut += stride) rejected(f.bytes.subarray(0, cut), `${f.name} cut at ${cut}`);
    };
    // Quick run: every 6th offset of the smallest image; fuzz run: every offset of it and of the one-page image.
    sweep(fx("tiny"), FUZZ ? 1 : 6);
    if (FUZZ) sweep(fx("dedup"), 1);
  });

  it("is refused at and around every record boundary of every image", () => {
    for (const f of all) {
      for (const r of f.records) {
        for (const d of [-1, 0, 1, RECORD_HEADER - 1, RECORD_HEADER, RECORD_HEADER + 1]) {
          const cut = r.offset + d;
          if (cut >= 0 && cut < f.bytes.length) rejected(f.bytes.subarray(0, cut), `${f.name} cut at ${cut}`);
        }
      }
    }
  });

  it("is refused at random offsets, in any chunking", () => {
    fc.assert(
      fc.property(fixtureArb(), fc.nat(), chunkSizes, (f, at, chunks) => {
        cases++;
        const cut = at % f.bytes.length;
        const whole = decode(f.bytes.subarray(0, cut));
        const streamed = decode(f.bytes.subarray(0, cut), chunks);
        return !whole.ok && !streamed.ok && whole.message === streamed.message;
      }),
      fcOpts(100),
    );
  });
});

describe("bit flips", () => {
  it("every single-bit flip of the smallest real image is refused", () => {
    const f = fx("tiny");
    // Quick run: every 24th bit (about 370 flips, over every byte); fuzz run: all of them.
    for (let bit = 0; bit < f.bytes.length * 8; bit += FUZZ ? 1 : 24) rejected(flip(f.bytes, bit >> 3, bit & 7), `${f.name} bit ${bit}`);
  });

  it.runIf(FUZZ > 0)("every single-bit flip outside page contents of an image with a page is refused (exhaustive)", () => {
    const f = fx("dedup");
    const [[from, to]] = pageContent(f) as [[number, number]];
    for (let at = 0; at < f.bytes.length; at = at === from - 1 ? to : at + 1) {
      for (let bit = 0; bit < 8; bit++) rejected(flip(f.bytes, at, bit), `${f.name} byte ${at} bit ${bit}`);
    }
  });

  it("random single-bit flips of any real image are refused, page contents included", () => {
    fc.assert(
      fc.property(fixtureArb(), fc.nat(), fc.nat(7), fc.boolean(), (f, x, bit, inPage) => {
        cases++;
        const pages = pageContent(f);
        const at = inPage && pages.length ? pages[x % pages.length]![0] + (x % PAGE_SIZE) : x % f.bytes.length;
        const o = decode(flip(f.bytes, at, bit));
        return !o.ok;
      }),
      fcOpts(200),
    );
  });

  it("a flipped bit in a page's content is named by its hash, even without a CRC over it", () => {
    const f = fx("dedup");
    const [[from]] = pageContent(f) as [[number, number]];
    const o = decode(flip(f.bytes, from + 12345, 3));
    expect(o.ok ? "" : o.message).toMatch(/does not match its hash/);
  });
});

describe("random input", () => {
  it("random bytes, with or without a valid header, end in a SnapshotError (decodeSnapshot itself)", async () => {
    await fc.assert(
      fc.asyncProperty(randomBytes, async ({ bytes }) => {
        cases++;
        try {
          await decodeSnapshot(bytes, { name: "fuzz" });
        } catch (e) {
          if (e instanceof SnapshotError) return true;
          throw e;
        }
        return false;
      }),
      fcOpts(100),
    );
  });

  it("records with correct CRCs but random contents end in a SnapshotError or a sound image", () => {
    fc.assert(
      fc.property(soup, ({ bytes }) => {
        cases++;
        sound(bytes);
      }),
      fcOpts(150),
    );
  });
});

describe("mutated records (re-encoded with correct CRCs, so the validators see them)", () => {
  it("end in a SnapshotError or a sound image that re-encodes to the same bytes", () => {
    fc.assert(
      fc.property(fixtureArb(), fc.gen(), (f, g) => {
        cases++;
        const bytes = writeMutated(mutateRecords(g, f));
        const records: RawRecord[] = [];
        let image: SnapshotImage | undefined;
        const o = outcome(() => {
          const r = new SnapshotReader(hashing, { name: "fuzz", onRecord: (x) => records.push(x) });
          r.push(bytes);
          return (image = r.end());
        });
        if (!o.ok) return;
        const v = violations(image!);
        if (v.length) throw new Error(`decoded an image that breaks the format's rules: ${v.join("; ")}`);
        // What was decoded is what the file holds: no field is dropped or normalized on the way.
        const again = write(records as Rec[]);
        if (!Buffer.from(again).equals(Buffer.from(bytes))) throw new Error("a decoded image re-encodes to other bytes");
      }),
      fcOpts(400),
    );
  });
});

describe("streaming", () => {
  it("chunked input decodes exactly as one buffer: the same image or the same message", async () => {
    fc.assert(
      fc.property(anyInput(), chunkSizes, ({ bytes }, chunks) => {
        cases++;
        const whole = decode(bytes);
        const streamed = decode(bytes, chunks);
        if (whole.ok !== streamed.ok) return false;
        return whole.ok ? whole.summary === (streamed as typeof whole).summary : whole.message === (streamed as { message: string }).message;
      }),
      fcOpts(200),
    );
    // decodeSnapshotStream itself, on every real image in small chunks.
    for (const f of all) {
      const chunks = Array.from({ length: Math.ceil(f.bytes.length / 1000) }, (_, i) => f.bytes.subarray(i * 1000, (i + 1) * 1000));
      const streamed = await decodeSnapshotStream(chunks, { name: f.name });
      expect(summarize(streamed), f.name).toBe((decode(f.bytes) as { summary: string }).summary);
    }
  });
});

describe("allocation", () => {
  /** The largest Uint8Array that `run` allocates (sizes it asks for, not views). */
  function largestAllocation(run: () => void): number {
    const Original = globalThis.Uint8Array;
    let max = 0;
    class Counting extends Original {
      constructor(...args: unknown[]) {
        super(...(args as []));
        if (typeof args[0] === "number") max = Math.max(max, args[0]);
      }
    }
    globalThis.Uint8Array = Counting as Uint8ArrayConstructor;
    try {
      run();
    } finally {
      globalThis.Uint8Array = Original;
    }
    return max;
  }

  it("never allocates ahead of the data: a record's stated length buys nothing until its bytes arrive", () => {
    // A valid header, then a record header stating up to the largest length its kind allows, then a few bytes.
    const lying = fc.tuple(fc.constantFrom(1, 2, 3, 4, 5, 6, 15), fc.oneof(fc.constantFrom(LIMITS.record, LIMITS.json, PAGE_ID_SIZE + PAGE_SIZE, 28, 0xffffffff), fc.nat()), fc.uint8Array({ maxLength: 300 }))
      .map(([kind, len, rest]) => {
        const h = new Uint8Array(RECORD_HEADER);
        new DataView(h.buffer).setUint16(0, kind, true);
        new DataView(h.buffer).setUint32(4, len, true);
        const meta = split(fx("tiny").bytes).frames[0]!;
        return input(`META, then kind ${kind} stating ${len} bytes`, concatBytes([frame([meta], false), h, rest]));
      });
    fc.assert(
      fc.property(fc.oneof(lying, anyInput()), chunkSizes, ({ bytes }, chunks) => {
        cases++;
        const max = largestAllocation(() => void decode(bytes, chunks));
        // Twice what arrived (a buffer grows by doubling), plus the fixed-size headers.
        return max <= 2 * bytes.length + 64;
      }),
      fcOpts(150),
    );
  });
});
