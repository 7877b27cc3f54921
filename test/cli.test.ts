// `crvm run` as a user sees it: guest output, arguments, environment, exit
// codes, stdin, and one-line errors for every kind of bad input.
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { crvm, guest, tmpDir } from "./helpers.ts";

function wat(text: string): string {
  const p = path.join(tmpDir(), "m.wat");
  fs.writeFileSync(p, text);
  return p;
}

describe("crvm run", () => {
  it("passes args and env and returns the guest's exit code", async () => {
    const r = await crvm("node", ["run", "--env", "GREETING=hi there", guest("hello"), "a b", "exit=3"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(3);
    const out = r.stdout.toString();
    expect(out).toContain("hello from crvm");
    expect(out).toContain("a b");
    expect(out).toContain("hi there");
  });

  it("passes stdin through byte for byte", async () => {
    const input = Buffer.from(Array.from({ length: 200_000 }, (_, i) => (i * 7) & 255));
    const r = await crvm("node", ["run", guest("stdin")], { input });
    expect(r.code).toBe(0);
    expect(Buffer.compare(r.stdout, input)).toBe(0);
    expect(r.stderr).toMatch(/200000 bytes/);
  });

  it("runs a .wat module", async () => {
    const m = wat(`(module
      (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 1)
      (data (i32.const 16) "wat ok\\n")
      (func (export "_start")
        (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 7))
        (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
        (call $exit (i32.const 5))))`);
    const r = await crvm("node", ["run", m]);
    expect(r.stdout.toString()).toBe("wat ok\n");
    expect(r.code).toBe(5);
  });

  it("gives an unknown import ENOSYS instead of refusing the module", async () => {
    const m = wat(`(module
      (import "env" "mystery" (func $m (result i32)))
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 1)
      (func (export "_start") (call $exit (call $m))))`);
    const r = await crvm("node", ["run", m]);
    expect(r.code).toBe(52);
  });

  it("reports a guest trap in one line and exits 134", async () => {
    const m = wat(`(module (memory (export "memory") 1) (func (export "_start") unreachable))`);
    const r = await crvm("node", ["run", m]);
    expect(r.code).toBe(134);
    expect(r.stderr).toMatch(/^crvm: guest trapped: .*unreachable/);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
  });

  for (const rt of ["node", "deno", "bun"] as const) {
    it(`turns runaway recursion into a clear error on ${rt}, not a crash`, async () => {
      const m = wat(`(module (memory (export "memory") 1)
        (func $f (param i32) (result i32) (i32.add (call $f (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))
        (func (export "_start") (drop (call $f (i32.const 0)))))`);
      const r = await crvm(rt, ["run", m]);
      expect(r.code).toBe(134);
      expect(r.stderr).toMatch(/call stack exhausted/);
    });
  }

  it("--max-memory makes memory.grow fail in the guest past the limit", async () => {
    const m = wat(`(module
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 1)
      (func (export "_start")
        (block $full (loop $grow (br_if $full (i32.eq (memory.grow (i32.const 1)) (i32.const -1))) (br $grow)))
        (call $exit (memory.size))))`);
    for (const rt of ["node", "bun"] as const) {
      const r = await crvm(rt, ["run", "--max-memory", "1M", m]);
      expect(r.code, r.stderr).toBe(16);
    }
    const d = await crvm("node", ["run", "--max-memory", "3M", m]);
    expect(d.code).toBe(48);
    const bad = await crvm("node", ["run", "--max-memory", "lots", m]);
    expect(bad.stderr).toMatch(/--max-memory/);
    expect(bad.code).not.toBe(0);
  });

  const bad: [string, string[], RegExp][] = [
    ["a missing module", ["run", "/nonexistent/x.wasm"], /Cannot read module.*no such file/],
    ["a file that is not wasm", ["run", path.join(import.meta.dirname, "helpers.ts")], /not a WebAssembly binary/],
    ["an unknown flag", ["run", "--frobnicate", guest("hello")], /unknown option/],
    ["a bad --dir", ["run", "--dir", "::x", guest("hello")], /--dir/],
    ["--checkpoint-after without a file", ["run", "--checkpoint-after", "10", guest("hello")], /--checkpoint-file/],
    ["a non-numeric --checkpoint-after", ["run", "--checkpoint-after", "soon", "--checkpoint-file", "x", guest("hello")], /whole number/],
    ["a missing snapshot", ["restore", "/nonexistent.snap"], /Cannot read snapshot.*no such file/],
    ["a snapshot that is not one", ["restore", guest("hello")], /not a crvm snapshot/],
  ];
  for (const [what, args, msg] of bad) {
    it(`refuses ${what} with one line and a non-zero exit`, async () => {
      const r = await crvm("node", args);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(msg);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    });
  }

  const badModules: [string, string, RegExp][] = [
    ["no _start", `(module (memory (export "memory") 1) (func (export "main")))`, /_start/],
    ["already asyncified", `(module (memory (export "memory") 1) (func (export "_start")) (func (export "asyncify_start_unwind") (param i32)))`, /Asyncify/i],
    ["invalid wat", `(module (func (export "_start") (i32.add)))`, /m\.wat/],
  ];
  for (const [what, text, msg] of badModules) {
    it(`refuses a module with ${what}`, async () => {
      const r = await crvm("node", ["run", wat(text)]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(msg);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
    });
  }
});

describe("the three documented entry points", () => {
  it("npx crvm, deno task crvm and bun run crvm print the same", async () => {
    const { execFileSync } = await import("node:child_process");
    const { ROOT } = await import("./helpers.ts");
    const bin = (n: string) => path.join(ROOT, "node_modules", ".bin", n);
    const args = ["run", "--env", "GREETING=same", guest("hello"), "x"];
    const run = (cmd: string, pre: string[]) =>
      execFileSync(cmd, [...pre, ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "ignore"] }).toString();
    const node = run("npx", ["--no-install", "crvm"]);
    expect(node).toContain("GREETING=same");
    expect(run(bin("deno"), ["task", "-q", "crvm"])).toBe(node);
    expect(run(bin("bun"), ["run", "--silent", "crvm"])).toBe(node);
  });
});
