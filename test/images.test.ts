// Snapshot files as a user handles them: incremental chains, compression,
// verification, and the JSON round trip of `crvm inspect`.
import * as fs from "node:fs";
import * as path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { crvm, guest, tmpDir } from "./helpers.ts";

const ARGS = [guest("ticker"), "80"];
let plain = "";

beforeAll(async () => {
  plain = (await crvm("node", ["run", ...ARGS])).stdout.toString();
});

/** run → A (full) → restore → B (incremental against A) → restore to the end. */
async function chain(extra: string[] = []): Promise<{ dir: string; out: string }> {
  const dir = tmpDir();
  const a = await crvm("node", ["run", "--checkpoint-after-yields", "40", "--checkpoint-file", path.join(dir, "a.snap"), ...extra, ...ARGS]);
  expect(a.code, a.stderr).toBe(0);
  const b = await crvm("node", ["restore", "--checkpoint-after-yields", "60", "--checkpoint-file", path.join(dir, "b.snap"), "--parent", path.join(dir, "a.snap"), ...extra, path.join(dir, "a.snap")]);
  expect(b.code, b.stderr).toBe(0);
  const c = await crvm("deno", ["restore", path.join(dir, "b.snap")]);
  expect(c.code, c.stderr).toBe(0);
  return { dir, out: a.stdout.toString() + b.stdout.toString() + c.stdout.toString() };
}

describe("incremental images", () => {
  it("store only what changed and restore through the chain", async () => {
    const { dir, out } = await chain();
    expect(out).toBe(plain);
    const a = fs.statSync(path.join(dir, "a.snap")).size;
    const b = fs.statSync(path.join(dir, "b.snap")).size;
    // The child does not repeat the module (~34 KiB), nor pages the guest did not change.
    expect(b).toBeLessThan(a - 30_000);
    const kinds = JSON.parse((await crvm("node", ["inspect", "--json", path.join(dir, "b.snap")])).stdout.toString()).records.map((r: { kind: string }) => r.kind);
    expect(kinds).toContain("MODULE_REF");
    expect(kinds).not.toContain("MODULE");
    const info = (await crvm("node", ["inspect", path.join(dir, "b.snap")])).stdout.toString();
    expect(info).toMatch(/chain: .*b\.snap → .*a\.snap/);
    expect(info).toMatch(/\d+ inherited/);
  });

  it("refuses a missing parent and a different parent, before running anything", async () => {
    const { dir } = await chain();
    const other = await chain();
    fs.copyFileSync(path.join(other.dir, "a.snap"), path.join(dir, "a.snap"));
    const r = await crvm("node", ["restore", path.join(dir, "b.snap")]);
    expect(r.stderr).toMatch(/not the parent it was made against/);
    expect(r.code).not.toBe(0);
    expect(r.stdout.length).toBe(0);
    fs.rmSync(path.join(dir, "a.snap"));
    const m = await crvm("node", ["restore", path.join(dir, "b.snap")]);
    expect(m.stderr).toMatch(/parent image a\.snap is missing/);
    expect(m.stdout.length).toBe(0);
  });
});

describe("compressed images", () => {
  it("restore like uncompressed ones, on another runtime too", async () => {
    const { dir, out } = await chain(["--compress"]);
    expect(out).toBe(plain);
    const head = fs.readFileSync(path.join(dir, "a.snap")).subarray(0, 2);
    expect([...head]).toEqual([0x1f, 0x8b]);
  });
});

describe("streamed images", () => {
  it("restores an image read from stdin as it arrives (plain and compressed)", async () => {
    for (const extra of [[], ["--compress"]]) {
      const dir = tmpDir();
      const image = path.join(dir, "a.snap");
      const a = await crvm("node", ["run", "--checkpoint-after-yields", "30", "--checkpoint-file", image, ...extra, ...ARGS]);
      const b = await crvm("bun", ["restore", "-"], { input: fs.readFileSync(image) });
      expect(b.code, b.stderr).toBe(0);
      expect(a.stdout.toString() + b.stdout.toString()).toBe(plain);
      const cut = await crvm("node", ["restore", "-"], { input: fs.readFileSync(image).subarray(0, 5000) });
      expect(cut.code).not.toBe(0);
      expect(cut.stderr.trim().split("\n")).toHaveLength(1);
      expect(cut.stdout.length).toBe(0);
    }
  });
});

describe("crvm inspect", () => {
  it("--json --with-pages and --encode give back the image byte for byte", async () => {
    const { dir } = await chain();
    for (const name of ["a.snap", "b.snap"]) {
      const json = path.join(dir, `${name}.json`);
      fs.writeFileSync(json, (await crvm("node", ["inspect", "--json", "--with-pages", path.join(dir, name)])).stdout);
      const back = path.join(dir, `${name}.back`);
      const e = await crvm("bun", ["inspect", "--encode", json, "-o", back]);
      expect(e.code, e.stderr).toBe(0);
      expect(Buffer.compare(fs.readFileSync(back), fs.readFileSync(path.join(dir, name)))).toBe(0);
    }
  });

  it("--encode of an edited document makes an image restore refuses with a clear message", async () => {
    const { dir } = await chain();
    const doc = JSON.parse((await crvm("node", ["inspect", "--json", "--with-pages", path.join(dir, "a.snap")])).stdout.toString());
    const vm = doc.records.find((r: { kind: string }) => r.kind === "VM").vm;
    vm.tasks[0].memory.map[0][0] = 99_999; // a page outside the memory
    fs.writeFileSync(path.join(dir, "bad.json"), JSON.stringify(doc));
    expect((await crvm("node", ["inspect", "--encode", path.join(dir, "bad.json"), "-o", path.join(dir, "bad.snap")])).code).toBe(0);
    const r = await crvm("node", ["restore", path.join(dir, "bad.snap")]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/record \d+ \(VM\).*outside its memory/);
    expect(r.stdout.length).toBe(0);
  });

  it("--verify names the first bad record", async () => {
    const { dir } = await chain();
    const file = path.join(dir, "a.snap");
    expect((await crvm("node", ["inspect", "--verify", file])).stdout.toString()).toMatch(/^ok: /);
    const bytes = fs.readFileSync(file);
    bytes[200]! ^= 4;
    fs.writeFileSync(file, bytes);
    const r = await crvm("node", ["inspect", "--verify", file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/record \d+ \(\w+\) at offset \d+/);
  });

  it("summarizes pages stored, deduplicated, inherited and zero", async () => {
    const { dir } = await chain();
    const out = (await crvm("node", ["inspect", path.join(dir, "b.snap")])).stdout.toString();
    expect(out).toMatch(/pages: \d+ stored here .*, \d+ deduplicated, \d+ inherited, \d+ zero/);
  });
});
