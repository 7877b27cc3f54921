// The daemon's state directory: periodic snapshots as chains of incremental
// images (a full one every 8), recovery after a crash or restart from the
// latest snapshot, and what a crash in the middle of writing leaves behind.
// A "crash" stops the daemon's machines without writing anything (as a killed
// process would), then a second daemon opens the same directory.
import { afterEach, describe, expect, it, vi } from "vitest";
import { Machine } from "../api/machine.ts";
import { createHost } from "../host/mod.ts";
import { capturingHost, removeTree, tempDir } from "../host/testing.ts";
import { decodeSnapshot } from "../snapshot/mod.ts";
import { Daemon, type DaemonOptions } from "./daemon.ts";
import type { Latest } from "./state_dir.ts";

const files = createHost().fs;
const pathJoin = (...parts: string[]) => parts.join("/");
const readText = (p: string) => new TextDecoder().decode(files.readFile(p));
const names = (p: string) => files.readdir(p).map((e) => e.name);
const writeFile = (p: string, data: string | Uint8Array) => files.writeFileAtomic(p, typeof data === "string" ? new TextEncoder().encode(data) : data);

const GUESTS = new URL("../../guests/build/", import.meta.url).pathname;
const TICKER = GUESTS + "ticker.wasm";
const HELLO = GUESTS + "hello.wasm";
const TICKS = "40";
/** A ticker that outlives the test (afterEach stops it). */
const FOREVER = "1000000";

const ticks = (n: number) => Array.from({ length: n }, (_, i) => `tick ${i + 1}\n`).join("");

const dirs: string[] = [];
const daemons: Daemon[] = [];

function stateDir(): string {
  const d = tempDir("crvm-daemon-");
  dirs.push(d);
  return d;
}

async function open(dir: string, opts: Partial<DaemonOptions> = {}): Promise<{ daemon: Daemon; reports: string[] }> {
  const reports: string[] = [];
  const daemon = await Daemon.open({ host: createHost(), stateDir: dir, report: (l) => reports.push(l), ...opts });
  daemons.push(daemon);
  return { daemon, reports };
}

/** Stops every machine of the daemon without a write to the state directory: what a killed process leaves. */
async function crash(d: Daemon): Promise<void> {
  await d.close();
  for (const c of d.containers.values()) if (c.machine) await c.detach("exited");
}

afterEach(async () => {
  vi.restoreAllMocks();
  for (const d of daemons.splice(0)) await crash(d);
  for (const d of dirs.splice(0)) removeTree(d);
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

const logText = (d: Daemon, name: string) => new TextDecoder().decode(d.get(name).log.read(0).data);

/** Waits until the container's log is closed (it exited, was checkpointed or detached). */
async function ended(d: Daemon, name: string): Promise<void> {
  for await (const _ of d.get(name).log.follow(Number.MAX_SAFE_INTEGER));
}

const plainRuns = new Map<string, Promise<string>>();
function plain(path: string, args: string[]): Promise<string> {
  const key = JSON.stringify([path, args]);
  let p = plainRuns.get(key);
  if (!p) {
    p = (async () => {
      const { host, text } = capturingHost();
      const r = await (await Machine.create(path, { host, args })).run();
      expect(r.kind).toBe("exited");
      return text();
    })();
    plainRuns.set(key, p);
  }
  return p;
}

const cdir = (dir: string, name: string) => pathJoin(dir, "containers", name);
const latestOf = (dir: string, name: string) => JSON.parse(readText(pathJoin(cdir(dir, name), "latest.json"))) as Latest;
const ls = (p: string) => (files.exists(p) ? names(p).sort() : []);

async function ticker(d: Daemon, name = "t", ticks = TICKS, atLeast = 2): Promise<void> {
  await d.create({ name, module: { path: TICKER }, args: [ticks] });
  await until(`tick ${atLeast}`, () => logText(d, name).includes(`tick ${atLeast}\n`));
}

describe("periodic snapshots", () => {
  it("write a chain of incremental images, a full one every 8, and prune what the chain no longer needs", async () => {
    const dir = stateDir();
    const { daemon } = await open(dir);
    await ticker(daemon, "t", FOREVER);
    const c = daemon.get("t");
    const parents: (string | null)[] = [];
    for (let seq = 1; seq <= 10; seq++) {
      await daemon.snapshot(c);
      const latest = latestOf(dir, "t");
      const id = String(seq).padStart(6, "0");
      expect(latest).toMatchObject({ seq, image: `images/${id}.snap`, log: `logs/${id}.log`, logStart: 0 });
      // The chain is what images/ holds, head first; one log.
      expect(ls(pathJoin(cdir(dir, "t"), "images"))).toEqual(latest.chain.map((p) => p.slice("images/".length)).sort());
      expect(ls(pathJoin(cdir(dir, "t"), "logs"))).toEqual([`${id}.log`]);
      const image = await decodeSnapshot(files.readFile(pathJoin(cdir(dir, "t"), latest.image)), { name: id, verifyPages: false });
      parents.push(image.meta.parent?.path ?? null);
      // The saved log is the whole log so far.
      const saved = readText(pathJoin(cdir(dir, "t"), latest.log));
      expect(saved).toBe(ticks(saved.split("\n").length - 1));
      expect(saved.length).toBeGreaterThan(0);
      expect(c.status).toBe("running");
    }
    expect(parents).toEqual([null, "000001.snap", "000002.snap", "000003.snap", "000004.snap", "000005.snap", "000006.snap", "000007.snap", null, "000009.snap"]);
    expect(latestOf(dir, "t").chain).toEqual(["images/000010.snap", "images/000009.snap"]);
    expect(c.checkpoints).toBe(10);
    expect(daemon.metrics.checkpoints).toBe(10);
  });

  it("checkpointAll snapshots the running containers only, once however often it is called at a time", async () => {
    const dir = stateDir();
    const { daemon } = await open(dir);
    await ticker(daemon, "a", FOREVER);
    await ticker(daemon, "b", FOREVER);
    await ticker(daemon, "frozen", FOREVER);
    await daemon.get("frozen").freeze();
    await daemon.create({ name: "done", module: { path: HELLO } });
    await ended(daemon, "done");
    const p1 = daemon.checkpointAll(), p2 = daemon.checkpointAll();
    expect(p2).toBe(p1);
    await p1;
    expect(latestOf(dir, "a").seq).toBe(1);
    expect(latestOf(dir, "b").seq).toBe(1);
    expect(files.exists(pathJoin(cdir(dir, "frozen"), "latest.json"))).toBe(false);
    expect(files.exists(pathJoin(cdir(dir, "done"), "latest.json"))).toBe(false);
    expect(daemon.get("frozen").status).toBe("frozen");
    expect(daemon.get("a").status).toBe("running");
  });

  it("runs every checkpointEvery ms until close", async () => {
    const dir = stateDir();
    const { daemon } = await open(dir, { checkpointEvery: 10 });
    await ticker(daemon, "t", FOREVER);
    await until("three periodic snapshots", () => files.exists(pathJoin(cdir(dir, "t"), "latest.json")) && latestOf(dir, "t").seq >= 3);
    await daemon.close();
    const seq = latestOf(dir, "t").seq;
    await sleep(50);
    expect(latestOf(dir, "t").seq).toBe(seq);
  });

  it("leaves a freezer group the guest or a client froze frozen", async () => {
    const dir = stateDir();
    const { daemon } = await open(dir);
    await ticker(daemon, "t", FOREVER);
    const c = daemon.get("t");
    const m = c.machine!;
    m.vm.freezer.attach(1, m.vm.freezer.create("/g"));
    await c.freeze("/g");
    const end = c.log.end;
    await daemon.checkpointAll();
    expect(latestOf(dir, "t").seq).toBe(1);
    await sleep(30);
    expect(c.log.end).toBe(end);
    expect(c.tasks()[0]!.state).toBe("frozen");
  });

  it("a failed snapshot leaves the container running and the previous snapshot in place", async () => {
    const dir = stateDir();
    const { daemon, reports } = await open(dir);
    await ticker(daemon, "t", FOREVER);
    const c = daemon.get("t");
    await daemon.snapshot(c);
    // The disk fills up just before latest.json would point at the new image.
    const write = daemon.state.writeJson.bind(daemon.state);
    vi.spyOn(daemon.state, "writeJson").mockImplementation((file, value) => {
      if (file.endsWith("latest.json")) throw new Error("ENOSPC: no space left on device");
      write(file, value);
    });
    await daemon.checkpointAll();
    expect(reports.some((l) => l.startsWith("checkpoint of t failed: ENOSPC"))).toBe(true);
    expect(c.status).toBe("running");
    const end = c.log.end;
    await until("more output", () => c.log.end > end);
    expect(latestOf(dir, "t").seq).toBe(1);
    await decodeSnapshot(files.readFile(pathJoin(cdir(dir, "t"), "images/000001.snap")), { name: "1" });
    // Once the disk has room, the next snapshot takes the place of the orphan.
    vi.restoreAllMocks();
    await daemon.snapshot(c);
    expect(latestOf(dir, "t")).toMatchObject({ seq: 2, chain: ["images/000002.snap", "images/000001.snap"] });
  });
});

/**
 * A periodic snapshot with the ticker's task held in the frozen group /g, so
 * that the test knows exactly which ticks the image holds. The image records
 * /g frozen: a restored ticker waits for a thaw of /g.
 */
async function quietSnapshot(d: Daemon, name: string): Promise<string> {
  const c = d.get(name);
  const f = c.machine!.vm.freezer;
  f.attach(1, f.get("/g") ?? f.create("/g"));
  await c.freeze("/g");
  await d.snapshot(c);
  const saved = logText(d, name);
  await c.thaw("/g");
  return saved;
}

/** Thaws /g of a container restored from a quiet snapshot, checking that nothing ran before. */
async function thawRestored(d: Daemon, name: string): Promise<void> {
  const c = d.get(name);
  expect(c.tasks().map((t) => [t.pid, t.group, t.state])).toEqual([[1, "/g", "frozen"]]);
  const end = c.log.end;
  await sleep(20);
  expect(c.log.end).toBe(end);
  await c.thaw("/g");
}

describe("recovery", () => {
  it("after a crash, restores a container from its latest snapshot (a chain) and it finishes like a plain run", async () => {
    const dir = stateDir();
    const a = await open(dir);
    await ticker(a.daemon, "t", TICKS, 2);
    let saved = "";
    for (let i = 0; i < 3; i++) saved = await quietSnapshot(a.daemon, "t");
    expect(latestOf(dir, "t").chain).toHaveLength(3);
    await until("output after the snapshot", () => logText(a.daemon, "t").length > saved.length + 20);
    await crash(a.daemon); // that output is lost with the process

    const b = await open(dir);
    expect(b.reports).toEqual(["restored t from images/000003.snap"]);
    const c = b.daemon.get("t");
    expect(logText(b.daemon, "t")).toBe(saved);
    expect(c.def).toMatchObject({ state: "running", args: [TICKS], moduleName: TICKER });
    await thawRestored(b.daemon, "t");
    await ended(b.daemon, "t");
    expect(c.def).toMatchObject({ state: "exited", exitCode: 0 });
    expect(logText(b.daemon, "t")).toBe(await plain(TICKER, [TICKS]));
  });

  it("two daemons on one directory: the second restores what the first, still running, last saved", async () => {
    const dir = stateDir();
    const a = await open(dir);
    await ticker(a.daemon, "t", TICKS, 2);
    const saved = await quietSnapshot(a.daemon, "t");
    const b = await open(dir);
    expect(logText(b.daemon, "t")).toBe(saved);
    await crash(a.daemon);
    await thawRestored(b.daemon, "t");
    await ended(b.daemon, "t");
    expect(logText(b.daemon, "t")).toBe(await plain(TICKER, [TICKS]));
  });

  it("after a clean close and reopen, restores a running container too, and continues the numbering", async () => {
    const dir = stateDir();
    const a = await open(dir);
    await ticker(a.daemon, "t", FOREVER, 2);
    await a.daemon.snapshot(a.daemon.get("t"));
    await a.daemon.snapshot(a.daemon.get("t"));
    await crash(a.daemon);
    const b = await open(dir);
    const c = b.daemon.get("t");
    expect(c.status).toBe("running");
    const end = c.log.end;
    await until("more ticks", () => c.log.end > end);
    await b.daemon.snapshot(c);
    // A full image (the restored machine has no base), numbered after the last one.
    expect(latestOf(dir, "t")).toMatchObject({ seq: 3, chain: ["images/000003.snap"] });
    expect(ls(pathJoin(cdir(dir, "t"), "images"))).toEqual(["000003.snap"]);
    await crash(b.daemon);
    expect((await open(dir)).reports).toEqual(["restored t from images/000003.snap"]);
  });

  it("a container without a snapshot yet starts again from the beginning", async () => {
    const dir = stateDir();
    const a = await open(dir);
    await ticker(a.daemon, "t", TICKS, 2);
    await crash(a.daemon);
    const b = await open(dir);
    expect(b.reports).toEqual(["restarted t from the beginning (no snapshot yet)"]);
    await ended(b.daemon, "t");
    expect(logText(b.daemon, "t")).toBe(await plain(TICKER, [TICKS]));
  });

  it("keeps the log offsets of a capped log across a restart", async () => {
    const dir = stateDir();
    const a = await open(dir, { logCap: 32 });
    await ticker(a.daemon, "t", TICKS, 10);
    await quietSnapshot(a.daemon, "t");
    const latest = latestOf(dir, "t");
    expect(latest.logStart).toBeGreaterThan(0);
    await crash(a.daemon);
    const b = await open(dir, { logCap: 32 });
    const log = b.daemon.get("t").log;
    expect(log.start).toBe(latest.logStart);
    await thawRestored(b.daemon, "t");
    await ended(b.daemon, "t");
    const want = await plain(TICKER, [TICKS]);
    expect(log.end).toBe(want.length);
    expect(new TextDecoder().decode(log.read(0).data)).toBe(want.slice(want.length - 32));
  });

  it("ignores half-written temporary files a crash left, and a newer image latest.json does not point at yet", async () => {
    const dir = stateDir();
    const a = await open(dir);
    await ticker(a.daemon, "t", TICKS, 3);
    const saved = await quietSnapshot(a.daemon, "t");
    await crash(a.daemon);
    const d = cdir(dir, "t");
    const good = files.readFile(pathJoin(d, "images/000001.snap"));
    // What a crash in the middle of the next snapshot can leave: part of an image, of a log, of latest.json.
    writeFile(pathJoin(d, "images/.000002.snap.4242.0.tmp"), good.subarray(0, good.length >> 1));
    writeFile(pathJoin(d, "logs/.000002.log.4242.1.tmp"), "tick 1\ntick");
    writeFile(pathJoin(d, ".latest.json.4242.2.tmp"), '{"image": "images/0000');
    writeFile(pathJoin(d, ".container.json.4242.3.tmp"), "{");
    writeFile(pathJoin(dir, "containers", ".x.4242.4.tmp"), "garbage");
    // ...or the whole image written but latest.json not updated yet (here: garbage in its place).
    writeFile(pathJoin(d, "images/000002.snap"), good.subarray(0, 1000));

    const b = await open(dir);
    expect(b.reports).toEqual(["restored t from images/000001.snap"]);
    expect([...b.daemon.containers.keys()]).toEqual(["t"]);
    expect(logText(b.daemon, "t")).toBe(saved);
    await thawRestored(b.daemon, "t");
    await ended(b.daemon, "t");
    expect(logText(b.daemon, "t")).toBe(await plain(TICKER, [TICKS]));
  });

  it("the next snapshot after such a crash replaces the leftovers", async () => {
    const dir = stateDir();
    const a = await open(dir);
    await ticker(a.daemon, "t", FOREVER, 2);
    await a.daemon.snapshot(a.daemon.get("t"));
    await crash(a.daemon);
    const d = cdir(dir, "t");
    writeFile(pathJoin(d, "images/.000002.snap.4242.0.tmp"), "partial");
    writeFile(pathJoin(d, "images/000002.snap"), "not yet pointed at");
    const b = await open(dir);
    await b.daemon.snapshot(b.daemon.get("t"));
    expect(latestOf(dir, "t")).toMatchObject({ seq: 2, chain: ["images/000002.snap"] });
    expect(ls(pathJoin(d, "images"))).toEqual(["000002.snap"]);
    await decodeSnapshot(files.readFile(pathJoin(d, "images/000002.snap")), { name: "2" });
    await crash(b.daemon);
    expect((await open(dir)).reports).toEqual(["restored t from images/000002.snap"]);
  });

  it("a snapshot it cannot read is reported, the container listed as exited with the reason in its log, the others restored", async () => {
    const dir = stateDir();
    const a = await open(dir);
    await ticker(a.daemon, "bad", FOREVER, 2);
    await ticker(a.daemon, "good", FOREVER, 2);
    await a.daemon.checkpointAll();
    await crash(a.daemon);
    const img = pathJoin(cdir(dir, "bad"), "images/000001.snap");
    const bytes = files.readFile(img);
    bytes[bytes.length >> 1]! ^= 0xff;
    writeFile(img, bytes);
    const b = await open(dir);
    expect(b.reports).toContain("restored good from images/000001.snap");
    expect(b.reports.some((l) => l.startsWith('cannot restore bad: Cannot read snapshot "'))).toBe(true);
    expect(b.daemon.get("good").status).toBe("running");
    expect(b.daemon.get("bad").status).toBe("exited");
    expect(logText(b.daemon, "bad")).toMatch(/\ncrvm: could not restore after a restart: Cannot read snapshot .*\n$/);
    // The image is not destroyed: it is still there to look at.
    expect(files.readFile(img)).toEqual(bytes);
  });

  it("exited containers keep their exit code and final log across a restart (no snapshot taken)", async () => {
    const dir = stateDir();
    const a = await open(dir);
    await a.daemon.create({ name: "h", module: { path: HELLO }, args: ["exit=3"] });
    await ended(a.daemon, "h");
    await a.daemon.close();
    const b = await open(dir);
    const c = b.daemon.get("h");
    expect(c.status).toBe("exited");
    expect(c.def.exitCode).toBe(3);
    expect(c.log.closed).toBe(true);
    expect(logText(b.daemon, "h")).toBe(await plain(HELLO, ["exit=3"]));
  });

  it("a container stopped by a checkpoint stays stopped across a restart", async () => {
    const dir = stateDir();
    const a = await open(dir);
    await ticker(a.daemon, "t", FOREVER, 2);
    const stream = await a.daemon.checkpoint("t");
    await new Response(stream).arrayBuffer();
    await until("checkpointed", () => a.daemon.get("t").status === "checkpointed");
    await a.daemon.close();
    const b = await open(dir);
    expect(b.daemon.get("t").status).toBe("checkpointed");
    expect(b.daemon.get("t").machine).toBeNull();
    expect(b.reports).toEqual([]);
  });

  it("a removed container is gone after a restart; a directory without container.json is skipped", async () => {
    const dir = stateDir();
    const a = await open(dir);
    await ticker(a.daemon, "t", FOREVER, 1);
    await a.daemon.snapshot(a.daemon.get("t"));
    await a.daemon.remove("t");
    expect(files.exists(cdir(dir, "t"))).toBe(false);
    // A crash between making a container's directory and writing its definition.
    writeFile(pathJoin(dir, "containers", "README"), "not a container");
    removeTree(cdir(dir, "half"));
    await a.daemon.create({ name: "half", module: { path: HELLO } });
    await ended(a.daemon, "half");
    files.unlink(pathJoin(cdir(dir, "half"), "container.json"));
    await a.daemon.close();
    const b = await open(dir);
    expect([...b.daemon.containers.keys()]).toEqual([]);
    expect(b.reports).toEqual([]);
  });
});

// Regressions: each of these once failed (the log saved after the thaw, a snapshot thawing a frozen
// container, an exited container's log after a restart, a restored container restarting from its module).
describe("regressions", () => {
  // snapshot() reads c.log after `await c.thaw("/")`: output the guest writes as soon as it is thawed
  // lands in the saved log although the image was taken before it, and a restore prints it again.
  it("a snapshot saves the log as it was when the image was taken, not after the thaw", async () => {
    const dir = stateDir();
    const { daemon } = await open(dir);
    await ticker(daemon, "t", FOREVER, 2);
    const c = daemon.get("t");
    const m = c.machine!;
    // An image that takes longer to write than the ticker's 5 ms sleep: the ticker prints as soon as it is thawed.
    const checkpoint = m.checkpoint.bind(m);
    vi.spyOn(m, "checkpoint").mockImplementation(async (sink, opts) => {
      const stats = await checkpoint(sink, opts);
      await sleep(20);
      return stats;
    });
    const thaw = c.thaw.bind(c);
    let atThaw = "";
    vi.spyOn(c, "thaw").mockImplementation((group) => {
      atThaw = logText(daemon, "t");
      return thaw(group);
    });
    for (let i = 0; i < 3; i++) {
      await daemon.snapshot(c);
      expect(readText(pathJoin(cdir(dir, "t"), latestOf(dir, "t").log))).toBe(atThaw);
    }
  });

  // snapshot() thaws "/" in its `finally` whether or not it froze it: a container a client froze
  // runs again after a snapshot (the checkpoint route remembers `wasFrozen`; snapshot does not).
  it("a snapshot leaves a frozen container frozen", async () => {
    const { daemon } = await open(stateDir());
    await ticker(daemon, "t", FOREVER, 1);
    const c = daemon.get("t");
    await c.freeze();
    await daemon.snapshot(c);
    expect(c.status).toBe("frozen");
  });

  // daemon.ts #recover reads the log of latest.json whenever there is one, and final.log only
  // when there is none: a container that exited after a periodic snapshot comes back with the
  // log as it was at that snapshot.
  it("exited containers keep their final log across a restart (after a periodic snapshot)", async () => {
    const dir = stateDir();
    const a = await open(dir);
    await ticker(a.daemon, "t", TICKS, 2);
    await a.daemon.snapshot(a.daemon.get("t"));
    await ended(a.daemon, "t");
    await a.daemon.close();
    const b = await open(dir);
    expect(b.daemon.get("t").def).toMatchObject({ state: "exited", exitCode: 0 });
    expect(logText(b.daemon, "t")).toBe(await plain(TICKER, [TICKS]));
  });

  // adopt() (the restore route) writes the module and the definition but no snapshot: after a
  // restart, a restored container runs its module again from the beginning ("restarted r from
  // the beginning (no snapshot yet)", with argv but not the env) instead of continuing from the
  // image it came from, until a periodic snapshot happened to be taken.
  it("a restored container comes back from its image after a restart, not from the beginning", async () => {
    const dir = stateDir();
    const a = await open(dir);
    await ticker(a.daemon, "src", TICKS, 3);
    await a.daemon.get("src").freeze();
    const before = logText(a.daemon, "src");
    const bytes = new Uint8Array(await new Response(await a.daemon.checkpoint("src")).arrayBuffer());
    await a.daemon.adopt("r", await decodeSnapshot(bytes, { name: "src" }), { frozen: true });
    await crash(a.daemon);
    const b = await open(dir);
    const r = b.daemon.get("r");
    if (r.status === "frozen") await r.thaw();
    await ended(b.daemon, "r");
    expect(before + logText(b.daemon, "r")).toBe(await plain(TICKER, [TICKS]));
  });
});
