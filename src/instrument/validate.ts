// What crvm refuses to instrument, and why. Every check runs on the raw bytes
// (binary.ts) before binaryen is loaded: refusing a module costs milliseconds.
import { ModuleError } from "../errors.ts";
import { summarize } from "./binary.ts";
import type { Finding, FuncType, Summary } from "./binary.ts";

const MAGIC = [0x00, 0x61, 0x73, 0x6d];

/** True when `bytes` starts with the WebAssembly magic number `\0asm`. */
export function isWasmBinary(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && MAGIC.every((b, i) => bytes[i] === b);
}

function fail(name: string, problem: string): never {
  throw new ModuleError(`${name} ${problem}`);
}

const sig = (t: FuncType) => `(${t.params.join(", ")}) -> (${t.results.join(", ")})`;

/**
 * Checks that `bytes` is a core WebAssembly module crvm can instrument and
 * capture. Throws a one-line `ModuleError` naming `name` and the problem.
 *
 * @example
 * const summary = await checkModule(bytes, "guest.wasm");
 */
export async function checkModule(bytes: Uint8Array, name: string): Promise<Summary> {
  if (!isWasmBinary(bytes) || bytes.length < 8) fail(name, "is not a WebAssembly binary (bad magic number)");
  const version = bytes[4]! | (bytes[5]! << 8) | (bytes[6]! << 16) | (bytes[7]! << 24);
  if (version !== 1) {
    if (bytes[6] === 0x01 && bytes[7] === 0x00) fail(name, "is a WebAssembly component: crvm runs core WASI modules");
    fail(name, `has WebAssembly binary version ${version}; crvm reads version 1`);
  }
  let s: Summary | null = null;
  try {
    s = summarize(bytes);
  } catch {
    // truncated or malformed: the engine's message below says where
  }
  const valid = WebAssembly.validate(bytes as BufferSource);
  // crvm's own reasons come first: a module it refuses anyway (memory64, try_table, ... on an engine
  // without that proposal) gets the reason that holds on every engine.
  if (s) checkSummary(name, s);
  if (!valid) {
    let msg = "rejected by the engine";
    try {
      await WebAssembly.compile(bytes as BufferSource);
    } catch (e) {
      msg = firstLine(e instanceof Error ? e.message : String(e));
    }
    fail(name, `is not a valid WebAssembly module: ${msg}`);
  }
  if (!s) return fail(name, "could not be read: its sections are malformed");
  return s;
}

function checkSummary(name: string, s: Summary): void {
  const start = s.exports.find((e) => e.name === "_start");
  if (!start) fail(name, "has no _start export: crvm runs WASI command modules");
  const startType = start!.kind === "func" ? s.types[s.funcTypes[start!.index] ?? -1] : null;
  if (!startType || startType.params.length || startType.results.length) {
    fail(name, "exports _start, but not as a function of type () -> (): crvm runs WASI command modules");
  }
  const asy = s.exports.find((e) => e.name.startsWith("asyncify_"));
  if (asy) fail(name, `already uses Asyncify (it exports ${asy.name}); crvm applies Asyncify itself`);
  if (s.imports.some((i) => i.module === "asyncify")) {
    fail(name, `already uses Asyncify (it imports from module "asyncify"); crvm applies Asyncify itself`);
  }
  const own = s.exports.find((e) => e.name.startsWith("crvm_g:"));
  if (own) fail(name, `is already instrumented by crvm (it exports ${own.name})`);
  if ([...s.globalNames.values()].includes("__crvm_fuel")) {
    fail(name, "already has a global named __crvm_fuel: it looks instrumented by crvm already");
  }

  for (const i of s.imports) {
    if (i.kind === "table") fail(name, `changes its function table at run time (it imports the table "${i.module}"."${i.name}"); crvm cannot capture tables`);
    if (i.kind !== "func" && i.kind !== "memory") {
      fail(name, `imports a ${i.kind} ("${i.module}"."${i.name}"); crvm links function imports and one memory only`);
    }
  }
  const memories = [...s.imports.filter((i) => i.kind === "memory").map((i) => i.limits!), ...s.memories];
  if (memories.length > 1) fail(name, `has ${memories.length} memories (multi-memory); crvm supports one memory`);
  const mem = memories[0];
  if (mem?.is64) fail(name, "uses a 64-bit memory (memory64); crvm supports 32-bit memories only");
  if (mem?.shared) fail(name, "uses a shared memory (threads); crvm supports single-threaded guests only");

  s.globals.forEach((g, i) => {
    if (g.mutable && g.type === "v128") {
      const gname = s.globalNames.get(i);
      fail(name, `has a mutable v128 global (${gname ?? `global ${i}`}); crvm cannot read or restore it from JavaScript`);
    }
  });
  const tableExport = s.exports.find((e) => e.kind === "table");
  if (tableExport) fail(name, `changes its function table at run time (it exports the table as "${tableExport.name}"); crvm cannot capture tables`);
  if (s.finding) refuseFinding(name, s, s.finding);
  if (s.hasTags) fail(name, "uses exception handling (it declares exception tags); crvm cannot capture stacks with exception handlers");

  for (const i of s.imports) {
    if (i.kind !== "func") continue;
    const t = s.types[i.type];
    const bad = t && [...t.params, ...t.results].find((v) => v !== "i32" && v !== "i64" && v !== "f32" && v !== "f64");
    if (!t || bad) {
      fail(name, `imports "${i.module}"."${i.name}" with a ${bad ?? "non-function"} type; crvm links imports of i32/i64/f32/f64 values only`);
    }
    if (i.module === "crvm" && i.name === "yield" && (t!.params.join() !== "i32" || t!.results.length)) {
      fail(name, `imports crvm.yield as ${sig(t!)}; crvm.yield is (i32) -> ()`);
    }
  }
}

function refuseFinding(name: string, s: Summary, f: Finding): never {
  const fname = s.funcNames.get(f.func);
  const where = f.func < 0 ? f.where ?? "a constant expression" : fname ? `function ${fname}` : `function #${f.func}`;
  if (f.what === "table") return fail(name, `changes its function table at run time (${f.op} in ${where}); crvm cannot capture tables`);
  if (f.what === "eh") return fail(name, `uses exception handling (${f.op} in ${where}); crvm cannot capture stacks with exception handlers`);
  return fail(name, `uses ${f.op} (in ${where}), which crvm cannot instrument`);
}

function firstLine(s: string): string {
  const line = s.split("\n", 1)[0]!.trim();
  return line.length > 300 ? line.slice(0, 300) + "…" : line;
}
