// Runs the benchmarks on Node, Deno and Bun one after the other (never in
// parallel: they would measure each other), collects their JSON, prints a
// Markdown table and writes bench/results/<date>-<machine>.json and
// bench/results/latest.json.
//
//   * snapshot: `crvm bench` (src/cli/bench.ts): checkpoint/restore against a plain copy;
//   * overhead, transform: bench/snapshot.ts (instrumentation overhead, transform cold vs cached);
//   * freeze: bench/freeze.ts (freeze latency of 1, 100 and 1,000 compute-bound tasks).
//
//   npm run bench                      # everything (several minutes)
//   npm run bench -- --quick           # smoke run: smaller memories, fewer repetitions, no SQLite
//   npm run bench -- --runtimes node,bun --only snapshot
//   npm run bench -- --only freeze
//
// A benchmark records figures; it never fails on a time. It exits non-zero
// only when a runtime could not produce its figures at all.
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const argv = process.argv.slice(2);
const quick = argv.includes("--quick");
const optValue = (name) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const runtimes = (optValue("--runtimes") ?? "node,deno,bun").split(",").filter(Boolean);
const only = optValue("--only");
const sections = new Set((only ?? "snapshot,overhead,transform,freeze").split(",").filter(Boolean));
const otherSections = ["overhead", "transform"].filter((s) => sections.has(s));

const bin = (name) => {
  const local = path.join(root, "node_modules/.bin", name);
  return fs.existsSync(local) ? [local] : ["npx", name];
};

/** How each runtime runs a script with the CLI's stack size and an exposed gc. */
const runners = {
  node: (js) => [process.execPath, "--stack-size=4000", "--expose-gc", js.replace(/^(src|bench)\/(.*)\.ts$/, "dist/$1/$2.js")],
  deno: (ts) => [...bin("deno"), "run", "-A", "--v8-flags=--stack-size=4000,--expose-gc", ts],
  bun: (ts) => [...bin("bun"), ts],
};

/** A command line for display: paths inside the project relative to it. */
const shown = (parts) => parts.map((a) => (path.isAbsolute(a) && a.startsWith(root + path.sep) ? path.relative(root, a) : a)).join(" ");

function say(msg) {
  process.stderr.write(`[bench] ${msg}\n`);
}

// Node runs the compiled JS (and this script uses dist/src/cli/bench.js for the table): always rebuild, so dist/ is never stale.
say("npx tsc -p .");
const tsc = spawnSync("npx", ["tsc", "-p", "."], { cwd: root, stdio: ["ignore", "inherit", "inherit"] });
if (tsc.status !== 0) {
  if (!fs.existsSync(path.join(root, "dist/src/cli/bench.js"))) {
    say("tsc failed and dist/src/cli/bench.js does not exist: cannot run the benchmark");
    process.exit(1);
  }
  say("tsc reported errors (it still emits); running what it produced");
}

/** Runs one command; resolves with its JSON (from `jsonFile`, or the last JSON line of stdout). */
function runOne(name, parts, jsonFile) {
  const [cmd, ...args] = parts;
  say(`${name}: ${shown(parts)}`);
  const loadBefore = os.loadavg()[0];
  const t0 = performance.now();
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: root, stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (d) => (out += d));
    child.on("error", (e) => resolve({ runtime: { name }, error: `could not start: ${e.message}` }));
    child.on("close", (code, signal) => {
      const wallMs = Math.round(performance.now() - t0);
      const load = { before: round2(loadBefore), after: round2(os.loadavg()[0]) };
      const last = jsonFile ? (fs.existsSync(jsonFile) ? fs.readFileSync(jsonFile, "utf8") : undefined) : out.trim().split("\n").filter((l) => l.startsWith("{")).pop();
      if (code !== 0 || last === undefined) {
        resolve({ runtime: { name }, error: `exited with ${signal ?? code}`, stdoutTail: out.slice(-2000), wallMs, loadAverage1m: load });
        return;
      }
      try {
        resolve({ ...JSON.parse(last), wallMs, loadAverage1m: load });
      } catch (e) {
        resolve({ runtime: { name }, error: `bad JSON: ${e.message}`, wallMs, loadAverage1m: load });
      }
    });
  });
}

const round2 = (x) => Math.round(x * 100) / 100;
const started = new Date();
const runs = [];
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "crvm-bench-"));
for (const name of runtimes) {
  if (!runners[name]) {
    say(`unknown runtime ${name} (node, deno, bun)`);
    process.exit(2);
  }
  const run = { runtime: { name } };
  if (sections.has("snapshot")) {
    const json = path.join(tmp, `${name}.json`);
    const snap = await runOne(name, [...runners[name]("src/cli/main.ts"), "bench", ...(quick ? ["--quick"] : []), "--json", json, "--dir", tmp], json);
    if (snap.error) run.snapshotError = snap.error;
    else run.snapshotRun = snap;
    Object.assign(run, { runtime: snap.runtime, machine: snap.machine, loadAverage1m: snap.loadAverage1m });
  }
  if (otherSections.length) {
    const other = await runOne(name, [...runners[name]("bench/snapshot.ts"), ...(quick ? ["--quick"] : []), "--only", otherSections.join(",")]);
    if (other.error) run.otherError = other.error;
    else Object.assign(run, { ...other, runtime: other.runtime, loadAverage1m: run.loadAverage1m ?? other.loadAverage1m });
  }
  if (sections.has("freeze")) {
    const fr = await runOne(name, [...runners[name]("bench/freeze.ts"), ...(quick ? ["--quick"] : [])]);
    if (fr.error) run.freezeError = fr.error;
    else {
      const { runtime, machine: m, ...rest } = fr;
      run.freeze = rest;
      Object.assign(run, { runtime, machine: run.machine ?? m, loadAverage1m: run.loadAverage1m ?? fr.loadAverage1m });
    }
  }
  // A runtime failed when every part it was asked for failed.
  const parts = [
    sections.has("snapshot") ? run.snapshotError : null,
    otherSections.length ? run.otherError : null,
    sections.has("freeze") ? run.freezeError : null,
  ].filter((e) => e !== null);
  if (parts.length && parts.every((e) => e !== undefined)) run.error = parts[0];
  runs.push(run);
}
fs.rmSync(tmp, { recursive: true, force: true });

// ---------------------------------------------------------------- table

const cpus = os.cpus();
const machine = {
  cpu: cpus[0]?.model ?? "unknown",
  cores: cpus.length,
  memoryGiB: round2(os.totalmem() / 2 ** 30),
  os: `${os.type()} ${os.release()} ${os.arch()}`,
};
const ok = runs.filter((r) => !r.error);
const rt = (r) => `${r.runtime.name} ${r.runtime.version}`;
const f = (x, digits = 1) => (x === undefined || x === null ? "–" : x >= 100 ? x.toFixed(0) : x.toFixed(digits));
const x = (ratio) => (ratio === undefined ? "–" : `${ratio.toFixed(ratio >= 10 ? 1 : 2)}×`);

const lines = [];
lines.push(`### crvm benchmark, ${started.toISOString().slice(0, 16).replace("T", " ")} UTC${quick ? " (--quick)" : ""}`);
lines.push("");
lines.push(`Machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB RAM, ${machine.os}.`);
lines.push(`Runtimes: ${runs.map((r) => (r.error ? `${r.runtime.name} (failed: ${r.error})` : `${rt(r)}${r.runtime.engine ? ` (${r.runtime.engine})` : ""}`)).join("; ")}.`);
lines.push(
  `Load average (1 min) before each runtime: ${runs.map((r) => `${r.runtime.name} ${r.loadAverage1m?.before ?? "?"}`).join(", ")} ` +
    `on ${machine.cores} cores${runs.some((r) => (r.loadAverage1m?.before ?? 0) > machine.cores * 0.5) ? " — other work was running: figures are noisy" : ""}.`,
);
lines.push("Medians in ms; × = ratio to a plain `Uint8Array.set` copy of the same number of bytes, measured in the same process.");

const snapRuns = ok.filter((r) => r.snapshotRun);
if (snapRuns.length) {
  const { benchTable } = await import(pathToFileURL(path.join(root, "dist/src/cli/bench.js")).href);
  const reps = [...new Set(snapRuns.flatMap((r) => r.snapshotRun.cases.map((c) => c.reps)))].join("/");
  lines.push("");
  lines.push(
    `**Snapshot hot path** (\`crvm bench\`; median of ${reps} after a warm-up; × = ratio to the copy; ckpt → memory copies into one preallocated buffer; ` +
      "restore = decode (every page hash verified) + restoreVm, ready to run; pooled = restoreVm with a MemoryPool, the memory released back after each restore; " +
      "in brackets after pooled: restoreVm alone, without the decode)",
  );
  lines.push("");
  lines.push(benchTable(snapRuns.map((r) => ({ runtime: rt(r), cases: r.snapshotRun.cases }))));
  const emulated = snapRuns.some((r) => r.snapshotRun.cases.some((c) => c.pooledVia === "emulated"));
  if (emulated) lines.push("", "\\* restoreVm could not take a pooled memory in this build (TaskSpec.pooled): instantiate + restoreMemory over the pooled memory measured directly.");
  const sod = snapRuns.filter((r) => r.snapshotRun.sparseOverDense !== null);
  if (sod.length) lines.push("", `Sparse 1 GiB (1% non-zero) checkpoint / dense 1 GiB checkpoint: ${sod.map((r) => `${r.runtime.name} ${r.snapshotRun.sparseOverDense}`).join(", ")}.`);
}

const over = ok.filter((r) => r.overhead);
if (over.length) {
  const o0 = over[0].overhead;
  lines.push("");
  lines.push(`**Instrumentation overhead**: \`compute.wasm ${o0.args.slice(1).join(" ")}\`, median of ${o0.reps} alternating runs after a warm-up run each`);
  lines.push("");
  lines.push("| guest | runtime | plain, browser_wasi_shim | instrumented, crvm Vm | ratio | note |");
  lines.push("|---|---|--:|--:|--:|---|");
  for (const r of over) {
    const o = r.overhead;
    const note = o.crvmStackExhausted ? `${o.crvmStackExhausted} crvm run(s) ended in "call stack exhausted" and were repeated` : "";
    lines.push(`| compute ${o.args.slice(1).join(" ")} | ${rt(r)} | ${f(o.plainMs.median)} | ${f(o.crvmMs.median)} | ${o.ratio.toFixed(2)}× | ${note} |`);
  }
}

const trRows = [];
for (const r of ok) for (const t of r.transform ?? []) trRows.push({ r, t });
if (trRows.length) {
  trRows.sort((a, b) => a.t.sourceBytes - b.t.sourceBytes || runtimes.indexOf(a.r.runtime.name) - runtimes.indexOf(b.r.runtime.name));
  lines.push("");
  lines.push("**Transform** (`instrumentModule`): cold = empty cache directory (binaryen already loaded), cached = cache hit");
  lines.push("");
  lines.push("| module | runtime | size → instrumented | cold | cached | cold / cached |");
  lines.push("|---|---|--:|--:|--:|--:|");
  const kb = (n) => `${Math.round(n / 1024)} KiB`;
  for (const { r, t } of trRows) {
    const cold = t.coldReps > 1 ? `${f(t.coldMs.median)} (median of ${t.coldReps})` : f(t.coldMs.median);
    lines.push(`| ${t.module} | ${rt(r)} | ${kb(t.sourceBytes)} → ${kb(t.instrumentedBytes)} | ${cold} | ${f(t.cachedMs.median, 2)} | ${Math.round(t.ratio)}× |`);
  }
}
const frRuns = ok.filter((r) => r.freeze);
if (frRuns.length) {
  const fz0 = frRuns[0].freeze;
  const sampleCounts = [...new Set(frRuns.flatMap((r) => r.freeze.freeze.map((c) => c.samples)))].join("/");
  lines.push("");
  lines.push(
    `**Freeze latency** (\`bench/freeze.ts\`; N compute-bound tasks that never block; a host timer calls \`vm.freezer.freeze(root)\` after a random ` +
      `${fz0.options.delayMs[0]}–${fz0.options.delayMs[1]} ms; latency = FROZEN − the timer's due time, so it includes the wait for an event-loop turn; ` +
      `${sampleCounts} samples per row after a warm-up; turn = median gap between event-loop turns (SLICE_MS = ${fz0.configuredSliceMs ?? "?"}); ` +
      `quantum = median host time of one fuel slice (${fz0.fuelSlice.toLocaleString("en-US")} checks) of the spin guest; ` +
      `cold = one freeze ${fz0.options.coldDelayMs} ms after a new VM's first run(), in brackets the tasks that had not run yet; ` +
      "ran = tasks that got the CPU between the first and the last sample)",
  );
  lines.push("");
  lines.push("| tasks | runtime | latency median | p95 | max | turn (median / p95) | quantum | turn + quantum | cold [not started] | ran | load |");
  lines.push("|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
  const fr = (x) => (x === undefined || x === null ? "–" : x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
  const rows = [];
  for (const r of frRuns) for (const c of r.freeze.freeze) rows.push({ r, c });
  rows.sort((a, b) => a.c.tasks - b.c.tasks || runtimes.indexOf(a.r.runtime.name) - runtimes.indexOf(b.r.runtime.name));
  for (const { r, c } of rows) {
    const s = c.steady;
    lines.push(
      `| ${c.tasks.toLocaleString("en-US")} | ${rt(r)} | ${fr(c.latencyMs.median)} | ${fr(c.latencyMs.p95)} | ${fr(c.latencyMs.max)} | ` +
        `${fr(s.turnIntervalMs.median)} / ${fr(s.turnIntervalMs.p95)} | ${fr(s.quantumMs?.median)} | ${fr(c.boundMs)} | ` +
        `${fr(c.cold.latencyMs)} [${c.cold.neverRanAtRequest}] | ${c.tasksProgressedWhileSampling} | ${r.freeze.loadAverage1m?.before ?? "?"} |`,
    );
  }
}
const table = lines.join("\n");

// ---------------------------------------------------------------- files

const slug = machine.cpu.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "") + `-${machine.cores}c`;
const stamp = started.toISOString().slice(0, 16).replace(/:/g, "");
const record = {
  generatedAt: started.toISOString(),
  machine,
  options: { quick, runtimes, only: only ?? null },
  commands: Object.fromEntries(runtimes.map((n) => [n, shown(runners[n]("src/cli/main.ts"))])),
  totalWallMs: Math.round(performance.now()),
  runs,
  table,
};
const dir = path.join(root, "bench/results");
fs.mkdirSync(dir, { recursive: true });
const file = path.join(dir, `${stamp}-${slug}${quick ? "-quick" : ""}.json`);
fs.writeFileSync(file, JSON.stringify(record, null, 2) + "\n");
fs.writeFileSync(path.join(dir, "latest.json"), JSON.stringify(record, null, 2) + "\n");

process.stdout.write(table + "\n\n");
say(`wrote ${path.relative(root, file)} and bench/results/latest.json (${Math.round(performance.now() / 1000)} s)`);
const failed = runs.filter((r) => r.error);
for (const r of failed) say(`${r.runtime.name}: ${r.error}`);
process.exit(failed.length ? 1 : 0);
