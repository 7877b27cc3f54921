// `crvm serve` and the CLI that drives it, end to end over real sockets on
// loopback: daemons on Node, Deno and Bun, clients on all three. What a
// container prints through the daemon — followed, checkpointed and restored
// on another daemon, migrated, or recovered after the daemon was killed —
// must be byte for byte what a plain local run prints.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { crvm, guest, type Result, ROOT, RUNTIMES, type Served, startCrvm, startServe, tmpDir } from "./helpers.ts";

/** Node runs the CLI from dist/: rebuild it only when a source file is newer than its output. */
function ensureBuilt(): void {
  const stale = (dir: string): boolean =>
    fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true }).some((e) => {
      const rel = path.join(dir, e.name);
      if (e.isDirectory()) return stale(rel);
      if (!e.name.endsWith(".ts") || e.name.endsWith("_test.ts")) return false;
      const out = path.join(ROOT, "dist", rel.replace(/\.ts$/, ".js"));
      return !fs.existsSync(out) || fs.statSync(out).mtimeMs < fs.statSync(path.join(ROOT, rel)).mtimeMs;
    });
  if (!stale("src")) return;
  try {
    execFileSync(path.join(ROOT, "node_modules", ".bin", "tsc"), ["-p", "."], { cwd: ROOT, stdio: "pipe" });
  } catch { /* type errors elsewhere still emit; a broken build shows up in the tests */ }
}

/** One line on stderr, exit 1, no stack trace: how every failed remote command must end. */
function expectOneLineError(r: Result, message: RegExp): void {
  expect(r.code, r.stderr).toBe(1);
  expect(r.stderr).toMatch(message);
  expect(r.stderr.trim().split("\n")).toHaveLength(1);
  expect(r.stderr).toMatch(/^crvm: /);
  expect(r.stderr).not.toMatch(/\n\s+at /);
}

/** The JSON API directly (for set-ups that must be faster than a CLI start). */
async function api(s: Served, method: string, route: string, body?: unknown): Promise<any> {
  const token = fs.readFileSync(s.tokenFile, "utf8").trim();
  const res = await fetch(`${s.url}${route}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${route}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, f: () => Promise<T | undefined | false>, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** A port nothing listens on (it was free a moment ago). */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

const ok = (r: Result) => {
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.toString();
};

describe("crvm serve and its CLI, over loopback", () => {
  let A: Served; // Node
  let B: Served; // Deno
  const plain: Record<string, string> = {};
  let chaosPlain: Result;
  let helloPlain: Result;

  beforeAll(async () => {
    ensureBuilt();
    const [a, b, t600, t1200, hello, chaos] = await Promise.all([
      startServe("node"),
      startServe("deno"),
      crvm("node", ["run", guest("ticker"), "600"]),
      crvm("bun", ["run", guest("ticker"), "1200"]),
      crvm("deno", ["run", guest("hello"), "a b", "exit=3"]),
      crvm("node", ["run", guest("freeze_chaos"), "0", "3", "100000"]),
    ]);
    A = a;
    B = b;
    plain.t600 = ok(t600);
    plain.t1200 = ok(t1200);
    expect(plain.t600).toMatch(/^tick 1\n[^]*tick 600\nticker: ok\n$/);
    helloPlain = hello;
    chaosPlain = chaos;
    expect(chaos.code, chaos.stderr).toBe(0);
  });

  /** Daemons a test starts itself: stopped at the end even if the test failed halfway. */
  const others: Served[] = [];
  const serveAnother = async (...args: Parameters<typeof startServe>) => {
    const s = await startServe(...args);
    others.push(s);
    return s;
  };

  afterAll(async () => {
    await Promise.all([A?.stop(), B?.stop(), ...others.map((s) => s.stop())]);
  });

  it("run --detach, then logs -f, prints exactly what a plain run prints (clients on node, deno, bun)", async () => {
    const started = await Promise.all(RUNTIMES.map((rt) => crvm(rt, ["run", ...A.flags, "--name", `det-${rt}`, "--detach", guest("ticker"), "600"])));
    started.forEach((r, i) => expect(ok(r)).toBe(`det-${RUNTIMES[i]}\n`));
    // Each followed by another runtime's client than the one that started it.
    const logs = await Promise.all(RUNTIMES.map((rt, i) => crvm(RUNTIMES[(i + 1) % 3]!, ["logs", "-f", ...A.flags, `det-${rt}`])));
    for (const r of logs) expect(ok(r)).toBe(plain.t600);

    // Not detached: the log to the end on stdout, and the guest's exit code.
    const attached = await crvm("bun", ["run", ...A.flags, guest("hello"), "a b", "exit=3"]);
    expect(attached.stderr).toBe("");
    expect(attached.code).toBe(3);
    expect(attached.stdout.toString()).toBe(helloPlain.stdout.toString());
  });

  it("ps and tree show containers, task trees and freezer groups as text and JSON; freeze and thaw NAME[/GROUP]", async () => {
    // Set up through the API (a CLI start takes longer than the guest needs to get going): a tree of 1 + 3 tasks, all frozen.
    await api(A, "POST", "/v1/containers", { name: "chaos", module: { path: guest("freeze_chaos") }, args: ["0", "3", "100000"] });
    await until("the workers", async () => (await api(A, "GET", "/v1/containers/chaos/tree")).tasks.filter((t: any) => t.group.startsWith("/chaos/")).length === 3);
    await api(A, "POST", "/v1/containers/chaos/freeze", {});

    const [ps, psJson, tree] = await Promise.all([crvm("deno", ["ps", ...A.flags]), crvm("bun", ["ps", "--json", ...A.flags]), crvm("node", ["tree", ...A.flags, "chaos"])]);
    const psLines = ok(ps).trimEnd().split("\n");
    expect(psLines[0]).toMatch(/^NAME\s+STATUS\s+TASKS\s+CHECKPOINTS\s+MODULE$/);
    expect(psLines).toContainEqual(expect.stringMatching(/^chaos\s+frozen\s+4\s+0\s+\S*freeze_chaos\.wasm$/));
    expect(psLines).toContainEqual(expect.stringMatching(/^det-node\s+exited \(0\)\s+0\s+0\s/));
    const listed = JSON.parse(ok(psJson)).containers as any[];
    expect(listed.find((c) => c.name === "chaos")).toMatchObject({ status: "frozen", tasks: 4, checkpoints: 0, exitCode: null, args: ["0", "3", "100000"] });
    expect(listed.find((c) => c.name === "det-node")).toMatchObject({ status: "exited", exitCode: 0, log: { start: 0, end: plain.t600.length } });

    const treeLines = ok(tree).trimEnd().split("\n");
    expect(treeLines[0]).toMatch(/^PID\s+STATE\s+GROUP\s+CALL\s+COMMAND$/);
    expect(treeLines[1]).toMatch(/^1\s+frozen\s+\/\s+\S+\s+\S*freeze_chaos\.wasm 0 3 100000$/);
    const workers = treeLines.slice(2);
    expect(workers).toHaveLength(3);
    for (const w of workers) expect(w).toMatch(/^ {2}\d+\s+frozen\s+\/chaos\/[ab]\s+\S+\s+\S*freeze_chaos\.wasm/);

    // Freeze one group while the root is frozen, thaw the root: only that group stays frozen.
    const fa = await crvm("deno", ["freeze", ...A.flags, "chaos/chaos/a"]);
    expect(ok(fa)).toBe("frozen: chaos/chaos/a (container frozen)\n");
    expect(ok(await crvm("bun", ["thaw", ...A.flags, "chaos"]))).toMatch(/^thawed: chaos \(container running\)\n$/);
    const tasks = JSON.parse(ok(await crvm("node", ["tree", "--json", ...A.flags, "chaos"]))).tasks as any[];
    expect(Object.keys(tasks[0]).sort()).toEqual(["args", "call", "group", "pid", "ppid", "state"]);
    const inA = tasks.filter((t) => t.group === "/chaos/a");
    expect(inA.length).toBeGreaterThan(0);
    for (const t of inA) expect(t.state).toBe("frozen");
    expect(tasks.find((t) => t.pid === 1).state).not.toBe("frozen");

    expectOneLineError(await crvm("bun", ["freeze", ...A.flags, "chaos/nosuch"]), /^crvm: container "chaos" has no freezer group "\/nosuch"$/m);

    expect(ok(await crvm("node", ["thaw", ...A.flags, "chaos/chaos/a"]))).toMatch(/^thawed: chaos\/chaos\/a/);
    const log = ok(await crvm("deno", ["logs", "-f", ...A.flags, "chaos"]));
    // stdout and stderr share the log: the stdout lines in order, and the stderr lines.
    const errLines = new Set(chaosPlain.stderr.split("\n").filter(Boolean));
    expect(log.split("\n").filter((l) => !errLines.has(l)).join("\n")).toBe(chaosPlain.stdout.toString());
    for (const l of errLines) expect(log).toContain(l + "\n");
  });

  it("checkpoint -o FILE on one daemon, restore --host on another runtime's: the two logs make the plain output", async () => {
    const dir = tmpDir();
    const image = path.join(dir, "mover.snap");
    expect(ok(await crvm("bun", ["run", "-d", ...A.flags, "--name", "mover", guest("ticker"), "600"]))).toBe("mover\n");
    await until("a few ticks", async () => (await api(A, "GET", "/v1/containers/mover")).log.end > 100);
    // Frozen first, so that a slow CLI start cannot let it run to its end; the image is the same (the daemon freezes it anyway).
    await api(A, "POST", "/v1/containers/mover/freeze", {});
    expect(ok(await crvm("deno", ["checkpoint", ...A.flags, "mover", "-o", image]))).toMatch(/^checkpointed mover to .*mover\.snap \(\d.* KiB\); it is stopped\n$/);
    expect(fs.readdirSync(dir)).toEqual(["mover.snap"]); // no temporary file left
    const [psA, before] = await Promise.all([crvm("node", ["ps", "--json", ...A.flags]), crvm("node", ["logs", ...A.flags, "mover"])]);
    expect(JSON.parse(ok(psA)).containers.find((c: any) => c.name === "mover")).toMatchObject({ status: "checkpointed", checkpoints: 1 });
    const prefix = ok(before);
    expect(prefix).toMatch(/^tick 1\n/);
    expect(prefix).not.toMatch(/ticker: ok/);

    expect(ok(await crvm("bun", ["restore", ...B.flags, image]))).toBe("restored mover: 1 task, running\n");
    const after = ok(await crvm("deno", ["logs", "-f", ...B.flags, "mover"]));
    expect(after.length).toBeGreaterThan(0);
    expect(prefix + after).toBe(plain.t600);

    // A failed transfer leaves the old file as it was.
    const keep = path.join(dir, "keep.snap");
    fs.writeFileSync(keep, "old");
    expectOneLineError(await crvm("node", ["checkpoint", ...A.flags, "nosuch", "-o", keep]), /^crvm: no container "nosuch"$/m);
    expect(fs.readFileSync(keep, "utf8")).toBe("old");
    expect(fs.readdirSync(dir).sort()).toEqual(["keep.snap", "mover.snap"]);
  });

  it("kill ends a container: the attached run exits with 128 + the signal; rm forgets it", async () => {
    const v1 = startCrvm("bun", ["run", ...A.flags, "--name", "victim1", guest("ticker"), "100000"]);
    const v2 = startCrvm("node", ["run", ...A.flags, "--name", "victim2", guest("ticker"), "100000"]);
    await until("both victims ticking", async () => v1.stdout().includes("tick 1\n") && v2.stdout().includes("tick 1\n"));
    const [k1, k2] = await Promise.all([crvm("deno", ["kill", ...A.flags, "victim1"]), crvm("node", ["kill", ...A.flags, "--signal", "TERM", "victim2"])]);
    expect(ok(k1)).toBe("victim1: exited with code 137\n");
    expect(ok(k2)).toBe("victim2: exited with code 143\n");
    expect(await v1.done).toBe(137);
    expect(await v2.done).toBe(143);
    expect(v1.stderr()).toBe("");

    expect(ok(await crvm("bun", ["rm", ...A.flags, "victim1"]))).toBe("removed victim1\n");
    const [again, ps] = await Promise.all([crvm("node", ["rm", ...A.flags, "victim1"]), crvm("deno", ["ps", "--json", ...A.flags])]);
    expectOneLineError(again, /^crvm: no container "victim1"$/m);
    const names = JSON.parse(ok(ps)).containers.map((c: any) => c.name);
    expect(names).not.toContain("victim1");
    expect(names).toContain("victim2");
  });

  it("errors are one line and exit 1 on every runtime: unknown container, bad token, no token, daemon down", async () => {
    const dir = tmpDir();
    const wrong = path.join(dir, "wrong-token");
    fs.writeFileSync(wrong, "0123456789abcdef0123456789abcdef\n");
    const down = `http://127.0.0.1:${await closedPort()}`;
    const cases: [string[], RegExp, Record<string, string>?][] = [
      [["logs", ...A.flags, "nosuch"], /^crvm: no container "nosuch"$/m],
      [["tree", ...A.flags, "nosuch"], /^crvm: no container "nosuch"$/m],
      [["ps", "--host", A.url, "--token-file", wrong], /^crvm: invalid token: .*--token-file/m],
      [["ps", "--host", A.url], /^crvm: missing Authorization.*--token-file FILE or \$CRVM_TOKEN_FILE/m, { XDG_STATE_HOME: dir }],
      [["ps", "--host", A.url, "--token-file", path.join(dir, "none")], /^crvm: token file ".*none": no such file$/m],
      [["kill", "--host", down, "--token-file", A.tokenFile, "x"], new RegExp(`^crvm: cannot reach crvm serve at ${down}: connection refused$`, "m")],
    ];
    // Every case on Node; unknown container, bad token and daemon down on Deno and Bun too.
    const runs = RUNTIMES.flatMap((rt) => cases.filter((_, i) => rt === "node" || [0, 2, 5].includes(i)).map((c) => [rt, c] as const));
    const results = await Promise.all(runs.map(([rt, [args, , env]]) => crvm(rt, args, { env: { CRVM_HOST: "", CRVM_TOKEN_FILE: "", ...env } })));
    results.forEach((r, i) => expectOneLineError(r, runs[i]![1][1]));
  });

  it("checkpoints periodically; after kill -9 the restarted daemon restores the container, whose log is the plain output", async () => {
    // No --state-dir and no --token-file anywhere: the daemon and the clients find both under $XDG_STATE_HOME.
    const xdg = tmpDir();
    const env = { XDG_STATE_HOME: xdg, CRVM_TOKEN_FILE: "" };
    const first = await serveAnother("bun", { stateDir: null, args: ["--checkpoint-every", "200ms"], env });
    expect(first.stateDir).toBe(path.join(xdg, "crvm"));
    const cli = (rt: "node" | "deno" | "bun", args: string[], url: string) => crvm(rt, args, { env: { ...env, CRVM_HOST: url } });
    expect(ok(await cli("node", ["run", "--host", first.url, "--name", "survivor", "-d", guest("ticker"), "600"], first.url))).toBe("survivor\n");
    const latest = path.join(first.stateDir, "containers", "survivor", "latest.json");
    await until("two periodic checkpoints", async () => fs.existsSync(latest) && JSON.parse(fs.readFileSync(latest, "utf8")).seq >= 2);
    const atCrash = (await api(first, "GET", "/v1/containers/survivor")) as { status: string; log: { end: number } };
    await first.crash();
    expect(atCrash.status).toBe("running"); // killed mid-run, not after the end

    const second = await serveAnother("bun", { stateDir: null, args: ["--checkpoint-every", "200ms"], env });
    expect(second.stderr()).toMatch(/restored survivor from images\/\d+\.snap/);
    const log = ok(await cli("deno", ["logs", "-f", "survivor"], second.url));
    expect(log).toBe(plain.t600);
    const ps = ok(await cli("bun", ["ps"], second.url));
    expect(ps).toMatch(/^survivor\s+exited \(0\)/m);
  });

  it("migrate moves a container there (live, running) and back (frozen), and the logs of the three stretches make the plain output", async () => {
    expect(ok(await crvm("node", ["run", ...A.flags, "--name", "nomad", "-d", guest("ticker"), "1200"]))).toBe("nomad\n");
    const onA = startCrvm("deno", ["logs", "-f", ...A.flags, "nomad"]);
    await until("a few ticks", async () => onA.stdout().includes("tick 20\n"));

    const there = await crvm("bun", ["migrate", ...A.flags, "nomad", "--to", B.url, "--to-token-file", B.tokenFile, "--live"]);
    expect(ok(there)).toMatch(new RegExp(`^migrated nomad to ${B.url} \\(live, \\d+ pre-copy rounds?\\): downtime \\d+\\.\\d ms\n`));
    expect(there.stdout.toString()).toMatch(/^pre-copy round 1\s+\d+\s+[\d.]+ \w*B\s+[\d.]+ ms$/m);
    expect(await onA.done).toBe(0); // the source's log ends where the target's begins
    const onB = startCrvm("node", ["logs", "-f", ...B.flags, "nomad"]);
    await until("ticks on B", async () => /tick \d+\n/.test(onB.stdout()));

    // Back while frozen (so that it cannot end before it gets there): it arrives frozen, and runs when thawed.
    await api(B, "POST", "/v1/containers/nomad/freeze", {});
    const back = await crvm("deno", ["migrate", ...B.flags, "nomad", "--to", A.url, "--to-token-file", A.tokenFile, "--json"]);
    const report = JSON.parse(ok(back));
    expect(report).toMatchObject({ name: "nomad", target: A.url, live: false, rounds: [], committed: true });
    expect(report.downtimeMs).toBeGreaterThan(0);
    expect(report.bytes).toBeGreaterThan(0);
    expect(await onB.done).toBe(0);
    expectOneLineError(await crvm("bun", ["logs", ...B.flags, "nomad"]), /^crvm: no container "nomad"$/m);
    expect(ok(await crvm("node", ["thaw", ...A.flags, "nomad"]))).toBe("thawed: nomad (container running)\n");
    const rest = ok(await crvm("bun", ["logs", "-f", ...A.flags, "nomad"]));
    expect(onB.stdout().length).toBeGreaterThan(0);
    expect(rest.length).toBeGreaterThan(0);
    expect(onA.stdout() + onB.stdout() + rest).toBe(plain.t1200);
  });
});
