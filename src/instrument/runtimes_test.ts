// The transform output must be byte-identical on Node, Deno and Bun: a snapshot records the
// instrumented module's hash, and a restore on another runtime re-instruments and compares it.
// This test instruments guests here (Node, under vitest) and in `deno` and `bun` child processes.
import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nodeFs } from "../host/fs.ts";
import { instrumentModule, watToWasm } from "./mod.ts";

const here = new URL(".", import.meta.url).pathname;
const root = join(here, "../..");
const run = promisify(execFile);

const has = (cmd: string, args: string[]) => {
  try {
    execFileSync(cmd, args, { stdio: "ignore", cwd: root });
    return true;
  } catch {
    return false;
  }
};

// A C guest without malloc (dlmalloc alone is ~1 s of Asyncify per runtime): libc's qsort reaches the
// comparator through call_indirect, which exercises the call_indirect wrapping and the fast/slow split.
const C_GUEST = `
#include <stdlib.h>
#include <unistd.h>
static unsigned v[4096];
static int cmp(const void *a, const void *b) { unsigned x = *(const unsigned *)a, y = *(const unsigned *)b; return x < y ? -1 : x > y; }
static unsigned rec(unsigned n) { return n < 2 ? n : rec(n - 1) + 3 * rec(n - 2); }
int main(void) {
  unsigned x = 1;
  for (int i = 0; i < 4096; i++) v[i] = x = x * 1103515245u + 12345u;
  qsort(v, 4096, sizeof v[0], cmp);
  char c = (char)('a' + (v[7] + rec(20)) % 26);
  write(1, &c, 1);
  return 0;
}
`;

// Prints {file: wasmHash} for the files given; no cache, so every runtime really transforms.
const SCRIPT = `
import { readFileSync } from "node:fs";
import { instrumentModule } from ${JSON.stringify(join(here, "mod.ts"))};
import { nodeFs } from ${JSON.stringify(join(here, "../host/fs.ts"))};
const out = {};
for (const f of (globalThis.Deno ? Deno.args : process.argv.slice(2))) {
  const m = await instrumentModule(new Uint8Array(readFileSync(f)), { name: f, cacheDir: null, fs: nodeFs() });
  out[f] = m.wasmHash;
}
console.log(JSON.stringify(out));
`;

describe("byte-identical output across runtimes", () => {
  const dir = mkdtempSync(join(tmpdir(), "crvm-runtimes-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const files: string[] = [];
  const want: Record<string, string> = {};
  const hasDeno = has("npx", ["--no-install", "deno", "--version"]);
  const hasBun = has("npx", ["--no-install", "bun", "--version"]);
  let deno: Promise<{ stdout: string }>, bun: Promise<{ stdout: string }>;
  beforeAll(async () => {
    writeFileSync(join(dir, "hash.ts"), SCRIPT);
    const wat = join(dir, "capture_guest.wasm");
    writeFileSync(wat, await watToWasm(readFileSync(join(here, "testdata/capture_guest.wat"), "utf8"), "capture_guest.wat"));
    files.push(wat);
    // clang-22 + wasi-libc add a C guest; without them the .wat guest alone is compared
    if (has("clang-22", ["--version"])) {
      const c = join(dir, "guest_c.wasm");
      writeFileSync(join(dir, "guest.c"), C_GUEST);
      execFileSync("clang-22", ["--no-wasm-opt", "-Wno-deprecated", "--target=wasm32-wasi", "-O2", "-Wl,--strip-debug",
        "-o", c, join(dir, "guest.c")]);
      files.push(c);
    }
    // the child processes run while this one transforms
    const script = join(dir, "hash.ts");
    if (hasDeno) deno = run("npx", ["--no-install", "deno", "run", "-A", "--quiet", "--config", "deno.json", script, ...files], { cwd: root });
    if (hasBun) bun = run("npx", ["--no-install", "bun", script, ...files], { cwd: root });
    deno?.catch(() => {}); // awaited by its test; avoid an unhandled rejection meanwhile
    bun?.catch(() => {});
    for (const f of files) {
      want[f] = (await instrumentModule(new Uint8Array(readFileSync(f)), { name: f, cacheDir: null, fs: nodeFs() })).wasmHash;
    }
  });

  // deno and bun come from npm (devDependencies); skipped where they are not installed
  it.skipIf(!hasDeno)("on Deno", async () => {
    expect(JSON.parse((await deno).stdout)).toEqual(want);
  });

  it.skipIf(!hasBun)("on Bun", async () => {
    expect(JSON.parse((await bun).stdout)).toEqual(want);
  });
});
