// crvm benchmark, one runtime: freeze latency of compute-bound tasks. For 1,
// 100 and 1,000 tasks that never block, the time from a freeze request (a
// host timer, as an embedder would make one) to the freezer's FROZEN, next to
// what bounds it: the scheduler's event-loop turn interval and one fuel
// quantum (FUEL_SLICE checks) of the guest. Prints one JSON document (the last
// line of stdout); progress goes to stderr. `bench/run.mjs --only freeze`
// runs it on Node, Deno and Bun and tabulates the results.
//
//   node --stack-size=4000 --expose-gc dist/bench/freeze.js [--quick] [--counts 1,100,1000] [--samples 50] [--seed N]
//   npx deno run -A --v8-flags=--stack-size=4000,--expose-gc bench/freeze.ts [--quick]
//   npx bun bench/freeze.ts [--quick]
//
// A benchmark records; it never fails on a time. It does fail when the VM
// misbehaves (run() not ending "frozen", a task progressing while frozen, a
// task exiting), because then the figures would describe something else.
import * as fs from "node:fs";
import * as path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { r2, stat, type Stat } from "../src/cli/bench.ts";
import { createHost, type Host } from "../src/host/mod.ts";
import { type InstrumentedModule, instrumentModule, watToWasm } from "../src/instrument/mod.ts";
import { FUEL_SLICE } from "../src/sched/task.ts";
import { type RunOutcome, Vm } from "../src/sched/vm.ts";
import { engine, log } from "./_runtime.ts";
import { FdTable } from "../src/wasi/fd_table.ts";

// ---------------------------------------------------------------- options

interface Options {
  quick: boolean;
  /** Task counts to measure. */
  counts: number[];
  /** Freeze samples per count. */
  samples: (n: number) => number;
  /** Range of the random delay before each freeze request, ms (integers, inclusive). */
  delayMs: [number, number];
  /** Delay of the cold freeze, requested right after a VM's first run() starts. */
  coldDelayMs: number;
  /** How long the guest runs alone before anything is measured (engine tier-up). */
  engineWarmupMs: number;
  /** Least time every VM runs before its first sample (on top of every task having run once). */
  warmupMs: number;
  /** Length of the steady-state window in which throughput and turn intervals are measured. */
  windowMs: number;
  /** How long a frozen VM is watched for progress after each sample. */
  stillMs: number;
  seed: number;
}

function parseOptions(argv: string[]): Options {
  const quick = argv.includes("--quick");
  const opt = (name: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const counts = (opt("--counts") ?? "1,100,1000").split(",").map(Number).filter((n) => n >= 1);
  const fixed = opt("--samples") !== undefined ? Number(opt("--samples")) : undefined;
  return {
    quick,
    counts,
    samples: (_n) => fixed ?? (quick ? 10 : 50),
    delayMs: [20, 120],
    coldDelayMs: 20,
    engineWarmupMs: quick ? 500 : 2000,
    warmupMs: quick ? 300 : 1000,
    windowMs: quick ? 300 : 1000,
    stillMs: 5,
    seed: Number(opt("--seed") ?? 0x5eed),
  };
}

// ---------------------------------------------------------------- helpers

const now = () => performance.now();
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));




function projectRoot(): string {
  // dist/bench/freeze.js (Node) or bench/freeze.ts (Deno, Bun).
  const here = path.dirname(fileURLToPath(import.meta.url));
  return path.basename(path.dirname(here)) === "dist" ? path.resolve(here, "../..") : path.resolve(here, "..");
}

/** SLICE_MS is private to src/sched/vm.ts: read the configured value from the source, for the record. */
function configuredSliceMs(root: string): number | null {
  try {
    const m = /const SLICE_MS = (\d+)/.exec(fs.readFileSync(path.join(root, "src/sched/vm.ts"), "utf8"));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** {median, p95, mean, min, max, samples}: like crvm bench's Stat, with the 95th percentile (nearest rank). */
interface Dist extends Stat {
  p95: number;
  mean: number;
}
const r4 = (x: number) => Math.round(x * 1e4) / 1e4;
/** `fine`: four decimals and no samples (for the thousands of yield gaps). */
function dist(samples: number[], fine = false): Dist {
  const s = [...samples].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  const p95 = s[Math.max(0, Math.ceil(0.95 * s.length) - 1)]!;
  const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
  const r = fine ? r4 : r2;
  return { median: r(median), p95: r(p95), mean: r(mean), min: r(s[0]!), max: r(s[s.length - 1]!), samples: fine ? [] : samples.map(r2) };
}

/** mulberry32: a seeded PRNG, so every run draws the same delays. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---------------------------------------------------------------- the guest

// Adds 1 to an i64 in memory[1024] until it wraps (never, in practice): no
// system call, so its only yield points are the fuel checks at the loop
// header. The counter shows whether a task ran.
const SPIN = `(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $l
      (i64.store (i32.const 1024) (i64.add (i64.load (i32.const 1024)) (i64.const 1)))
      (br_if $l (i64.ne (i64.load (i32.const 1024)) (i64.const 0))))
    (call $exit (i32.const 0))))`;

const COUNTER = 1024;

interface Guest {
  module: InstrumentedModule;
  compiled: WebAssembly.Module;
}

/** One VM with `n` spin tasks: pid 1 and n-1 more spawned by the host, each with its own (empty) fd table. */
function makeVm(host: Host, g: Guest, n: number): Vm {
  const vm = new Vm(host);
  vm.maxTasks = Math.max(vm.maxTasks, n);
  for (let i = 0; i < n; i++) vm.spawn(g.module, g.compiled, { args: ["spin", String(i)], env: [], fds: new FdTable() });
  return vm;
}

function counters(vm: Vm): bigint {
  let sum = 0n;
  for (const t of vm.tasks.values()) sum += new DataView(t.memory.buffer).getBigUint64(COUNTER, true);
  return sum;
}

function taskYields(vm: Vm): number[] {
  return [...vm.tasks.values()].map((t) => t.yields);
}

/** Throws if run() ended any other way than "frozen" (a task exited or trapped: the VM no longer spins). */
function expectFrozen(out: RunOutcome, what: string): void {
  if (out.kind !== "frozen") throw new Error(`${what}: run() ended ${JSON.stringify(out)}, expected {"kind":"frozen"}`);
}

/**
 * Watches the event loop while the VM runs: a chain of 0 ms timers, each
 * re-armed by the last, fires once per scheduler turn (the VM holds the
 * thread in between). The gaps are the turn intervals a host callback sees.
 */
function turnTicker(): { stop(): number[] } {
  const at: number[] = [];
  let timer: ReturnType<typeof setTimeout> | null = null;
  const tick = () => {
    at.push(now());
    timer = setTimeout(tick, 0);
  };
  timer = setTimeout(tick, 0);
  return {
    stop() {
      if (timer) clearTimeout(timer);
      return at.slice(1).map((t, i) => t - at[i]!);
    },
  };
}

// ---------------------------------------------------------------- one task count

interface Steady {
  windowMs: number;
  /** Yield points passed by all tasks in the window. */
  yields: number;
  /** Host time per fuel yield, all tasks together: one quantum plus its share of switching and turns. */
  msPerYield: number;
  /** Gaps between event-loop turns, ms. */
  turnIntervalMs: Dist;
  turns: number;
  /** Gaps between consecutive yield points of the same task (one quantum; the median is the pure quantum). */
  quantumMs: Dist | null;
  /** Gaps between a yield point of one task and the next one of another task: a quantum plus a task switch. */
  switchGapMs: Dist | null;
}

async function steadyWindow(vm: Vm, windowMs: number): Promise<Steady> {
  // Time stamps of every yield point, taken where the task asks the VM whether to freeze (an own
  // property shadowing the method; removed after the window). Two consecutive yields of one task
  // are one quantum apart; a change of task adds an unwind and a rewind, a turn adds the turn.
  const same: number[] = [];
  const switched: number[] = [];
  let last = -1;
  let lastPid = -1;
  const original = vm.freezeWanted;
  vm.freezeWanted = function (this: Vm, task) {
    const t = now();
    if (last >= 0) (task.pid === lastPid ? same : switched).push(t - last);
    last = t;
    lastPid = task.pid;
    return original.call(this, task);
  };
  const y0 = vm.yieldCount;
  const t0 = now();
  const ticker = turnTicker();
  try {
    await sleep(windowMs);
  } finally {
    delete (vm as { freezeWanted?: unknown }).freezeWanted;
  }
  const gaps = ticker.stop();
  const dt = now() - t0;
  const yields = vm.yieldCount - y0;
  return {
    windowMs: r2(dt), yields, msPerYield: yields ? r4(dt / yields) : NaN, turnIntervalMs: dist(gaps), turns: gaps.length,
    quantumMs: same.length ? dist(same, true) : null, switchGapMs: switched.length ? dist(switched, true) : null,
  };
}

interface CountResult {
  tasks: number;
  buildMs: number;
  /** One freeze requested coldDelayMs after the very first run(): latencyMs, and how many tasks had not run yet. */
  cold: { delayMs: number; latencyMs: number; neverRanAtRequest: number };
  /** From run() to every task having passed a yield point (each has a stack to freeze). */
  warmupMs: number;
  steady: Steady;
  samples: number;
  delayMs: Stat;
  /** Freeze request's due time (timer set + delay) to `freeze(root)` resolving: what the host waits. */
  latencyMs: Dist;
  /** Due time to the timer callback running: the wait for the scheduler to give the event loop a turn. */
  timerLateMs: Dist;
  /** Timer callback (the freeze request) to FROZEN. */
  requestToFrozenMs: Dist;
  /** FROZEN to run() resolving {kind: "frozen"}. */
  frozenToRunEndMs: Dist;
  /** Tasks that made progress (passed a yield point) during the sampling phase, of `tasks`. */
  tasksProgressedWhileSampling: number;
  /** Yields gained per task during the sampling phase: min / median / max. */
  yieldsPerTaskWhileSampling: { min: number; median: number; max: number };
  /** Samples whose timer fired before its due time (clock granularity): their latency is negative. */
  earlyTimers: number;
}

interface Sample {
  delay: number;
  /** The timer's due time: when it was set + its delay. */
  due: number;
  /** When the timer callback ran and called freeze(root). */
  requested: number;
  /** When freeze(root) resolved (FROZEN). */
  frozen: number;
  /** When run() resolved {kind: "frozen"}. */
  runEnd: number;
  /** Tasks that had not passed a yield point yet when the freeze was requested. */
  neverRan: number;
}

/**
 * One freeze: a timer `delay` ms from now requests it; `start` (if given) starts run() right after the
 * timer is set. Checks that the VM then stands still, and thaws it (run() is not restarted).
 */
async function freezeOnce(vm: Vm, delay: number, running: Promise<RunOutcome> | (() => Promise<RunOutcome>), o: Options, what: string): Promise<Sample> {
  const root = vm.freezer.root;
  const due = now() + delay;
  const pending = new Promise<{ requested: number; frozen: number; neverRan: number }>((resolve, reject) => {
    setTimeout(() => {
      const requested = now();
      const neverRan = taskYields(vm).filter((y) => y === 0).length;
      vm.freezer.freeze(root).then(() => resolve({ requested, frozen: now(), neverRan }), reject);
    }, delay);
  });
  // The timer is set before run() starts: run() holds the thread for a whole turn before its first
  // await, and a timer set after that would count its due time from a stale event-loop clock.
  const run = typeof running === "function" ? running() : running;
  const got = await pending;
  const out = await run;
  const runEnd = now();
  expectFrozen(out, what);
  // Frozen means stopped: nothing may move while the host waits.
  const y0 = vm.yieldCount;
  const c0 = counters(vm);
  await sleep(o.stillMs);
  if (vm.yieldCount !== y0 || counters(vm) !== c0) {
    throw new Error(`${what}: tasks progressed while frozen (yields ${y0} → ${vm.yieldCount}, counters ${c0} → ${counters(vm)})`);
  }
  await vm.freezer.thaw(root);
  return { delay, due, ...got, runEnd };
}

async function benchCount(o: Options, host: Host, g: Guest, n: number, rand: () => number): Promise<CountResult> {
  host.collectGarbage();
  let a = now();
  const vm = makeVm(host, g, n);
  const buildMs = r2(now() - a);
  const start = () => vm.run();
  log(`${n} task(s): built in ${buildMs} ms`);

  // Cold: a freeze requested shortly after the first run() starts, while most tasks have not run yet.
  // A task that never ran has no stack to keep: it runs to its first yield point (one quantum) first.
  const c = await freezeOnce(vm, o.coldDelayMs, start, o, `${n} tasks, cold freeze`);
  const cold = { delayMs: c.delay, latencyMs: r2(c.frozen - c.due), neverRanAtRequest: c.neverRan };
  log(`  cold freeze (${c.neverRan} of ${n} tasks not started at the request): ${cold.latencyMs} ms; warming up`);

  // Warm-up: every task has run to a yield point, and the code has tiered up.
  a = now();
  let running = vm.run();
  const ended: { out: RunOutcome | null } = { out: null };
  void running.then((r) => (ended.out = r));
  while (taskYields(vm).some((y) => y === 0) || now() - a < o.warmupMs) {
    await sleep(10);
    if (ended.out) expectFrozen(ended.out, `${n} tasks, warm-up`);
  }
  const warmupMs = r2(now() - a);
  log(`  warm-up ${warmupMs} ms; steady window ${o.windowMs} ms`);
  const steady = await steadyWindow(vm, o.windowMs);
  log(`  quantum ${steady.quantumMs?.median} ms, ${steady.msPerYield} ms per fuel yield overall, turn interval median ${steady.turnIntervalMs.median} ms`);

  const reps = o.samples(n);
  const samples: Sample[] = [];
  const before = taskYields(vm);
  for (let i = 0; i < reps; i++) {
    const delay = o.delayMs[0] + Math.floor(rand() * (o.delayMs[1] - o.delayMs[0] + 1));
    samples.push(await freezeOnce(vm, delay, i === 0 ? running : start, o, `${n} tasks, sample ${i + 1}`));
  }
  const after = taskYields(vm);
  const gained = after.map((y, i) => y - (before[i] ?? 0)).sort((x, y) => x - y);
  const latencyMs = dist(samples.map((s) => s.frozen - s.due));
  log(`  ${reps} samples: latency median ${latencyMs.median} ms, p95 ${latencyMs.p95} ms, max ${latencyMs.max} ms`);
  for (const t of vm.tasks.values()) t.kill(9);
  return {
    tasks: n, buildMs, cold, warmupMs, steady, samples: reps, delayMs: stat(samples.map((s) => s.delay)), latencyMs,
    timerLateMs: dist(samples.map((s) => s.requested - s.due)),
    requestToFrozenMs: dist(samples.map((s) => s.frozen - s.requested)),
    frozenToRunEndMs: dist(samples.map((s) => s.runEnd - s.frozen)),
    tasksProgressedWhileSampling: gained.filter((x) => x > 0).length,
    yieldsPerTaskWhileSampling: { min: gained[0] ?? 0, median: gained[gained.length >> 1] ?? 0, max: gained[gained.length - 1] ?? 0 },
    earlyTimers: samples.filter((s) => s.requested < s.due).length,
  };
}

/** Runs the guest alone for a while so that every VM measured after gets tiered-up code. */
async function warmEngine(host: Host, g: Guest, ms: number): Promise<void> {
  const vm = makeVm(host, g, 1);
  const running = vm.run();
  await sleep(ms);
  await vm.freezer.freeze(vm.freezer.root);
  expectFrozen(await running, "engine warm-up");
}

// ---------------------------------------------------------------- main

const MEANING = {
  units: "Times in milliseconds (wall clock, performance.now()). A Dist is {median, p95 (nearest rank), mean, min, max, samples}.",
  guest: "An i64 counter loop with no system call (SPIN in bench/freeze.ts), instrumented with instrumentModule(..., { cacheDir: null }); its only yield points are fuel checks, one yield per fuelSlice loop iterations.",
  tasks: "pid 1 plus tasks-1 more, spawned by the host with vm.spawn (one compiled module, one instance and fd table per task), all in the root freezer group.",
  latencyMs: "A host timer set for a random delay (delayMs, seeded) calls vm.freezer.freeze(root); latency = the moment that promise resolves − the timer's due time (set time + delay). It includes the wait for the scheduler to give the event loop a turn (timerLateMs), which is what a host sees.",
  cold: "One freeze requested coldDelayMs after a new VM's first run() started, before the warm-up: tasks that have not run yet (neverRanAtRequest) have no stack to keep, so each first runs to its first yield point (about one quantum). Not among the samples.",
  timerLateMs: "Due time to the timer callback: the wait for an event-loop turn (at most one turn interval, plus the fuel quantum the turn check waits for).",
  requestToFrozenMs: "freeze(root) called to resolved: after the warm-up every task is already stopped at a yield point during a turn, so this is the freezer's own bookkeeping.",
  frozenToRunEndMs: "FROZEN to run() resolving {kind: 'frozen'}.",
  steady: "A window after the warm-up, before the samples. msPerYield = window / yield points passed (all tasks): one fuel quantum plus its share of task switches (Asyncify unwind + rewind) and turns. quantumMs = gaps between consecutive yield points of the same task (time-stamped in vm.freezeWanted, shadowed for the window only). switchGapMs = gaps where the next yield point is another task's: a quantum plus a switch. turnIntervalMs = gaps between firings of a self re-arming 0 ms timer, one per scheduler turn.",
  quantumMs: "steady.quantumMs.median of the first (1-task) VM: the host time of one fuel quantum (fuelSlice loop iterations) of this guest.",
  configuredSliceMs: "SLICE_MS in src/sched/vm.ts (read from the source): how long the VM runs before the event loop gets a turn; the turn is taken at the first fuel yield after it.",
  boundMs: "steady.turnIntervalMs.median + steady.quantumMs.median of the same VM: one turn plus one quantum, what a request due at the worst moment should not exceed much.",
  tasksProgressedWhileSampling: "Tasks that passed a yield point between the first and the last sample (each sample ends with a thaw and a new run()).",
  check: "After each sample the VM must be stopped: run() resolved 'frozen', and vm.yieldCount and every task's counter in memory did not move for stillMs; otherwise the benchmark stops with an error.",
};

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  const host = createHost();
  const root = projectRoot();
  const started = new Date();
  const wall0 = now();
  const machine = host.machine();
  log(`start (${o.quick ? "quick" : "full"}); counts ${o.counts.join(", ")}`);

  const source = await watToWasm(SPIN, "spin.wat");
  const module = await instrumentModule(source, { name: "spin.wat", cacheDir: null, fs: host.fs });
  const compiled = await WebAssembly.compile(module.wasm as Uint8Array<ArrayBuffer>);
  const guest = { module, compiled };
  const rand = prng(o.seed);
  log(`engine warm-up: the guest alone for ${o.engineWarmupMs} ms`);
  await warmEngine(host, guest, o.engineWarmupMs);

  const results: CountResult[] = [];
  for (const n of o.counts) results.push(await benchCount(o, host, guest, n, rand));

  // The quantum of the fewest-task VM (1 task in a normal run): no other task shares the CPU with it.
  const quantumMs = results[0]?.steady.quantumMs?.median ?? null;
  const result = {
    runtime: { name: host.runtime.name, version: host.runtime.version, engine: engine() },
    machine: { ...machine, memoryGiB: r2(machine.memoryBytes / 2 ** 30) },
    startedAt: started.toISOString(),
    quick: o.quick,
    options: { counts: o.counts, delayMs: o.delayMs, coldDelayMs: o.coldDelayMs, engineWarmupMs: o.engineWarmupMs, warmupMs: o.warmupMs, windowMs: o.windowMs, stillMs: o.stillMs, seed: o.seed },
    fuelSlice: FUEL_SLICE,
    configuredSliceMs: configuredSliceMs(root),
    quantumMs,
    freeze: results.map((r) => ({
      ...r,
      boundMs: r.steady.quantumMs ? r2(r.steady.turnIntervalMs.median + r.steady.quantumMs.median) : null,
    })),
    totalMs: r2(now() - wall0),
    meaning: MEANING,
  };
  log("done");
  process.stdout.write(JSON.stringify(result) + "\n");
}

await main();
