import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import binaryen from "binaryen";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nodeFs } from "../host/fs.ts";
import { cachePath } from "./cache.ts";
import { BINARYEN_VERSION, instrumentModule, PASS_VERSION, watToWasm } from "./mod.ts";
import type { InstrumentedModule } from "./mod.ts";

const fs = nodeFs();
const here = new URL(".", import.meta.url).pathname;
const ASYNCIFY = ["asyncify_start_unwind", "asyncify_stop_unwind", "asyncify_start_rewind", "asyncify_stop_rewind", "asyncify_get_state"];
const load = (bytes: Uint8Array, cacheDir: string | null = null, name = "t.wasm") => instrumentModule(bytes, { name, cacheDir, fs });

let guest: Uint8Array;
const tmp = mkdtempSync(join(tmpdir(), "crvm-instrument-"));
const cacheDir = () => mkdtempSync(join(tmp, "cache-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
beforeAll(async () => {
  guest = await watToWasm(readFileSync(join(here, "testdata/capture_guest.wat"), "utf8"), "capture_guest.wat");
});

function stubImports(mod: InstrumentedModule): WebAssembly.Imports {
  const imports: Record<string, Record<string, unknown>> = {};
  for (const i of mod.imports) (imports[i.module] ??= {})[i.name] = () => 0;
  return imports as WebAssembly.Imports;
}

describe("transform", () => {
  it("adds the Asyncify exports, exports every mutable global and the fuel counter", async () => {
    const mod = await load(guest);
    const compiled = await WebAssembly.compile(mod.wasm as BufferSource);
    const exports = WebAssembly.Module.exports(compiled);
    for (const name of ASYNCIFY) expect(exports).toContainEqual({ name, kind: "function" });
    expect(mod.globals).toEqual(["crvm_g:sp", "crvm_g:count", "crvm_g:__crvm_fuel"]);
    expect(exports.filter((e) => e.kind === "global").map((e) => e.name)).toEqual(mod.globals);
    expect(mod.memory).toEqual({ import: null, exportName: "memory", initialPages: 1, maximumPages: null });
    const inst = new WebAssembly.Instance(compiled, stubImports(mod));
    const fuel = inst.exports["crvm_g:__crvm_fuel"] as WebAssembly.Global;
    expect(fuel.value).toBe(0x7fffffff);
    fuel.value = 5; // mutable from the host
    expect(fuel.value).toBe(5);
    expect(typeof (inst.exports["crvm_g:count"] as WebAssembly.Global).value).toBe("bigint");
  });

  it("lists the function imports with their types and adds crvm.yield", async () => {
    const mod = await load(guest);
    expect(mod.imports).toEqual([
      { module: "wasi_snapshot_preview1", name: "fd_write", params: ["i32", "i32", "i32", "i32"], results: ["i32"] },
      { module: "crvm", name: "yield", params: ["i32"], results: [] },
    ]);
    expect(WebAssembly.Module.imports(await WebAssembly.compile(mod.wasm as BufferSource)).map((i) => `${i.module}.${i.name}`))
      .toEqual(["wasi_snapshot_preview1.fd_write", "crvm.yield"]);
  });

  it("reuses an existing crvm.yield import and keeps other modules' imports", async () => {
    const wasm = await watToWasm(`(module (import "crvm" "yield" (func $y (param i32))) (import "env" "f" (func $f (result i64)))
      (memory (export "memory") 1) (func (export "_start") (call $y (i32.const 7)) (drop (call $f))))`, "t.wat");
    const mod = await load(wasm);
    expect(mod.imports.map((i) => `${i.module}.${i.name}`)).toEqual(["crvm.yield", "env.f"]);
    expect(mod.imports[1]).toEqual({ module: "env", name: "f", params: [], results: ["i64"] });
  });

  it("makes the memory reachable: imported, unexported, or missing", async () => {
    const imported = await load(await watToWasm(`(module (import "env" "mem" (memory 2 10)) (func (export "_start")))`, "t.wat"));
    expect(imported.memory).toEqual({ import: { module: "env", name: "mem" }, exportName: null, initialPages: 2, maximumPages: 10 });
    const hidden = await load(await watToWasm(`(module (memory 3) (func (export "_start")))`, "t.wat"));
    expect(hidden.memory).toEqual({ import: null, exportName: "memory", initialPages: 3, maximumPages: null });
    const none = await load(await watToWasm(`(module (func (export "_start")))`, "t.wat"));
    expect(none.memory.exportName).toBe("memory");
    const exports = WebAssembly.Module.exports(await WebAssembly.compile(none.wasm as BufferSource));
    expect(exports).toContainEqual({ name: "memory", kind: "memory" });
  });

  it("is deterministic", async () => {
    const a = await load(guest);
    const b = await load(guest);
    expect(b.wasmHash).toBe(a.wasmHash);
    expect(Buffer.from(b.wasm).equals(Buffer.from(a.wasm))).toBe(true);
    expect(a.sourceHash).toMatch(/^[0-9a-f]{64}$/);
    expect(a.passVersion).toBe(PASS_VERSION);
  });

  it("reports progress in stage order, optimize over functions", async () => {
    const seen: Array<{ stage: string; done: number; total: number }> = [];
    await instrumentModule(guest, { name: "t", cacheDir: null, fs, onProgress: (p) => seen.push(p) });
    const stages = seen.map((p) => p.stage).filter((s, i, a) => a[i - 1] !== s);
    expect(stages).toEqual(["read", "analyze", "fuel", "asyncify", "split", "optimize", "emit"]);
    const opt = seen.filter((p) => p.stage === "optimize");
    expect(opt.length).toBeGreaterThan(2);
    expect(opt.map((p) => p.done)).toEqual(opt.map((_, i) => i));
    expect(opt.at(-1)!.done).toBe(opt.at(-1)!.total);
    expect(seen.at(-1)).toEqual({ stage: "emit", done: 1, total: 1 });
  });

  it("puts binaryen's global settings back", async () => {
    binaryen.setOptimizeLevel(3);
    binaryen.setShrinkLevel(1);
    binaryen.setDebugInfo(true);
    try {
      await load(guest);
      expect([binaryen.getOptimizeLevel(), binaryen.getShrinkLevel(), binaryen.getDebugInfo()]).toEqual([3, 1, true]);
      expect(binaryen.getPassArgument("asyncify-onlylist")).toBe(null);
    } finally {
      binaryen.setOptimizeLevel(2);
      binaryen.setShrinkLevel(1);
      binaryen.setDebugInfo(false);
    }
  });

  it("knows the binaryen version it runs with", () => {
    const pkg = JSON.parse(readFileSync(join(here, "../../node_modules/binaryen/package.json"), "utf8")) as { version: string };
    expect(BINARYEN_VERSION).toBe(pkg.version);
  });
});

describe("cache", () => {
  it("misses, then hits with the same module and no transform", async () => {
    const dir = cacheDir();
    const miss = await load(guest, dir);
    expect(miss.cached).toBe(false);
    expect(miss.transformMs).toBeGreaterThan(0);
    const path = cachePath(dir, miss.sourceHash, PASS_VERSION);
    expect(path).toBe(`${dir}/modules/${miss.sourceHash}-p${PASS_VERSION}-b${BINARYEN_VERSION}.crvmmod`);
    expect(fs.exists(path)).toBe(true);
    const t0 = performance.now();
    const hit = await load(guest, dir, "again.wasm");
    const ms = performance.now() - t0;
    expect(hit.cached).toBe(true);
    expect(hit.transformMs).toBe(0);
    expect(hit.name).toBe("again.wasm");
    expect(ms).toBeLessThan(500); // a transform of this guest takes seconds; a hit reads one file and hashes it
    const { cached: _c, transformMs: _t, name: _n, ...rest } = hit;
    const { cached: _c2, transformMs: _t2, name: _n2, ...want } = miss;
    expect(rest).toEqual(want);
  });

  for (const [what, damage] of [
    ["a flipped wasm byte", (b: Uint8Array) => { const c = b.slice(); c[c.length - 10]! ^= 1; return c; }],
    ["a truncated entry", (b: Uint8Array) => b.slice(0, b.length - 100)],
    ["a truncated header", (b: Uint8Array) => b.slice(0, 20)],
    ["broken JSON", (b: Uint8Array) => { const c = b.slice(); c[16] = 0x7b; c[17] = 0x7b; return c; }],
    ["an empty file", () => new Uint8Array(0)],
  ] as const) {
    it(`ignores and rewrites an entry with ${what}`, async () => {
      const dir = cacheDir();
      const first = await load(guest, dir);
      const path = cachePath(dir, first.sourceHash, PASS_VERSION);
      const good = readFileSync(path);
      writeFileSync(path, damage(new Uint8Array(good)));
      const again = await load(guest, dir);
      expect(again.cached).toBe(false);
      expect(again.wasmHash).toBe(first.wasmHash);
      expect(Buffer.from(readFileSync(path)).equals(good)).toBe(true);
      expect((await load(guest, dir)).cached).toBe(true);
    });
  }

  it("does not serve another module's entry", async () => {
    const dir = cacheDir();
    const other = await watToWasm(`(module (memory (export "memory") 1) (func (export "_start")))`, "t.wat");
    const a = await load(guest, dir);
    const b = await load(other, dir);
    writeFileSync(cachePath(dir, b.sourceHash, PASS_VERSION), readFileSync(cachePath(dir, a.sourceHash, PASS_VERSION)));
    const again = await load(other, dir);
    expect(again.cached).toBe(false);
    expect(again.wasmHash).toBe(b.wasmHash);
  });

  it("survives two loads writing the same entry at once", async () => {
    const dir = cacheDir();
    const [x, y] = await Promise.all([load(guest, dir), load(guest, dir)]);
    expect(x.wasmHash).toBe(y.wasmHash);
    const hit = await load(guest, dir);
    expect(hit.cached).toBe(true);
    expect(hit.wasmHash).toBe(x.wasmHash);
    expect(fs.readdir(`${dir}/modules`).map((d) => d.name)).toEqual([`${x.sourceHash}-p${PASS_VERSION}-b${BINARYEN_VERSION}.crvmmod`]);
  });
});
