import { describe, expect, it } from "vitest";
import { ModuleError } from "../errors.ts";
import { nodeFs } from "../host/fs.ts";
import { instrumentModule, isWasmBinary, watToWasm } from "./mod.ts";

const fs = nodeFs();
const START = `(func (export "_start"))`;
const MEM = `(memory (export "memory") 1)`;

async function refusal(input: Uint8Array | string): Promise<ModuleError> {
  const bytes = typeof input === "string" ? await watToWasm(input, "t.wat") : input;
  try {
    await instrumentModule(bytes, { name: "t.wat", cacheDir: null, fs });
  } catch (e) {
    expect(e).toBeInstanceOf(ModuleError);
    const msg = (e as Error).message;
    expect(msg.startsWith("t.wat ")).toBe(true);
    expect(msg).not.toContain("\n");
    return e as ModuleError;
  }
  throw new Error("module was accepted");
}

describe("validation", () => {
  it("refuses bytes that are not WebAssembly", async () => {
    const e = await refusal(new TextEncoder().encode("\x7fELF not wasm at all"));
    expect(e.message).toMatch(/is not a WebAssembly binary \(bad magic number\)/);
    expect(isWasmBinary(new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]))).toBe(true);
    expect(isWasmBinary(new Uint8Array([0, 0x61, 0x73]))).toBe(false);
  });

  it("refuses a component", async () => {
    const e = await refusal(new Uint8Array([0, 0x61, 0x73, 0x6d, 0x0d, 0, 1, 0]));
    expect(e.message).toMatch(/is a WebAssembly component/);
  });

  it("refuses an invalid module with the engine's message", async () => {
    const e = await refusal(`(module ${MEM} (func (export "_start") (drop (i32.add (i32.const 1) (i64.const 2)))))`);
    expect(e.message).toMatch(/^t\.wat is not a valid WebAssembly module: \S+/);
  });

  it("refuses a truncated module", async () => {
    const ok = await watToWasm(`(module ${MEM} ${START})`, "t.wat");
    const e = await refusal(ok.subarray(0, ok.length - 3));
    expect(e.message).toMatch(/is not a valid WebAssembly module/);
  });

  it("refuses a module without _start", async () => {
    const e = await refusal(`(module ${MEM} (func (export "main")))`);
    expect(e.message).toBe("t.wat has no _start export: crvm runs WASI command modules");
  });

  it("refuses a _start that takes arguments", async () => {
    const e = await refusal(`(module ${MEM} (func (export "_start") (param i32)))`);
    expect(e.message).toMatch(/_start, but not as a function of type \(\) -> \(\)/);
  });

  it("refuses a module that already uses Asyncify", async () => {
    expect((await refusal(`(module ${MEM} ${START} (func (export "asyncify_get_state") (result i32) (i32.const 0)))`)).message)
      .toMatch(/already uses Asyncify \(it exports asyncify_get_state\)/);
    expect((await refusal(`(module (import "asyncify" "start_unwind" (func (param i32))) ${MEM} ${START})`)).message)
      .toMatch(/already uses Asyncify \(it imports from module "asyncify"\)/);
  });

  it("refuses a module crvm already instrumented", async () => {
    const e = await refusal(`(module ${MEM} (global $g (mut i32) (i32.const 0)) (export "crvm_g:g" (global $g)) ${START})`);
    expect(e.message).toMatch(/already instrumented by crvm/);
  });

  it("refuses a mutable v128 global", async () => {
    const e = await refusal(`(module ${MEM} (global $v (mut v128) (v128.const i64x2 0 0)) ${START})`);
    expect(e.message).toMatch(/has a mutable v128 global \(v\)/);
  });

  it("refuses memory64, shared memory and multiple memories", async () => {
    expect((await refusal(`(module (memory i64 1) ${START})`)).message).toMatch(/64-bit memory \(memory64\)/);
    expect((await refusal(`(module (memory 1 1 shared) ${START})`)).message).toMatch(/shared memory/);
    expect((await refusal(`(module (memory 1) (memory 1) ${START})`)).message).toMatch(/has 2 memories/);
    expect((await refusal(`(module (import "env" "m" (memory 1)) (memory 1) ${START})`)).message).toMatch(/has 2 memories/);
  });

  it("refuses imports other than functions and memory", async () => {
    expect((await refusal(`(module (import "env" "g" (global i32)) ${MEM} ${START})`)).message)
      .toMatch(/imports a global \("env"\."g"\); crvm links function imports and one memory only/);
  });

  it("refuses a wrongly typed crvm.yield and imports of non-number types", async () => {
    expect((await refusal(`(module (import "crvm" "yield" (func (param i64))) ${MEM} ${START})`)).message)
      .toMatch(/imports crvm\.yield as \(i64\) -> \(\); crvm\.yield is \(i32\) -> \(\)/);
    expect((await refusal(`(module (import "env" "f" (func (param v128))) ${MEM} ${START})`)).message)
      .toMatch(/imports "env"\."f" with a v128 type/);
  });

  const TABLE = `(table $t 2 funcref) (elem declare func $f) (func $f)`;
  for (const [op, code] of [
    ["table.set", `(table.set $t (i32.const 0) (ref.func $f))`],
    ["table.grow", `(drop (table.grow $t (ref.null func) (i32.const 1)))`],
    ["table.fill", `(table.fill $t (i32.const 0) (ref.null func) (i32.const 1))`],
    ["table.copy", `(table.copy $t $t (i32.const 0) (i32.const 1) (i32.const 1))`],
    ["table.init", `(table.init $t $e (i32.const 0) (i32.const 0) (i32.const 1))`],
    ["elem.drop", `(elem.drop $e)`],
  ]) {
    it(`refuses ${op}`, async () => {
      const e = await refusal(`(module ${MEM} ${TABLE} (elem $e func $f) (func $mut ${code}) ${START})`);
      expect(e.message).toBe(`t.wat changes its function table at run time (${op} in function mut); crvm cannot capture tables`);
    });
  }

  it("refuses an imported or exported table", async () => {
    expect((await refusal(`(module (import "env" "t" (table 1 funcref)) ${MEM} ${START})`)).message)
      .toMatch(/changes its function table at run time \(it imports the table "env"\."t"\); crvm cannot capture tables/);
    expect((await refusal(`(module (table (export "tbl") 1 funcref) ${MEM} ${START})`)).message)
      .toMatch(/changes its function table at run time \(it exports the table as "tbl"\); crvm cannot capture tables/);
  });

  it("refuses legacy exception handling (try/catch)", async () => {
    // jco's text parser has no legacy-exceptions syntax: (func (try (do) (catch 0))) by hand
    const hex = "0061736d01000000" + "010401600000" + "03030200000503010001" + "0d03010000" +
      "071302065f73746172740001066d656d6f72790200" + "0a0c020700064007000b0b02000b";
    const bytes = Uint8Array.from(hex.match(/../g)!.map((h) => parseInt(h, 16)));
    const e = await refusal(bytes);
    expect(e.message).toBe("t.wat uses exception handling (try in function #0); crvm cannot capture stacks with exception handlers");
  });

  for (const [op, code] of [
    ["throw", `(throw $x)`],
    ["try_table", `(block $b (try_table (catch_all $b)))`],
  ]) {
    it(`refuses exception handling (${op})`, async () => {
      const e = await refusal(`(module (tag $x) ${MEM} (func $eh ${code}) ${START})`);
      expect(e.message).toMatch(new RegExp(`uses exception handling \\(${op} in function eh\\); crvm cannot capture stacks`));
    });
  }

  it("refuses a module that only declares exception tags", async () => {
    expect((await refusal(`(module (tag $x) ${MEM} ${START})`)).message).toMatch(/uses exception handling \(it declares exception tags\)/);
  });

  it("refuses tail calls, which Asyncify cannot instrument", async () => {
    const e = await refusal(`(module ${MEM} (func $f (return_call $f)) ${START})`);
    expect(e.message).toMatch(/uses return_call \(in function f\), which crvm cannot instrument/);
  });

  it("reports a .wat syntax error with file, line and jco's message", async () => {
    const err = await watToWasm("(module\n  (func $f\n    (i32.bogus)))", "bad.wat").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModuleError);
    expect((err as Error).message).toBe("bad.wat is not valid WebAssembly text: line 3, column 6: unknown operator or unexpected token");
  });

  it("converts WebAssembly text given to instrumentModule", async () => {
    const text = new TextEncoder().encode(`;; a comment\n(module ${MEM} ${START})`);
    const mod = await instrumentModule(text, { name: "t.wat", cacheDir: null, fs });
    expect(isWasmBinary(mod.source)).toBe(true);
    expect(mod.globals).toEqual(["crvm_g:__crvm_fuel"]);
  });
});
