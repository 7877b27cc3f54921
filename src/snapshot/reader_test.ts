// Regressions found by the fuzzer (src/snapshot/fuzz/) and by reading the
// reader: each was a way for an image to make decoding throw something other
// than a SnapshotError, take quadratic time, or allocate ahead of its bytes.
import { describe, expect, it } from "vitest";
import { concatBytes } from "../bytes.ts";
import { SnapshotError } from "../errors.ts";
import { LIMITS, RECORD_HEADER } from "./format.ts";
import { decodeSnapshot, Hashing, type ImageMeta, SnapshotReader, SnapshotWriter, type VmRecord } from "./mod.ts";

const hashing = await Hashing.create();
const meta: ImageMeta = { crvmVersion: "t", createdAt: "now", runtime: "test", monotonicNs: "1", id: "0".repeat(32) };
const module = { id: 0, name: "m.wasm", sourceHash: "a".repeat(64), wasmHash: "b".repeat(64), passVersion: 1 };

function vm(state?: unknown): VmRecord {
  return {
    nextPid: 2,
    nextIno: "1",
    inodes: [],
    files: [],
    tasks: [{
      pid: 1, ppid: 0, moduleId: 0, args: [], env: [], frames: 0, fds: [], globals: [], memory: { pages: 1, map: [] },
      pending: { call: "crvm.yield", freeze: true, ...(state === undefined ? {} : { state }) },
    }],
  };
}

function image(write: (w: SnapshotWriter) => void): Uint8Array {
  const parts: Uint8Array[] = [];
  const w = new SnapshotWriter(hashing, (c) => parts.push(c.slice()));
  write(w);
  w.finish();
  return concatBytes(parts);
}

describe("SnapshotReader regressions", () => {
  it("refuses a VM record nested thousands of levels deep with a SnapshotError (zod recursed into a RangeError)", async () => {
    let state: unknown = 0;
    for (let i = 0; i < 3000; i++) state = [state];
    const bytes = image((w) => {
      w.meta(meta);
      w.module({ ...module, source: new Uint8Array(8) });
      w.blob(0, new Uint8Array(4));
      w.vm(vm(state));
    });
    const e = await decodeSnapshot(bytes, { name: "deep" }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(SnapshotError);
    expect((e as Error).message).toMatch(/record 3 \(VM\) at offset \d+: nested deeper than 32 levels/);
  });

  it("reads 100,000 MODULE_REF records in linear time, and finds a repeated id among them", async () => {
    // Each record used to scan all the modules before it: 75 s for these 21 MB; the test timeout is the bound.
    const refs = (ids: number[]) =>
      image((w) => {
        w.meta({ ...meta, parent: { id: "1".repeat(32), digest: "2".repeat(32), path: "parent.snap" } });
        for (const id of ids) w.moduleRef({ ...module, id });
        w.blob(0, new Uint8Array(4));
        w.vm(vm());
      });
    const n = 100_000;
    expect((await decodeSnapshot(refs(Array.from({ length: n }, (_, i) => i)), { name: "refs" })).modules).toHaveLength(n);
    await expect(decodeSnapshot(refs([0, 5, 1, 5]), { name: "refs" })).rejects.toThrow(/record 4 \(MODULE_REF\) at offset \d+: module id 5 appears twice/);
  }, 60_000);

  it("allocates for a record no more than twice the bytes that arrived, whatever length it states", () => {
    const head = image((w) => w.meta(meta)).subarray(0, -(RECORD_HEADER + 28 + 4)); // without the trailer
    const blob = new Uint8Array(RECORD_HEADER + 100);
    new DataView(blob.buffer).setUint16(0, 4, true);
    new DataView(blob.buffer).setUint32(4, LIMITS.record, true);
    const Original = globalThis.Uint8Array;
    let largest = 0;
    globalThis.Uint8Array = class extends Original {
      constructor(...args: unknown[]) {
        super(...(args as []));
        if (typeof args[0] === "number") largest = Math.max(largest, args[0]);
      }
    } as Uint8ArrayConstructor;
    const r = new SnapshotReader(hashing, { name: "liar" });
    try {
      r.push(head);
      for (let at = 0; at < blob.length; at += 10) r.push(blob.subarray(at, at + 10));
    } finally {
      globalThis.Uint8Array = Original;
    }
    // The first version started every partial record at 64 KiB.
    expect(largest).toBeLessThanOrEqual(200);
    expect(() => r.end()).toThrow(/record 1 \(BLOB\) at offset \d+ is truncated/);
  });
});

describe("JSON payloads", () => {
  it("refuse a byte order mark (the decoder used to drop it: two encodings of one record)", () => {
    const json = new TextEncoder().encode("\ufeff" + JSON.stringify(meta));
    const rec = new Uint8Array(RECORD_HEADER + json.length + 4);
    const dv = new DataView(rec.buffer);
    dv.setUint16(0, 1, true);
    dv.setUint32(4, json.length, true);
    rec.set(json, RECORD_HEADER);
    dv.setUint32(RECORD_HEADER + json.length, hashing.crc32(rec.subarray(0, RECORD_HEADER), json), true);
    const r = new SnapshotReader(hashing, { name: "bom" });
    r.push(image(() => {}).subarray(0, 16));
    expect(() => r.push(rec)).toThrow(/record 0 \(META\) at offset 16: bad JSON/);
  });
});

describe("SnapshotWriter", () => {
  it("refuses a record or a second trailer after the trailer, with a SnapshotError (not the hasher's error)", () => {
    const w = new SnapshotWriter(hashing, () => {});
    w.meta(meta);
    w.finish();
    expect(() => w.blob(1, new Uint8Array(1))).toThrow(new SnapshotError("Cannot write snapshot: a record after the trailer"));
    expect(() => w.page("c".repeat(32), new Uint8Array(65536))).toThrow(SnapshotError);
    expect(() => w.finish()).toThrow(SnapshotError);
  });
});
