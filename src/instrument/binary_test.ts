import { describe, expect, it } from "vitest";
import { sections, summarize, trimCustomSections } from "./binary.ts";
import { watToWasm } from "./mod.ts";

// Each instruction kind with immediates. If any immediate were misread, the scan would lose sync and
// report this function ("could not decode") instead of the table.set in the next one.
const ALL_IMMEDIATES = `
  (local $v v128) (local $l i64) (local $f f64)
  (block $b (result i32)
    (br_table $b $b (i32.const 1) (i32.const 0)))
  drop
  (local.set $l (i64.const 0x7fffffffffffffff))
  (local.set $f (f64.add (f64.const 1.5) (f64.promote_f32 (f32.const -2.25))))
  (drop (select (result i64) (i64.const 1) (i64.const 2) (i32.const 0)))
  (local.set $v (v128.const i32x4 1 2 3 4))
  (local.set $v (i8x16.shuffle 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 31 (local.get $v) (local.get $v)))
  (drop (i32x4.extract_lane 3 (local.get $v)))
  (local.set $v (v128.load32_lane offset=8 2 (i32.const 0) (local.get $v)))
  (local.set $v (v128.load64_zero (i32.const 16)))
  (v128.store offset=32 align=4 (i32.const 0) (i32x4.add (local.get $v) (local.get $v)))
  (local.set $v (i32x4.relaxed_trunc_f32x4_s (local.get $v)))
  (drop (i32.atomic.rmw.add offset=4 (i32.const 0) (i32.const 1)))
  (atomic.fence)
  (memory.copy (i32.const 0) (i32.const 8) (i32.const 8))
  (memory.fill (i32.const 0) (i32.const 0) (i32.const 8))
  (memory.init $d (i32.const 0) (i32.const 0) (i32.const 1))
  (data.drop $d)
  (drop (i32.trunc_sat_f64_s (local.get $f)))
  (drop (memory.grow (i32.const 0)))
  (drop (table.size $t))
  (drop (ref.is_null (table.get $t (i32.const 0))))
  (call_indirect $t (type $vt) (i32.const 0))`;

describe("binary reader", () => {
  it("decodes every kind of immediate and stays in sync", async () => {
    const wasm = await watToWasm(`(module
      (type $vt (func)) (memory 1) (table $t 2 funcref) (data $d "x") (elem declare func $g)
      (global $x (mut i32) (i32.add (i32.const 1) (i32.const 2)))
      (func $g) (func $everything ${ALL_IMMEDIATES}) (func $set (table.set $t (i32.const 0) (ref.func $g))))`, "t.wat");
    const s = summarize(wasm);
    expect(s.finding).toEqual({ op: "table.set", what: "table", func: 2 });
    expect(s.funcNames.get(1)).toBe("everything");
    expect([...s.features].sort()).toEqual(["atomics", "extended-const", "relaxed-simd", "simd"]);
    expect(s.globals).toEqual([{ type: "i32", mutable: true }]);
    expect(s.globalNames.get(0)).toBe("x");
  });

  it("reads imports, exports, memories and function types", async () => {
    const s = summarize(await watToWasm(`(module
      (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
      (import "env" "mem" (memory 2 5))
      (func (export "_start")) (export "mem" (memory 0)))`, "t.wat"));
    expect(s.imports.map((i) => [i.module, i.name, i.kind])).toEqual([["wasi_snapshot_preview1", "fd_write", "func"], ["env", "mem", "memory"]]);
    expect(s.imports[1]!.limits).toEqual({ min: 2, max: 5, shared: false, is64: false });
    expect(s.exports).toEqual([{ name: "_start", kind: "func", index: 1 }, { name: "mem", kind: "memory", index: 0 }]);
    expect(s.types[s.funcTypes[0]!]).toEqual({ params: ["i32", "i32", "i32", "i32"], results: ["i32"] });
    expect(s.finding).toBe(null);
  });

  it("keeps only target_features and global names among custom sections", async () => {
    const wasm = await watToWasm(`(module (global $keep (mut i32) (i32.const 0)) (func $drop) (@custom "extra" "data"))`, "t.wat");
    const trimmed = trimCustomSections(wasm);
    expect(sections(wasm).filter((x) => x.id === 0).map((x) => x.name)).toContain("extra");
    expect(sections(trimmed).filter((x) => x.id === 0).map((x) => x.name)).toEqual(["name"]);
    const s = summarize(trimmed);
    expect(s.globalNames.get(0)).toBe("keep");
    expect(s.funcNames.size).toBe(0);
    expect(WebAssembly.validate(trimmed as BufferSource)).toBe(true);
  });
});
