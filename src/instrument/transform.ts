// The crvm guest transform (binaryen.js):
//
//   read -> analyze -> fuel checks -> call_indirect wrapping -> asyncify -> fast/slow split
//        -> export globals -> -O2 on the changed fast functions -> emit
//
// Everything here is synchronous: binaryen's settings (optimize level, pass arguments) are process-wide,
// so a transform sets them, runs, and puts them back before anything else can run.
import { ModuleError } from "../errors.ts";
import { ASYNC_MODULES, ASYNCIFY_EXPORTS, changedFunctions, runAsyncify, splitFastSlow, stateGlobal, unwrapIndirect } from "./asyncify.ts";
import type { AsyncifyStats } from "./asyncify.ts";
import { analyze } from "./callgraph.ts";
import { trimCustomSections } from "./binary.ts";
import type { Summary } from "./binary.ts";
import { FUEL_INITIAL, insertFuelChecks } from "./fuel.ts";
import type { FuelStats } from "./fuel.ts";
import { freshFunctionName, makeIr } from "./ir.ts";
import type { Binaryen, Ir, Module, Type } from "./ir.ts";

export const FUEL_GLOBAL = "__crvm_fuel";
export const GLOBAL_EXPORT_PREFIX = "crvm_g:";
/** The level of the final optimization of the changed fast functions. */
const POST_OPT_LEVEL = 2;

export type Progress = (stage: string, done: number, total: number) => void;

export interface MemoryDesc {
  import: { module: string; name: string } | null;
  exportName: string | null;
  initialPages: number;
  maximumPages: number | null;
}

export interface FuncImport {
  module: string;
  name: string;
  params: string[];
  results: string[];
}

export interface TransformResult {
  wasm: Uint8Array;
  globals: string[];
  memory: MemoryDesc;
  imports: FuncImport[];
  stats: FuelStats & AsyncifyStats & { defined: number; optimized: number };
}

/**
 * Instruments a module that `checkModule` accepted. Throws `ModuleError` for
 * anything binaryen rejects.
 */
export function transform(B: Binaryen, bytes: Uint8Array, summary: Summary, name: string, progress: Progress): TransformResult {
  const saved = { level: B.getOptimizeLevel(), shrink: B.getShrinkLevel(), debug: B.getDebugInfo() };
  let m: Module | null = null;
  try {
    B.clearPassArguments();
    B.setShrinkLevel(0);
    B.setDebugInfo(false); // no name section in the output: smaller, and nothing in it is stable anyway
    try {
      m = B.readBinary(trimCustomSections(bytes));
    } catch (e) {
      throw new ModuleError(`${name} could not be read by binaryen: ${describe(e)}`, { cause: e });
    }
    m.setFeatures(m.getFeatures() | features(B, summary));
    progress("read", 1, 1);
    return run(makeIr(B), m, name, progress);
  } catch (e) {
    if (e instanceof ModuleError) throw e;
    throw new ModuleError(`${name} could not be instrumented: ${describe(e)}`, { cause: e });
  } finally {
    m?.dispose();
    B.clearPassArguments();
    B.setOptimizeLevel(saved.level);
    B.setShrinkLevel(saved.shrink);
    B.setDebugInfo(saved.debug);
  }
}

/** Features every supported engine (Node 20, Deno 2.9, Bun 1.4) has, plus what the code itself uses. */
function features(B: Binaryen, s: Summary): number {
  const F = B.Features;
  let f = F.MutableGlobals | F.NontrappingFPToInt | F.SignExt | F.BulkMemory | F.BulkMemoryOpt |
    F.Multivalue | F.ReferenceTypes | F.CallIndirectOverlong;
  if (s.features.has("simd")) f |= F.SIMD128;
  if (s.features.has("relaxed-simd")) f |= F.RelaxedSIMD;
  if (s.features.has("atomics")) f |= F.Atomics;
  if (s.features.has("extended-const")) f |= F.ExtendedConst;
  return f;
}

function run(ir: Ir, m: Module, name: string, progress: Progress): TransformResult {
  const B = ir.B;
  progress("analyze", 0, 1);
  // Mutable globals present in the original module (the runtime snapshots these).
  const globals: string[] = [];
  for (let i = 0; i < m.getNumGlobals(); i++) {
    const g = B.getGlobalInfo(m.getGlobalByIndex(i));
    if (g.mutable && !g.module) globals.push(g.name);
  }
  if (m.getGlobal(FUEL_GLOBAL)) throw new ModuleError(`${name} already has a global named ${FUEL_GLOBAL}`);
  const exportNames = new Set<string>();
  for (let i = 0; i < m.getNumExports(); i++) exportNames.add(B.getExportInfo(m.getExportByIndex(i)).name);
  ensureMemoryReachable(B, m, exportNames);
  const cg = analyze(ir, m);
  progress("analyze", 1, 1);

  // ------------------------------------------------------------ fuel
  m.addGlobal(FUEL_GLOBAL, B.i32, true, m.i32.const(FUEL_INITIAL));
  globals.push(FUEL_GLOBAL);
  let yieldFn = [...cg.imports].find(([, i]) => i.module === "crvm" && i.base === "yield")?.[0];
  if (!yieldFn) {
    yieldFn = freshFunctionName(m, "__crvm_yield");
    m.addFunctionImport(yieldFn, "crvm", "yield", B.i32, B.none);
  }
  const stats = {
    defined: cg.funcs.size, optimized: 0,
    loops: 0, entries: 0, budgetEntries: 0, localFuncs: 0, syncedCalls: 0,
    asyncImports: 0, onlylist: 0, ciWrapped: 0, ciKept: 0, split: 0, folded: 0, dispatch: 0, retargeted: 0,
  };
  const fuelFuncs = insertFuelChecks(ir, m, cg, { global: FUEL_GLOBAL, yieldFn }, stats, (d, t) => progress("fuel", d, t));

  // ------------------------------------------------------------ asyncify
  progress("asyncify", 0, 1);
  const asyncNames = new Set<string>([yieldFn]);
  const asyncImports = new Set<string>(["crvm.yield"]);
  for (const [internal, i] of cg.imports) {
    if (!ASYNC_MODULES.includes(i.module)) continue;
    asyncNames.add(internal);
    asyncImports.add(`${i.module}.${i.base}`);
  }
  const helpers = runAsyncify(ir, m, cg, asyncNames, [...asyncImports], fuelFuncs, stats);
  for (const ex of ASYNCIFY_EXPORTS) {
    if (!m.getExport(ex)) throw new ModuleError(`${name} could not be instrumented: Asyncify added no ${ex} export`);
  }
  progress("asyncify", 1, 1);

  progress("split", 0, 1);
  const asyncifyFns = new Set(ASYNCIFY_EXPORTS.map((ex) => B.getExportInfo(m.getExport(ex)).value));
  const rwCopies = splitFastSlow(ir, m, cg, new Set([...asyncifyFns, ...helpers.keys()]), stats);
  for (const g of globals) m.addGlobalExport(g, GLOBAL_EXPORT_PREFIX + g);
  progress("split", 1, 1);

  // ------------------------------------------------------------ optimize
  // Optimize only functions we changed (keeps untouched functions byte-identical to the compiler's output,
  // which matters for engines that inline small recursive functions, e.g. V8 >= 12 / JSC), and only
  // their fast copies: the $rw copies run once per resume.
  unwrapIndirect(ir, m, helpers);
  B.setOptimizeLevel(POST_OPT_LEVEL);
  const state = new Set([FUEL_GLOBAL, "__asyncify_state", "__asyncify_data", stateGlobal(ir, m)]);
  const changed = changedFunctions(ir, m, state, yieldFn, rwCopies);
  progress("optimize", 0, changed.length);
  changed.forEach((fn, i) => {
    m.optimizeFunction(fn);
    progress("optimize", i + 1, changed.length);
  });
  stats.optimized = changed.length;

  // ------------------------------------------------------------ emit
  progress("emit", 0, 1);
  const memory = describeMemory(B, m);
  const imports = functionImports(B, m);
  const wasm = m.emitBinary();
  // binaryen's own validator prints to stderr; the engine's is silent and the one that matters
  if (!WebAssembly.validate(wasm as BufferSource)) {
    throw new ModuleError(`${name} could not be instrumented: the result does not validate (a crvm bug)`);
  }
  progress("emit", 1, 1);
  return { wasm, globals: globals.map((g) => GLOBAL_EXPORT_PREFIX + g), memory, imports, stats };
}

/** Exports the memory (as "memory") when the module neither imports nor exports it; adds one if it has none. */
function ensureMemoryReachable(B: Binaryen, m: Module, exportNames: Set<string>): void {
  const exportName = exportNames.has("memory") ? "crvm_memory" : "memory";
  // Asyncify keeps its data in linear memory, so a module without one gets one.
  if (!m.hasMemory()) { m.setMemory(1, -1, exportName); return; }
  if (m.getMemoryInfo().module) return;
  for (let i = 0; i < m.getNumExports(); i++) if (B.getExportInfo(m.getExportByIndex(i)).kind === B.ExternalMemory) return;
  m.addMemoryExport("0", exportName);
}

function describeMemory(B: Binaryen, m: Module): MemoryDesc {
  const info = m.getMemoryInfo();
  let exportName: string | null = null;
  for (let i = 0; i < m.getNumExports() && exportName === null; i++) {
    const ex = B.getExportInfo(m.getExportByIndex(i));
    if (ex.kind === B.ExternalMemory) exportName = ex.name;
  }
  return {
    import: info.module ? { module: info.module, name: info.base ?? "" } : null,
    exportName,
    initialPages: info.initial,
    maximumPages: info.max ?? null,
  };
}

function functionImports(B: Binaryen, m: Module): FuncImport[] {
  const typeName = (t: Type) =>
    t === B.i32 ? "i32" : t === B.i64 ? "i64" : t === B.f32 ? "f32" : t === B.f64 ? "f64" : t === B.v128 ? "v128" : "ref";
  const out: FuncImport[] = [];
  for (let i = 0; i < m.getNumFunctions(); i++) {
    const fi = B.getFunctionInfo(m.getFunctionByIndex(i));
    if (!fi.module) continue;
    out.push({
      module: fi.module, name: fi.base ?? "",
      params: B.expandType(fi.params).map(typeName), results: B.expandType(fi.results).map(typeName),
    });
  }
  return out;
}

/** binaryen throws plain objects and strings as well as Errors. */
function describe(e: unknown): string {
  const s = e instanceof Error ? e.message : typeof e === "string" ? e : JSON.stringify(e) ?? String(e);
  const line = (s.split("\n", 1)[0] ?? "").trim() || "unknown error";
  return line.length > 300 ? line.slice(0, 300) + "…" : line;
}
