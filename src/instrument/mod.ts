/**
 * Loading a guest module: validate it, instrument it for capture, cache the
 * result by content hash.
 *
 * The instrumented module's contract with the runtime:
 *
 * - **Fuel.** A mutable i32 global, exported as `crvm_g:__crvm_fuel`
 *   (initially 2^31-1). Checks at loop headers and at the entries of the
 *   functions that need one decrement it; when it goes below 0 the guest
 *   calls the import `crvm.yield(-1)`. Host rule: after a fuel yield, refill
 *   the counter to **at least 1** before the guest continues (a loop re-runs
 *   its header check after the yield; at 0 it would yield again at once).
 *   Functions with tight loops keep a local copy of the counter (reloaded at
 *   entry, after calls that can yield and after a fuel yield; written back
 *   before them and at returns). So a value written during a fuel yield always
 *   takes effect; one written at another time (inside another import, or
 *   before resuming a task frozen elsewhere) may be overwritten by a frame's
 *   copy, which only counts down, so the guest still yields when that copy
 *   runs out. Guests may call `crvm.yield(tag)` themselves (guests/include/
 *   crvm.h); -1 is the fuel tag.
 * - **Stack capture.** Asyncify (binaryen) with the exports
 *   `asyncify_start_unwind`, `asyncify_stop_unwind`, `asyncify_start_rewind`,
 *   `asyncify_stop_rewind`, `asyncify_get_state`. A task can be frozen in
 *   every import from `wasi_snapshot_preview1`, `wasix_32v1` and `crvm`
 *   (`crvm.yield` is always imported); imports from other modules are not
 *   async (the runtime stubs them with ENOSYS) and must not unwind.
 * - **Globals.** Every mutable global of the original module and the fuel
 *   global is exported as `crvm_g:<name>` (`globals` lists them in a stable
 *   order); Asyncify's own globals are not.
 * - **Memory.** Exported as `memory.exportName` (added as "memory" when the
 *   module did not export it), or imported as `memory.import`.
 *
 * @example
 * const mod = await instrumentModule(bytes, { name: "app.wasm", cacheDir: "/home/me/.cache/crvm", fs: host.fs });
 * const instance = await WebAssembly.instantiate(await WebAssembly.compile(mod.wasm), imports);
 */
import type { HostFs } from "../host/types.ts";
import { BINARYEN_VERSION, cachePath, readCache, sha256Hex, writeCache } from "./cache.ts";
import type { CacheMeta } from "./cache.ts";
import type { Binaryen } from "./ir.ts";
import { transform } from "./transform.ts";
import type { FuncImport, MemoryDesc } from "./transform.ts";
import { checkModule, isWasmBinary } from "./validate.ts";
import { looksLikeWat, watToWasm } from "./wat.ts";

export { isWasmBinary } from "./validate.ts";
export { watToWasm } from "./wat.ts";
export { limitMemory } from "./memory_limit.ts";
export { BINARYEN_VERSION } from "./cache.ts";
export type { FuncImport, MemoryDesc } from "./transform.ts";

/** Version of the transform; bump it whenever the output for the same input can change (it is in the cache key). */
export const PASS_VERSION = 1;

/** A guest module ready to instantiate, with what the runtime needs to know about it. */
export interface InstrumentedModule {
  /** `LoadOptions.name` of the load that returned it. */
  name: string;
  /** The module as given (a .wat is converted to binary first). */
  source: Uint8Array;
  /** sha256 hex of `source`. */
  sourceHash: string;
  /** The instrumented binary. */
  wasm: Uint8Array;
  /** sha256 hex of `wasm`. */
  wasmHash: string;
  passVersion: number;
  /** Export names of every mutable global, "crvm_g:<name>", in a stable order; includes "crvm_g:__crvm_fuel". */
  globals: string[];
  memory: MemoryDesc;
  /** Function imports of the instrumented module. */
  imports: FuncImport[];
  /** True when served from the cache. */
  cached: boolean;
  /** Time spent transforming (loading binaryen included); 0 on a cache hit. */
  transformMs: number;
}

export interface LoadOptions {
  /** Names the module in messages, e.g. its file path. */
  name: string;
  /** Cache directory (entries go to `<cacheDir>/modules/`), or null for no cache. */
  cacheDir: string | null;
  fs: HostFs;
  /**
   * Called synchronously between steps. Stages in order: read, analyze, fuel,
   * asyncify, split, optimize (done/total over functions), emit.
   */
  onProgress?: (p: { stage: string; done: number; total: number }) => void;
}

/**
 * Validates and instruments a guest module (wasm binary or WebAssembly text),
 * or returns the cached result. Throws `ModuleError` (one line naming
 * `opts.name` and the problem) for a module crvm cannot run or capture.
 *
 * @example
 * const mod = await instrumentModule(host.fs.readFile(path), { name: path, cacheDir, fs: host.fs });
 * mod.globals; // ["crvm_g:__stack_pointer", "crvm_g:__crvm_fuel"]
 */
export async function instrumentModule(input: Uint8Array, opts: LoadOptions): Promise<InstrumentedModule> {
  const progress = (stage: string, done: number, total: number) => opts.onProgress?.({ stage, done, total });
  progress("read", 0, 1);
  const source = !isWasmBinary(input) && looksLikeWat(input)
    ? await watToWasm(new TextDecoder().decode(input), opts.name)
    : input;
  const sourceHash = await sha256Hex(source);
  const path = opts.cacheDir === null ? null : cachePath(opts.cacheDir, sourceHash, PASS_VERSION);
  if (path !== null) {
    const hit = await readCache(opts.fs, path, { sourceHash, passVersion: PASS_VERSION });
    if (hit) {
      progress("read", 1, 1);
      return { name: opts.name, ...fromMeta(hit.meta), source, wasm: hit.wasm, cached: true, transformMs: 0 };
    }
  }

  const summary = await checkModule(source, opts.name);
  const t0 = performance.now();
  const binaryen = (await import("binaryen")).default as Binaryen;
  const r = transform(binaryen, source, summary, opts.name, progress);
  const transformMs = performance.now() - t0;
  const meta: CacheMeta = {
    sourceHash, wasmHash: await sha256Hex(r.wasm), wasmLength: r.wasm.length, passVersion: PASS_VERSION,
    binaryen: BINARYEN_VERSION, globals: r.globals, memory: r.memory, imports: r.imports,
  };
  if (path !== null) writeCache(opts.fs, path, meta, r.wasm);
  return { name: opts.name, ...fromMeta(meta), source, wasm: r.wasm, cached: false, transformMs };
}

function fromMeta(m: CacheMeta): Omit<InstrumentedModule, "name" | "source" | "wasm" | "cached" | "transformMs"> {
  return {
    sourceHash: m.sourceHash, wasmHash: m.wasmHash, passVersion: m.passVersion,
    globals: m.globals, memory: m.memory, imports: m.imports,
  };
}
