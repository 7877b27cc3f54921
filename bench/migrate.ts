// crvm benchmark: migration of a container with a large memory between two
// daemons on one runtime, over HTTP on loopback. This process is the source
// (a Daemon calling `migrateOut`); the target is a second process running
// this script with --target (a Daemon behind the runtime's HTTP server).
// The guest is guests/build/dirty.wasm: it fills MIB MiB, then keeps
// rewriting its first HOT KiB every 2 ms. Each repetition migrates a freshly
// filled container once by stop-and-copy and once live (the target deletes
// the first before the second, so it has none of its pages). Prints one JSON
// document (the last line of stdout); progress goes to stderr.
//
//   npx bun bench/migrate.ts [--mib 256] [--hot-kib 256] [--reps 3]
//   npx deno run -A --v8-flags=--stack-size=4000 bench/migrate.ts [...]
//   node --stack-size=4000 dist/bench/migrate.js [...]
//
// A benchmark records; it never fails on a time. It fails when the guest or
// a migration fails, because then the figures would describe something else.
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { createHost, serveHttp } from "../src/host/mod.ts";
import { createApp } from "../src/server/app.ts";
import { Daemon } from "../src/server/daemon.ts";
import { type MigrationReport, migrateOut } from "../src/server/migration/source.ts";

const TOKEN = "bench-migrate-token-0123456789";
const here = path.dirname(fileURLToPath(import.meta.url));
// dist/bench/migrate.js (Node) or bench/migrate.ts (Deno, Bun).
const root = path.basename(path.dirname(here)) === "dist" ? path.resolve(here, "../..") : path.resolve(here, "..");
const log = (msg: string) => process.stderr.write(`[bench migrate ${runtime()}] ${msg}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const r1 = (x: number) => Math.round(x * 10) / 10;

function runtime(): "node" | "deno" | "bun" {
  const g = globalThis as { Deno?: unknown; Bun?: unknown };
  return g.Deno ? "deno" : g.Bun ? "bun" : "node";
}

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

/** The target: a daemon on a free port; prints its URL and serves until killed. */
async function target(): Promise<void> {
  const host = createHost();
  const daemon = await Daemon.open({ host, stateDir: fs.mkdtempSync(path.join(os.tmpdir(), "crvm-bench-target-")) });
  const server = await serveHttp(createApp(daemon, { token: TOKEN }).fetch, { hostname: "127.0.0.1", port: 0 });
  process.stdout.write(`LISTENING http://127.0.0.1:${server.port}\n`);
}

/** Runs this script again on the same runtime as the target. */
async function startTarget(): Promise<{ url: string; stop: () => void }> {
  const script = fileURLToPath(import.meta.url);
  const rt = runtime();
  const args = rt === "deno" ? ["run", "-A", "--v8-flags=--stack-size=4000", script, "--target"]
    : rt === "bun" ? [script, "--target"]
    : ["--stack-size=4000", script, "--target"];
  const env = { ...process.env, ...(rt === "bun" ? { BUN_JSC_maxPerThreadStackUsage: String(7 * 1024 * 1024) } : {}) };
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "inherit"], env });
  const url = await new Promise<string>((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /LISTENING (\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.on("exit", (code) => reject(new Error(`the target exited with ${code}`)));
  });
  return { url, stop: () => child.kill("SIGKILL") };
}

async function main(): Promise<void> {
  const mib = arg("--mib", 256);
  const hotKib = arg("--hot-kib", 256);
  const reps = arg("--reps", 3);
  const host = createHost();
  const machine = host.machine();
  const source = await Daemon.open({ host, stateDir: fs.mkdtempSync(path.join(os.tmpdir(), "crvm-bench-source-")) });
  const tgt = await startTarget();
  const api = async (method: string, p: string) => {
    const res = await fetch(tgt.url + p, { method, headers: { Authorization: `Bearer ${TOKEN}` } });
    if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${await res.text()}`);
  };
  log(`${mib} MiB guest, ${hotKib} KiB rewritten every 2 ms; target ${tgt.url}`);
  const runs: { mode: "stop-and-copy" | "live"; report: MigrationReport }[] = [];
  let n = 0;
  for (let rep = 0; rep < reps; rep++) {
    for (const mode of ["stop-and-copy", "live"] as const) {
      const name = `g${n++}`;
      const c = await source.create({ name, module: { path: path.join(root, "guests/build/dirty.wasm") }, args: [String(mib), "1000000", String(hotKib)], cgroupfs: false });
      // Filled, and a few steps on.
      while (!new TextDecoder().decode(c.log.read(0).data).includes("step 10 ")) {
        if (c.status === "exited") throw new Error(`the guest exited: ${new TextDecoder().decode(c.log.read(0).data).slice(-500)}`);
        await sleep(20);
      }
      const report = await migrateOut(source, name, { to: tgt.url, token: TOKEN, live: mode === "live" });
      log(`${mode}: downtime ${r1(report.downtimeMs)} ms ${JSON.stringify(report.phasesMs, (_k, v) => (typeof v === "number" ? r1(v) : v))}, ${report.bytes} bytes, rounds ${report.rounds.map((r) => r.pages).join("/") || "-"}, final ${report.final.pages} pages`);
      runs.push({ mode, report });
      await api("DELETE", `/v1/containers/${name}`);
    }
  }
  tgt.stop();
  await source.close();
  const summary = (mode: string) => {
    const rs = runs.filter((r) => r.mode === mode).map((r) => r.report);
    const d = rs.map((r) => r.downtimeMs).sort((a, b) => a - b);
    return {
      downtimeMs: { median: r1(d[Math.floor(d.length / 2)]!), min: r1(d[0]!), max: r1(d[d.length - 1]!) },
      bytes: rs.map((r) => r.bytes),
      rounds: rs.map((r) => r.rounds.map((x) => ({ pages: x.pages, bytes: x.bytes, ms: r1(x.ms) }))),
      final: rs.map((r) => ({ pages: r.final.pages, bytes: r.final.bytes, ms: r1(r.final.ms) })),
      phasesMs: rs.map((r) => Object.fromEntries(Object.entries(r.phasesMs).map(([k, v]) => [k, r1(v)]))),
    };
  };
  const result = {
    runtime: { name: host.runtime.name, version: host.runtime.version },
    machine: { ...machine, memoryGiB: r1(machine.memoryBytes / 2 ** 30) },
    guest: { mib, hotKib, sleepMs: 2 },
    reps,
    stopAndCopy: summary("stop-and-copy"),
    live: summary("live"),
    meaning: "downtime: freeze on the source to the target's answer to the commit (it thaws before answering); bytes: request bodies sent (pre-copy rounds and the final image), loopback HTTP between two processes",
  };
  process.stdout.write(JSON.stringify(result) + "\n");
  process.exit(0);
}

if (process.argv.includes("--target")) await target();
else await main();
