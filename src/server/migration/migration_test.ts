// Migration between two daemons in one process: each a Daemon with its own
// state directory and app, the source's outgoing requests handed to the
// target's `app.request` (faults are injected in between).
import type { Hono } from "hono";
import { afterEach, describe, expect, it } from "vitest";
import { createHost } from "../../host/mod.ts";
import { byteLength, tempDir } from "../../host/testing.ts";
import { createApp } from "../app.ts";
import { Daemon } from "../daemon.ts";
import type { MigrationReport } from "./source.ts";
import type { FetchLike } from "./target.ts";

const GUESTS = new URL("../../../guests/build/", import.meta.url).pathname;
const host = createHost();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Sits between the source and the targets: `hook` may change, delay or fail a request. */
type Hook = (url: string, init: RequestInit, forward: () => Promise<Response>) => Promise<Response>;

interface Node {
  name: string;
  url: string;
  token: string;
  daemon: Daemon;
  app: Hono;
  call(method: string, p: string, body?: unknown): Promise<Response>;
  json(method: string, p: string, body?: unknown): Promise<any>;
}

const opened: Daemon[] = [];
afterEach(async () => {
  for (const d of opened.splice(0)) {
    for (const c of d.containers.values()) if (c.machine) await c.detach("exited", undefined).catch(() => {});
    await d.close();
  }
});

/** Daemons "a", "b", ... that reach each other at http://a, http://b, ... through `hook`. */
async function cluster(names: string[], opts: { migrationTimeout?: number } = {}) {
  const nodes = new Map<string, Node>();
  const hook: { fn: Hook | null } = { fn: null };
  const fetch: FetchLike = (url, init) => {
    const node = nodes.get(new URL(url).host);
    if (!node) return Promise.reject(new TypeError(`fetch failed: no host ${url}`));
    const forward = async () => node.app.request(url, init);
    return hook.fn ? hook.fn(url, init, forward) : forward();
  };
  for (const name of names) {
    const daemon = await Daemon.open({ host, stateDir: tempDir(`crvm-migrate-${name}-`), fetch, ...opts });
    opened.push(daemon);
    const token = `token-of-${name}-0123456789`;
    const app = createApp(daemon, { token });
    const call = (method: string, p: string, body?: unknown) =>
      Promise.resolve(app.request(p, { method, headers: { Authorization: `Bearer ${token}` }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) }));
    const json = async (method: string, p: string, body?: unknown) => {
      const res = await call(method, p, body);
      const value = await res.json();
      if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${JSON.stringify(value)}`);
      return value;
    };
    nodes.set(name, { name, url: `http://${name}`, token, daemon, app, call, json });
  }
  return { node: (n: string) => nodes.get(n)!, hook };
}

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

async function create(n: Node, name: string, guest: string, args: string[]): Promise<void> {
  await n.json("POST", "/v1/containers", { name, module: { path: GUESTS + guest }, args, cgroupfs: false });
}

/** Follows a container's log until it is closed there (exit, removal or migration). */
function follow(n: Node, name: string): Promise<string> {
  return n.call("GET", `/v1/containers/${name}/logs?follow=1`).then((res) => {
    expect(res.status).toBe(200);
    return res.text();
  });
}

async function exited(n: Node, name: string): Promise<{ status: string; exitCode: number | null }> {
  await until(`${name} to exit on ${n.name}`, async () => (await n.json("GET", `/v1/containers/${name}`)).status === "exited");
  return await n.json("GET", `/v1/containers/${name}`);
}

async function log(n: Node, name: string): Promise<{ start: number; text: string }> {
  const res = await n.call("GET", `/v1/containers/${name}/logs`);
  return { start: Number(res.headers.get("X-Crvm-Log-Start")), text: await res.text() };
}

const plainRuns = new Map<string, Promise<string>>();

/** The output of a run nobody touched (one run per guest and arguments). */
function plain(n: Node, guest: string, args: string[]): Promise<string> {
  const name = `plain-${guest}-${args.join("-")}`;
  let p = plainRuns.get(name);
  if (!p) {
    p = (async () => {
      await create(n, name, guest, args);
      expect((await exited(n, name)).exitCode).toBe(0);
      return (await log(n, name)).text;
    })();
    plainRuns.set(name, p);
  }
  return p;
}

function migrate(from: Node, to: Node, name: string, extra: { live?: boolean; maxRounds?: number } = {}): Promise<Response> {
  return from.call("POST", `/v1/containers/${name}/migrate`, { to: to.url, token: to.token, ...extra });
}

async function migrated(from: Node, to: Node, name: string, extra: { live?: boolean } = {}): Promise<MigrationReport> {
  const res = await migrate(from, to, name, extra);
  const body = await res.json();
  expect(res.status, JSON.stringify(body)).toBe(200);
  return body as MigrationReport;
}

/** A request body, with byte `at` changed on its way. */
function corrupt(body: ReadableStream<Uint8Array>, at: number): ReadableStream<Uint8Array> {
  let seen = 0;
  return body.pipeThrough(new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, ctrl) {
      if (seen <= at && at < seen + chunk.length) {
        chunk = chunk.slice();
        chunk[at - seen]! ^= 0x55;
      }
      seen += chunk.length;
      ctrl.enqueue(chunk);
    },
  }));
}

/** A request body that fails (a cut connection) after `after` bytes. */
function cut(body: ReadableStream<Uint8Array>, after: number): ReadableStream<Uint8Array> {
  let seen = 0;
  return body.pipeThrough(new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, ctrl) {
      if (seen + chunk.length > after) throw new TypeError("connection reset");
      seen += chunk.length;
      ctrl.enqueue(chunk);
    },
  }));
}

/** The container runs on `n`: its log grows. */
async function stillRunning(n: Node, name: string): Promise<void> {
  const x = await n.json("GET", `/v1/containers/${name}`);
  expect(x.status).toBe("running");
  await until(`${name}'s log to grow on ${n.name}`, async () => (await n.json("GET", `/v1/containers/${name}`)).log.end > x.log.end, 5000);
}

describe("migration between two daemons (in process)", () => {
  it("stop-and-copy moves a running guest: source log + target log is the plain run's output", async () => {
    const { node } = await cluster(["a", "b"]);
    const [a, b] = [node("a"), node("b")];
    const expected = await plain(a, "ticker.wasm", ["150"]);
    await create(a, "t", "ticker.wasm", ["150"]);
    const before = follow(a, "t");
    await until("some ticks", async () => (await a.json("GET", "/v1/containers/t")).log.end > 100);
    const report = await migrated(a, b, "t");
    expect(report.committed).toBe(true);
    expect(report.live).toBe(false);
    expect(report.rounds).toEqual([]);
    expect(report.final.modules).toBe(1);
    expect(report.bytes).toBe(report.final.bytes);
    expect(report.downtimeMs).toBeGreaterThan(0);
    expect(report.answeredMs).toBeGreaterThanOrEqual(report.downtimeMs);
    expect(Object.values(report.phasesMs).reduce((a, b) => a + b, 0)).toBeCloseTo(report.downtimeMs, 3);
    // Durable on the target once its first snapshot there is written, then its definition.
    await until("the target's first snapshot", () => b.daemon.state.latest("t") !== null && b.daemon.state.loadDef("t") !== null);
    // The source's follower ended at the hand-over; the source has nothing left.
    const first = await before;
    expect((await a.call("GET", "/v1/containers/t")).status).toBe(404);
    expect(host.fs.exists(a.daemon.state.dir("t"))).toBe(false);
    expect((await exited(b, "t")).exitCode).toBe(0);
    const second = await log(b, "t");
    expect(second.start).toBe(byteLength(first));
    expect(first.length).toBeGreaterThan(0);
    expect(first + second.text).toBe(expected);
    expect(b.daemon.state.loadDef("t")?.state).toBe("exited");
    const metricsA = await (await a.call("GET", "/v1/metrics")).text();
    const metricsB = await (await b.call("GET", "/v1/metrics")).text();
    expect(metricsA).toContain(`crvm_migrations_total{direction="out"} 1`);
    expect(metricsA).toMatch(/crvm_migration_bytes_total [1-9]/);
    expect(metricsA).toMatch(/crvm_migration_downtime_seconds_total 0\.\d*[1-9]/);
    expect(metricsB).toContain(`crvm_migrations_total{direction="in"} 1`);
  });

  it("moves a guest there and back (a -> b -> a) with the output of a plain run", async () => {
    const { node } = await cluster(["a", "b"]);
    const [a, b] = [node("a"), node("b")];
    const expected = await plain(b, "ticker.wasm", ["200"]);
    await create(a, "t", "ticker.wasm", ["200"]);
    const onA = follow(a, "t");
    await until("some ticks", async () => (await a.json("GET", "/v1/containers/t")).log.end > 50);
    await migrated(a, b, "t");
    const onB = follow(b, "t");
    await until("ticks on b", async () => (await b.json("GET", "/v1/containers/t")).log.end > byteLength(await onA) + 50);
    await migrated(b, a, "t");
    expect((await exited(a, "t")).exitCode).toBe(0);
    const back = await log(a, "t");
    expect((await onA) + (await onB) + back.text).toBe(expected);
    expect(back.start).toBe(byteLength((await onA) + (await onB)));
  });

  it("does not send what the target has: the module and the pages of a container it runs", async () => {
    const { node } = await cluster(["a", "b"]);
    const [a, b] = [node("a"), node("b")];
    // Two runs of one guest: the same module, and 8 MiB of pages that are the same in both once filled.
    for (const name of ["d1", "d2"]) await create(a, name, "dirty.wasm", ["8", "5000", "64"]);
    await until("both filled", async () => (await log(a, "d1")).text.includes("step 1 ") && (await log(a, "d2")).text.includes("step 1 "));
    const r1 = await migrated(a, b, "d1");
    expect(r1.known).toEqual({ pages: 0, modules: 0 });
    expect(r1.final.modules).toBe(1);
    expect(r1.final.pages).toBeGreaterThanOrEqual(128);
    const r2 = await migrated(a, b, "d2");
    // b runs d1: it has the module and the cold pages, so only the hot part, the stack and such are sent.
    expect(r2.known.modules).toBe(1);
    expect(r2.final.modules).toBe(0);
    expect(r2.known.pages).toBeGreaterThanOrEqual(120);
    expect(r2.final.pages).toBeLessThanOrEqual(16);
    expect(r2.final.bytes).toBeLessThan(r1.final.bytes / 4);
    for (const name of ["d1", "d2"]) await b.json("POST", `/v1/containers/${name}/kill`, {});
  });

  it("live: pre-copy rounds send each page once unless it changed, then a short freeze sends the last delta", async () => {
    const { node } = await cluster(["a", "b"]);
    const [a, b] = [node("a"), node("b")];
    const args = ["32", "400", "64"];
    const expected = await plain(a, "dirty.wasm", args);
    await create(a, "d", "dirty.wasm", args);
    const before = follow(a, "d");
    await until("steps", async () => (await log(a, "d")).text.includes("step 20 "));
    const report = await migrated(a, b, "d", { live: true });
    expect(report.live).toBe(true);
    expect(report.rounds.length).toBeGreaterThanOrEqual(2);
    const [first, ...later] = report.rounds;
    // 32 MiB of distinct pages, each sent once in the first round.
    expect(first!.pages).toBeGreaterThanOrEqual(512);
    expect(first!.bytes).toBe(first!.pages * (16 + 65536));
    // Later rounds and the image: only what the guest wrote meanwhile (64 KiB hot, its stack, stdio buffers).
    for (const r of later) expect(r.pages).toBeLessThanOrEqual(16);
    expect(report.final.pages).toBeLessThanOrEqual(16);
    expect(report.final.modules).toBe(1);
    expect(report.bytes).toBe(report.rounds.reduce((n, r) => n + r.bytes, 0) + report.final.bytes);
    expect((await exited(b, "d")).exitCode).toBe(0);
    expect((await before) + (await log(b, "d")).text).toBe(expected);
  });

  it("other operations on a migrating container get a 409", async () => {
    const { node, hook } = await cluster(["a", "b"]);
    const [a, b] = [node("a"), node("b")];
    await create(a, "t", "ticker.wasm", ["400"]);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    hook.fn = async (url, _init, forward) => {
      if (url.endsWith("/v1/migrations")) await gate;
      return forward();
    };
    const pending = migrate(a, b, "t");
    await until("the lock", async () => (await a.json("GET", "/v1/containers/t")).status === "migrating");
    for (const [method, p] of [["POST", "/v1/containers/t/freeze"], ["POST", "/v1/containers/t/kill"], ["POST", "/v1/containers/t/checkpoint"], ["DELETE", "/v1/containers/t"], ["POST", "/v1/containers/t/migrate"]] as const) {
      const res = await a.call(method, p, p.endsWith("migrate") ? { to: b.url, token: b.token } : {});
      expect(res.status, `${method} ${p}`).toBe(409);
      expect((await res.json()).error).toMatch(/migrating to http:\/\/b/);
    }
    release();
    expect((await pending).status).toBe(200);
    await b.json("POST", "/v1/containers/t/kill", {});
  });

  it("the target refuses a name it has (409); the source goes on running", async () => {
    const { node } = await cluster(["a", "b"]);
    const [a, b] = [node("a"), node("b")];
    await create(a, "t", "ticker.wasm", ["400"]);
    await create(b, "t", "ticker.wasm", ["1"]);
    const res = await migrate(a, b, "t");
    expect(res.status).toBe(409);
    expect((await res.json()).error).toMatch(/container "t" exists/);
    await stillRunning(a, "t");
    expect(await b.json("GET", "/v1/migrations")).toEqual({ migrations: [] });
  });

  describe("faults before the acknowledgement: the source runs on, the target keeps nothing, a retry succeeds", () => {
    for (const fault of ["a corrupted image", "a connection cut in the image", "a connection cut in a pre-copy round", "a restore that fails", "a lost acknowledgement, target unreachable"] as const) {
      it(fault, async () => {
        const { node, hook } = await cluster(["a", "b"]);
        const [a, b] = [node("a"), node("b")];
        const args = ["16", "1000", "64"];
        const expected = await plain(a, "dirty.wasm", args);
        await create(a, "d", "dirty.wasm", args);
        const before = follow(a, "d");
        await until("steps", async () => (await log(a, "d")).text.includes("step 5 "));
        let unreachable = false;
        hook.fn = async (url, init, forward) => {
          if (unreachable) throw new TypeError("fetch failed: connection refused");
          const body = init.body as ReadableStream<Uint8Array>;
          if (fault === "a corrupted image" && url.includes("/image")) return b.app.request(url, { ...init, body: corrupt(body, 200_000) });
          if (fault === "a connection cut in the image" && url.includes("/image")) {
            await b.app.request(url, { ...init, body: cut(body, 500_000) }).catch(() => {});
            throw new TypeError("fetch failed: connection reset");
          }
          if (fault === "a connection cut in a pre-copy round" && url.includes("/pages")) {
            await b.app.request(url, { ...init, body: cut(body, 3_000_000) }).catch(() => {});
            throw new TypeError("fetch failed: connection reset");
          }
          if (fault === "a restore that fails" && url.includes("/image")) await create(b, "d", "ticker.wasm", ["1"]);
          if (fault === "a lost acknowledgement, target unreachable" && url.includes("/image")) {
            await forward();
            unreachable = true;
            throw new TypeError("fetch failed: connection reset");
          }
          return forward();
        };
        const res = await migrate(a, b, "d", { live: fault.includes("pre-copy") });
        expect(res.status, await res.clone().text()).toBeGreaterThanOrEqual(400);
        await stillRunning(a, "d");
        if (fault === "a restore that fails") {
          expect((await b.json("GET", "/v1/containers/d")).args).toEqual(["1"]);
          await b.call("DELETE", "/v1/containers/d");
        } else if (fault === "a lost acknowledgement, target unreachable") {
          // The target restored it but never heard back: frozen, locked, never run; its abort is pending at the source.
          const x = await b.json("GET", "/v1/containers/d");
          expect(x.status).toBe("migrating");
          expect((await b.call("POST", "/v1/containers/d/thaw", {})).status).toBe(409);
          const end = x.log.end;
          await sleep(100);
          expect((await b.json("GET", "/v1/containers/d")).log.end).toBe(end);
          expect(a.daemon.migrations.unsentAborts.get(b.url)?.size).toBe(1);
        } else {
          expect((await b.call("GET", "/v1/containers/d")).status).toBe(404);
          expect(await b.json("GET", "/v1/migrations")).toEqual({ migrations: [] });
        }
        hook.fn = null;
        unreachable = false;
        // The retry (which first delivers a pending abort) succeeds, and the output is the plain run's.
        const report = await migrated(a, b, "d");
        expect(report.committed).toBe(true);
        expect(a.daemon.migrations.unsentAborts.get(b.url)?.size ?? 0).toBe(0);
        expect((await exited(b, "d")).exitCode).toBe(0);
        expect((await before) + (await log(b, "d")).text).toBe(expected);
      });
    }
  });

  it("a lost acknowledgement is settled by asking the target: it has the container, so the migration goes on", async () => {
    const { node, hook } = await cluster(["a", "b"]);
    const [a, b] = [node("a"), node("b")];
    const expected = await plain(a, "ticker.wasm", ["150"]);
    await create(a, "t", "ticker.wasm", ["150"]);
    const before = follow(a, "t");
    hook.fn = async (url, _init, forward) => {
      const res = await forward();
      if (url.includes("/image")) throw new TypeError("fetch failed: connection reset");
      return res;
    };
    const report = await migrated(a, b, "t");
    expect(report.committed).toBe(true);
    expect((await exited(b, "t")).exitCode).toBe(0);
    expect((await before) + (await log(b, "t")).text).toBe(expected);
  });

  it("a lost commit: the source's copy is gone, the target's waits frozen (nothing runs twice) until committed by hand", async () => {
    const { node, hook } = await cluster(["a", "b"]);
    const [a, b] = [node("a"), node("b")];
    const expected = await plain(a, "ticker.wasm", ["150"]);
    await create(a, "t", "ticker.wasm", ["150"]);
    const before = follow(a, "t");
    await until("some ticks", async () => (await a.json("GET", "/v1/containers/t")).log.end > 50);
    hook.fn = async (url, _init, forward) => {
      if (url.includes("/commit")) throw new TypeError("fetch failed: connection refused");
      return forward();
    };
    const res = await migrate(a, b, "t");
    expect(res.status).toBe(502);
    const error = (await res.json()).error as string;
    expect(error).toMatch(/commit did not arrive/);
    const id = /migrations\/([0-9a-f]{32})\/commit/.exec(error)![1]!;
    const first = await before;
    expect((await a.call("GET", "/v1/containers/t")).status).toBe(404);
    const x = await b.json("GET", "/v1/containers/t");
    expect(x.status).toBe("migrating");
    expect(x.log.end).toBe(byteLength(first));
    await sleep(200);
    expect((await b.json("GET", "/v1/containers/t")).log.end).toBe(byteLength(first));
    expect((await b.call("DELETE", "/v1/containers/t")).status).toBe(409);
    // Not in the state directory yet: a restarted target would not run it either.
    expect(b.daemon.state.loadDef("t")).toBeNull();
    await b.json("POST", `/v1/migrations/${id}/commit`, {});
    expect((await exited(b, "t")).exitCode).toBe(0);
    expect(first + (await log(b, "t")).text).toBe(expected);
  });

  it("drops a migration left half-way: by the abort route, and after the timeout", async () => {
    const { node } = await cluster(["b"], { migrationTimeout: 150 });
    const b = node("b");
    const id = "0123456789abcdef0123456789abcdef";
    const begin = await b.json("POST", "/v1/migrations", { id, name: "x", modules: [], pages: [] });
    expect(begin).toEqual({ id, have: { pages: [], modules: [] } });
    expect((await b.call("POST", "/v1/migrations", { id, name: "y", modules: [], pages: [] })).status).toBe(409);
    expect((await b.json("GET", `/v1/migrations/${id}`)).state).toBe("open");
    await b.json("POST", `/v1/migrations/${id}/abort`, {});
    expect((await b.call("GET", `/v1/migrations/${id}`)).status).toBe(404);
    await b.json("POST", "/v1/migrations", { id, name: "x", modules: [], pages: [] });
    await sleep(400);
    expect((await b.call("GET", `/v1/migrations/${id}`)).status).toBe(404);
    // An image for a migration that is gone.
    expect((await b.call("POST", `/v1/migrations/${id}/image`, "x")).status).toBe(404);
  });

  it("checks every page of a pre-copy round against its id", async () => {
    const { node } = await cluster(["b"]);
    const b = node("b");
    const id = "0123456789abcdef0123456789abcdef";
    await b.json("POST", "/v1/migrations", { id, name: "x", modules: [], pages: [] });
    const page = new Uint8Array(16 + 65536).fill(7);
    const res = await b.app.request(`/v1/migrations/${id}/pages`, { method: "POST", headers: { Authorization: `Bearer ${b.token}` }, body: page });
    expect(res.status).toBe(422);
    expect((await res.json()).error).toMatch(/does not match its id/);
    const half = await b.app.request(`/v1/migrations/${id}/pages`, { method: "POST", headers: { Authorization: `Bearer ${b.token}` }, body: page.subarray(0, 100) });
    expect(half.status).toBe(400);
  });
});
