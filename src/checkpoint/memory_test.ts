import { createCRC32, createXXHash128 } from "hash-wasm";
import { describe, expect, it } from "vitest";
import { watToWasm } from "../instrument/mod.ts";
import type { InstrumentedModule } from "../instrument/mod.ts";
import { Hashing, isZeroPage, PAGE_SIZE, type SnapshotWriter } from "../snapshot/mod.ts";
import { dumpMemory, restoreMemory } from "./memory.ts";
import { importingMemory, MemoryPool, POOL_IMPORT } from "./pool.ts";

const hashing = await Hashing.create();
const reference = await createXXHash128();
const xxh128 = (page: Uint8Array) => reference.init().update(page).digest("hex");

/** A memory whose pages exercise the edges of the scan and of XXH3's block and stripe boundaries. */
function patterned(): WebAssembly.Memory {
  const memory = new WebAssembly.Memory({ initial: 16 });
  const b = new Uint8Array(memory.buffer);
  // page 0: all zero; 1: last byte; 2: first byte; 3: a lone 0x80 (the sign bit of a -0.0 double);
  // 4: random; 5: all 0xff; 6: last 64 bytes (the final stripe); 7: byte 64511 (end of the 63rd block);
  // 8..15: zero except 12 (random) and 15 (a copy of 4).
  b[2 * PAGE_SIZE - 1] = 1;
  b[2 * PAGE_SIZE] = 1;
  b[3 * PAGE_SIZE + 7] = 0x80;
  let x = 12345;
  for (const p of [4, 12]) {
    for (let i = 0; i < PAGE_SIZE; i++) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      b[p * PAGE_SIZE + i] = x >>> 24;
    }
  }
  b.fill(0xff, 5 * PAGE_SIZE, 6 * PAGE_SIZE);
  b.fill(7, 7 * PAGE_SIZE - 64, 7 * PAGE_SIZE);
  b[7 * PAGE_SIZE + 64511] = 9;
  b.copyWithin(15 * PAGE_SIZE, 4 * PAGE_SIZE, 5 * PAGE_SIZE);
  return memory;
}

const page = (m: WebAssembly.Memory, p: number) => new Uint8Array(m.buffer, p * PAGE_SIZE, PAGE_SIZE);

describe("record hashing", () => {
  it("CRC-32 and the batched digest equal hash-wasm's", async () => {
    const crc = await createCRC32();
    const bytes = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed * 7) & 0xff);
    for (const parts of [[bytes(8, 1), bytes(16, 2)], [bytes(0, 0)], [bytes(256, 3)], [bytes(200, 4), bytes(300, 5)], [bytes(70000, 6)]]) {
      crc.init();
      for (const p of parts) crc.update(p);
      expect(hashing.crc32(...parts)).toBe(parseInt(crc.digest("hex"), 16));
    }
    const ref = await createXXHash128();
    ref.init();
    hashing.digest.init();
    for (let i = 0; i < 5000; i++) {
      const p = bytes(i % 1000 === 0 ? 70000 : (i % 29) + 1, i);
      ref.update(p);
      hashing.digest.update(p);
    }
    expect(hashing.digest.digest("hex")).toBe(ref.digest("hex"));
  });
});

describe("page ids and zero pages", () => {
  it("gives xxh128's ids, in place and from a copy", () => {
    const m = patterned();
    const scan = hashing.scanMemory(m);
    for (let p = 0; p < 16; p++) {
      const want = xxh128(page(m, p));
      expect(scan.pageId(p)).toBe(want);
      expect(hashing.pageId(page(m, p).slice())).toBe(want);
    }
  });

  it("finds exactly the non-zero pages", () => {
    const m = patterned();
    const scan = hashing.scanMemory(m);
    const found: number[] = [];
    for (let p = scan.nextNonZero(0); p < scan.pages; p = scan.nextNonZero(p + 1)) found.push(p);
    expect(found).toEqual([1, 2, 3, 4, 5, 6, 7, 12, 15]);
    expect(found).toEqual([...Array(16).keys()].filter((p) => !isZeroPage(page(m, p))));
    // isZeroPage on an unaligned view falls back to bytes.
    const odd = new Uint8Array(PAGE_SIZE + 1);
    expect(isZeroPage(odd.subarray(1))).toBe(true);
    odd[PAGE_SIZE] = 1;
    expect(isZeroPage(odd.subarray(1))).toBe(false);
  });

  it("scans and hashes pages above 2 GiB, up to the last page of a 4 GiB memory", () => {
    let m: WebAssembly.Memory;
    try {
      m = new WebAssembly.Memory({ initial: 65536 });
    } catch {
      return; // an engine or machine that cannot reserve 4 GiB
    }
    const b = new Uint8Array(m.buffer);
    b[40000 * PAGE_SIZE + 5] = 1;
    b[65535 * PAGE_SIZE + PAGE_SIZE - 1] = 2;
    const scan = hashing.scanMemory(m);
    expect(scan.nextNonZero(39990)).toBe(40000);
    expect(scan.nextNonZero(40001)).toBe(65535);
    expect(scan.pageId(65535)).toBe(xxh128(page(m, 65535)));
    expect(scan.pageId(40000)).toBe(xxh128(page(m, 40000)));
    b[65535 * PAGE_SIZE + PAGE_SIZE - 1] = 0;
    expect(scan.nextNonZero(65535)).toBe(65536);
  });

  it("dumps non-zero pages and restores them, zeroing what the image does not cover", () => {
    const m = patterned();
    const stored = new Map<string, Uint8Array>();
    const writer = { page: (id: string, bytes: Uint8Array) => void stored.set(id, bytes.slice()) } as unknown as SnapshotWriter;
    const rec = dumpMemory(m, writer, hashing);
    expect(rec.pages).toBe(16);
    expect(rec.map.map(([p]) => p)).toEqual([1, 2, 3, 4, 5, 6, 7, 12, 15]);
    expect(stored.size).toBe(8); // pages 4 and 15 are the same page
    const target = new WebAssembly.Memory({ initial: 2 });
    new Uint8Array(target.buffer).fill(0x55); // "data segments" in the initial pages
    restoreMemory(target, rec, stored, "t");
    const got = new Uint8Array(target.buffer);
    const want = new Uint8Array(m.buffer);
    expect(got.length).toBe(want.length);
    expect(got.findIndex((x, i) => x !== want[i])).toBe(-1);
  });
});

const WAT = `(module
  (import "env" "f" (func $f (param i32)))
  (memory (export "memory") 2 300)
  (data (i32.const 100) "hello")
  (func (export "peek") (param i32) (result i32) (i32.load8_u (local.get 0))))`;

describe("memory pool", () => {
  it("rewrites a module to import its memory, limits and data kept", async () => {
    const wasm = await watToWasm(WAT, "t.wat");
    const v = importingMemory(wasm);
    expect(v.import).toEqual(POOL_IMPORT);
    expect([v.minPages, v.maxPages]).toEqual([2, 300]);
    const memory = new WebAssembly.Memory({ initial: 5, maximum: 300 });
    const inst = new WebAssembly.Instance(new WebAssembly.Module(v.wasm), { env: { f: () => {} }, [POOL_IMPORT.module]: { [POOL_IMPORT.name]: memory } });
    expect(inst.exports.memory).toBe(memory);
    expect((inst.exports.peek as (a: number) => number)(100)).toBe("h".charCodeAt(0));
    // A module that imports its memory already is used as it is.
    expect(importingMemory(v.wasm).wasm).toEqual(v.wasm);
  });

  it("hands out zeroed memories and reuses released ones", async () => {
    const wasm = await watToWasm(WAT, "t.wat");
    const module = { name: "t.wat", wasm, wasmHash: "t" } as unknown as InstrumentedModule;
    const pool = await MemoryPool.create();
    await pool.prepare(module);
    const a = await pool.lease(module, 8);
    expect(a.reused).toBe(false);
    expect(a.memory.buffer.byteLength).toBe(8 * PAGE_SIZE);
    new Uint8Array(a.memory.buffer).fill(3, 5 * PAGE_SIZE, 6 * PAGE_SIZE + 10);
    pool.release(a.memory);
    expect(pool.stats.pagesZeroed).toBe(2);
    expect(() => pool.release(a.memory)).toThrow(/did not lease/);
    // Too large for a 4-page image: a fresh one. Fits a 9-page image: the released one.
    expect((await pool.lease(module, 4)).reused).toBe(false);
    const b = await pool.lease(module, 9);
    expect(b.reused).toBe(true);
    expect(b.memory).toBe(a.memory);
    expect(new Uint8Array(b.memory.buffer).every((x) => x === 0)).toBe(true);
    // A VM's memory limit lowers the maximum (the module says 300).
    const c = await pool.lease(module, 8, 10);
    expect(c.reused).toBe(false);
    expect(() => c.memory.grow(3)).toThrow(RangeError);
    expect(c.memory.grow(2)).toBe(8);
  });
});
