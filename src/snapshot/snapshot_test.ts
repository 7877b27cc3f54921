import { describe, expect, it } from "vitest";
import { SnapshotError } from "../errors.ts";
import { decodeSnapshot, Hashing, isZeroPage, PAGE_SIZE, SnapshotWriter, type VmRecord } from "./mod.ts";

const hashing = await Hashing.create();

function image(pages: Uint8Array[]): { bytes: Uint8Array; ids: string[] } {
  const chunks: Uint8Array[] = [];
  const w = new SnapshotWriter(hashing, (c) => chunks.push(c.slice()));
  w.meta({ crvmVersion: "t", createdAt: "now", runtime: "test", monotonicNs: "42", id: "0".repeat(32) });
  w.module({ id: 0, name: "m.wasm", sourceHash: "a".repeat(64), wasmHash: "b".repeat(64), passVersion: 1, source: new Uint8Array([0, 97, 115, 109]) });
  const ids = pages.map((p) => {
    const id = hashing.pageId(p);
    w.page(id, p);
    return id;
  });
  w.blob(7, new Uint8Array([1, 2, 3]));
  const vm: VmRecord = {
    nextPid: 2,
    nextIno: "1",
    inodes: [],
    files: [],
    tasks: [{
      pid: 1, ppid: 0, moduleId: 0, args: [], env: [], frames: 7, fds: [], globals: [], pending: { call: "crvm.yield", freeze: true },
      memory: { pages: pages.length + 1, map: ids.map((id, i) => [i + 1, id] as [number, string]) },
    }],
  };
  w.vm(vm);
  w.finish();
  const bytes = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let off = 0;
  for (const c of chunks) {
    bytes.set(c, off);
    off += c.length;
  }
  return { bytes, ids };
}

const page = (fill: number) => new Uint8Array(PAGE_SIZE).fill(fill);

describe("snapshot records", () => {
  it("round-trips every record kind", async () => {
    const { bytes, ids } = image([page(1), page(2)]);
    const img = await decodeSnapshot(bytes, { name: "t" });
    expect(img.meta.monotonicNs).toBe("42");
    expect(img.modules[0]!.name).toBe("m.wasm");
    expect([...img.modules[0]!.source]).toEqual([0, 97, 115, 109]);
    expect(img.pages.get(ids[1]!)![0]).toBe(2);
    expect([...img.blobs.get(7)!]).toEqual([1, 2, 3]);
    expect(img.vm.nextPid).toBe(2);
  });

  it("stores an identical page once", async () => {
    const { bytes, ids } = image([page(5), page(5), page(6)]);
    const img = await decodeSnapshot(bytes, { name: "t" });
    expect(ids[0]).toBe(ids[1]);
    expect(img.pages.size).toBe(2);
    expect(img.vm.tasks[0]!.memory.map).toHaveLength(3);
  });

  it("detects zero pages", () => {
    expect(isZeroPage(page(0))).toBe(true);
    const p = page(0);
    p[PAGE_SIZE - 1] = 1;
    expect(isZeroPage(p)).toBe(false);
  });

  it("refuses an image truncated at any record boundary or inside one", async () => {
    const { bytes } = image([page(3)]);
    for (const cut of [0, 8, 16, 20, 100, bytes.length - 70000, bytes.length - 1]) {
      await expect(decodeSnapshot(bytes.subarray(0, cut), { name: "t" }), `cut at ${cut}`).rejects.toThrow(SnapshotError);
    }
  });

  it("names the record whose bytes were changed", async () => {
    const { bytes } = image([page(3)]);
    for (const at of [30, 200, bytes.length - 40]) {
      const bad = bytes.slice();
      bad[at]! ^= 0x10;
      await expect(decodeSnapshot(bad, { name: "t" })).rejects.toThrow(/record \d+ \((\w+|kind \d+)\)|trailer|checksum|hash/);
    }
  });

  it("detects a flipped bit inside a page's content through its hash", async () => {
    const { bytes } = image([page(3)]);
    const bad = bytes.slice();
    bad[bytes.length - 1000]! ^= 1;
    await expect(decodeSnapshot(bad, { name: "t" })).rejects.toThrow(/does not match its hash/);
  });

  it("refuses a newer format version, naming both versions", async () => {
    const { bytes } = image([page(9)]);
    const bad = bytes.slice();
    new DataView(bad.buffer).setUint32(8, 9, true);
    await expect(decodeSnapshot(bad, { name: "t" })).rejects.toThrow(/version 9 .* version 1/);
  });

  it("refuses data after the trailer", async () => {
    const { bytes } = image([page(9)]);
    const more = new Uint8Array(bytes.length + 12);
    more.set(bytes);
    await expect(decodeSnapshot(more, { name: "t" })).rejects.toThrow(SnapshotError);
  });
});
