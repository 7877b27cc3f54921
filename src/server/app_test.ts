// The HTTP API through `app.request()`: every route, auth failures, bad
// bodies and images, and one test over a real socket. Guests come from
// guests/build/; each test has its own daemon and state directory.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Hono } from "hono";
import { afterEach, describe, expect, it, vi } from "vitest";
import { Machine } from "../api/machine.ts";
import { createHost, type Host } from "../host/mod.ts";
import { serveHttp } from "../host/serve.ts";
import { decodeSnapshot } from "../snapshot/mod.ts";
import { type AppOptions, createApp } from "./app.ts";
import { Daemon } from "./daemon.ts";

const GUESTS = new URL("../../guests/build/", import.meta.url).pathname;
const TICKER = GUESTS + "ticker.wasm";
const HELLO = GUESTS + "hello.wasm";
/** Ticks of the ticker (5 ms each): long enough to catch it running, short enough to wait for. */
const TICKS = "40";
/** A ticker that outlives the test (afterEach stops it). */
const FOREVER = "1000000";
const TOKEN = "s3cret.token-42";
const AUTH = { Authorization: `Bearer ${TOKEN}` };

interface Env {
  daemon: Daemon;
  app: Hono;
  dir: string;
  /** What the app and the daemon reported. */
  reports: string[];
}

const envs: Env[] = [];

async function setup(opts: Partial<AppOptions> & { logCap?: number } = {}): Promise<Env> {
  const dir = mkdtempSync(join(tmpdir(), "crvm-app-"));
  const reports: string[] = [];
  const daemon = await Daemon.open({ host: createHost(), stateDir: dir, logCap: opts.logCap, report: (l) => reports.push(l) });
  const app = createApp(daemon, { token: TOKEN, report: (l) => reports.push(l), ...opts });
  const env = { daemon, app, dir, reports };
  envs.push(env);
  return env;
}

afterEach(async () => {
  vi.restoreAllMocks();
  for (const e of envs.splice(0)) {
    for (const c of e.daemon.containers.values()) if (c.machine) await c.detach("exited");
    await e.daemon.close();
    rmSync(e.dir, { recursive: true, force: true });
  }
});

type Body = unknown;

/** A request with the token; objects go as JSON, strings and bytes as they are, streams streamed. */
function api(app: Hono, method: string, path: string, body?: Body, headers: Record<string, string> = {}): Promise<Response> {
  const init: RequestInit & { duplex?: "half" } = { method, headers: { ...AUTH, ...headers } };
  if (body instanceof ReadableStream) {
    init.body = body;
    init.duplex = "half";
  } else if (typeof body === "string" || body instanceof Uint8Array) init.body = body as BodyInit;
  else if (body !== undefined) init.body = JSON.stringify(body);
  return Promise.resolve(app.request(path, init));
}

async function ok<T = Record<string, unknown>>(res: Response | Promise<Response>, status = 200): Promise<T> {
  const r = await res;
  const text = await r.text();
  expect(r.status, text).toBe(status);
  return JSON.parse(text) as T;
}

/** The response is `status` with a JSON `{ error }` matching `message`, and no stack trace. */
async function expectError(res: Response | Promise<Response>, status: number, message?: RegExp): Promise<string> {
  const r = await res;
  const text = await r.text();
  expect(r.status, text).toBe(status);
  expect(r.headers.get("content-type")).toMatch(/^application\/json/);
  expect(text).not.toMatch(/\n\s*at |\bat \S+ \(|\.[jt]s:\d+:\d+/);
  const body = JSON.parse(text) as { error: unknown };
  expect(Object.keys(body)).toEqual(["error"]);
  expect(typeof body.error).toBe("string");
  if (message) expect(body.error).toMatch(message);
  return body.error as string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

const logText = (env: Env, name: string) => new TextDecoder().decode(env.daemon.get(name).log.read(0).data);

/** Waits until the container's log is closed (it exited, was checkpointed or detached). */
async function ended(env: Env, name: string): Promise<void> {
  for await (const _ of env.daemon.get(name).log.follow(Number.MAX_SAFE_INTEGER));
}

async function createTicker(env: Env, name = "t", ticks = TICKS): Promise<void> {
  await ok(api(env.app, "POST", "/v1/containers", { name, module: { path: TICKER }, args: [ticks] }), 201);
}

const plainRuns = new Map<string, Promise<string>>();
/** The output of a run of the guest on its own (no daemon), argv[0] = `name`. */
function plain(path: string, args: string[], opts: { name?: string; env?: string[] } = {}): Promise<string> {
  const key = JSON.stringify([path, args, opts]);
  let p = plainRuns.get(key);
  if (!p) {
    p = (async () => {
      const chunks: Uint8Array[] = [];
      const host: Host = { ...createHost(), stdio: { write: (_fd, d) => void chunks.push(d.slice()), read: () => Promise.resolve(null), isTerminal: () => false } };
      const m = await Machine.create(path, { host, args, name: opts.name ?? path, env: opts.env });
      const r = await m.run();
      expect(r.kind).toBe("exited");
      return Buffer.concat(chunks).toString();
    })();
    plainRuns.set(key, p);
  }
  return p;
}

async function bodyBytes(res: Response): Promise<Uint8Array> {
  return new Uint8Array(await res.arrayBuffer());
}

/** `bytes` as a request body stream of `size`-byte chunks. */
function chunked(bytes: Uint8Array, size: number): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({
    pull(ctrl) {
      if (at >= bytes.length) return ctrl.close();
      ctrl.enqueue(bytes.slice(at, at + size));
      at += size;
    },
  });
}

/** A full image of a running ticker (frozen, checkpointed with leaveRunning, thawed: four requests). */
async function tickerImage(env: Env, name = "t"): Promise<{ image: Uint8Array }> {
  await createTicker(env, name, FOREVER);
  await until("a few ticks", () => logText(env, name).includes("tick 3\n"));
  await ok(api(env.app, "POST", `/v1/containers/${name}/freeze`));
  const image = await bodyBytes(await api(env.app, "POST", `/v1/containers/${name}/checkpoint`, { leaveRunning: true }));
  await ok(api(env.app, "POST", `/v1/containers/${name}/thaw`));
  return { image };
}

interface Scrape {
  types: Map<string, string>;
  samples: Map<string, number>;
}

/** Parses the Prometheus text format, checking each sample's metric was declared (HELP and TYPE) before it. */
function parseMetrics(text: string): Scrape {
  const types = new Map<string, string>(), helps = new Set<string>(), samples = new Map<string, number>();
  expect(text.endsWith("\n")).toBe(true);
  for (const line of text.trimEnd().split("\n")) {
    let m: RegExpMatchArray | null;
    if ((m = line.match(/^# HELP ([a-z_:][a-z0-9_:]*) \S.*$/))) helps.add(m[1]!);
    else if ((m = line.match(/^# TYPE ([a-z_:][a-z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/))) types.set(m[1]!, m[2]!);
    else if ((m = line.match(/^([a-z_:][a-z0-9_:]*)(\{[a-z_]+="[^"]*"(?:,[a-z_]+="[^"]*")*\})? (-?[0-9.e+-]+)$/))) {
      expect(types.has(m[1]!) && helps.has(m[1]!), `declared: ${line}`).toBe(true);
      const v = Number(m[3]);
      expect(Number.isFinite(v), line).toBe(true);
      samples.set(m[1]! + (m[2] ?? ""), v);
    } else throw new Error(`not a Prometheus text line: ${JSON.stringify(line)}`);
  }
  for (const [name, type] of types) if (type === "counter") expect(name).toMatch(/_total$/);
  return { types, samples };
}

async function scrape(env: Env): Promise<Scrape> {
  const res = await api(env.app, "GET", "/v1/metrics");
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
  return parseMetrics(await res.text());
}

describe("health and auth", () => {
  it("health answers without a token", async () => {
    const { app } = await setup();
    const res = await app.request("/v1/health");
    const body = await ok<{ ok: boolean; version: string; runtime: string }>(res);
    expect(body.ok).toBe(true);
    expect(body.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(body.runtime).toMatch(/^node /);
  });

  const routes: [string, string][] = [
    ["GET", "/v1/metrics"],
    ["GET", "/v1/containers"],
    ["POST", "/v1/containers"],
    ["GET", "/v1/containers/t"],
    ["GET", "/v1/containers/t/tree"],
    ["GET", "/v1/containers/t/logs"],
    ["POST", "/v1/containers/t/freeze"],
    ["POST", "/v1/containers/t/thaw"],
    ["POST", "/v1/containers/t/checkpoint"],
    ["POST", "/v1/containers/t/restore"],
    ["POST", "/v1/containers/t/kill"],
    ["DELETE", "/v1/containers/t"],
    ["GET", "/v1/no-such-route"],
  ];

  it("every other route wants the token: 401 with a JSON error, and nothing happens", async () => {
    const env = await setup();
    await createTicker(env, "t", FOREVER);
    const bad: Record<string, string>[] = [
      {},
      { Authorization: "" },
      { Authorization: `Basic ${btoa(`user:${TOKEN}`)}` },
      { Authorization: `Token ${TOKEN}` },
      { Authorization: "Bearer" },
      { Authorization: "Bearer " },
      { Authorization: "Bearer !!not a token!!" },
      { Authorization: "Bearer wrong-token-xx" }, // the same length as the token
      { Authorization: "Bearer x" },
      { Authorization: `Bearer ${TOKEN}x` },
      { Authorization: `Bearer ${TOKEN.slice(0, -1)}` },
      { Authorization: `Bearer ${TOKEN}${"a".repeat(1000)}` },
    ];
    expect("wrong-token-xx".length + 1).toBe(TOKEN.length);
    for (const [method, path] of routes) {
      for (const headers of bad) {
        const body = method === "POST" ? JSON.stringify({ name: "u", module: { path: HELLO } }) : undefined;
        const res = await app(env).request(path, { method, headers, body });
        await expectError(res, 401, /token|Authorization/);
        expect(res.headers.get("www-authenticate")).toMatch(/^Bearer/);
      }
    }
    // Nothing was created, frozen or deleted.
    expect([...env.daemon.containers.keys()]).toEqual(["t"]);
    expect(env.daemon.get("t").status).toBe("running");
  });

  it("names the problem: missing header, malformed header, wrong token", async () => {
    const { app } = await setup();
    await expectError(app.request("/v1/containers"), 401, /^missing Authorization: Bearer <token>$/);
    await expectError(app.request("/v1/containers", { headers: { Authorization: "Basic abc" } }), 401, /malformed Authorization header/);
    await expectError(app.request("/v1/containers", { headers: { Authorization: "Bearer nope" } }), 401, /^invalid token$/);
  });

  it("takes the scheme in any case", async () => {
    const { app } = await setup();
    await ok(app.request("/v1/containers", { headers: { Authorization: `bearer ${TOKEN}` } }));
  });

  it("unknown routes are a JSON 404 (after auth)", async () => {
    const { app } = await setup();
    await expectError(api(app, "GET", "/v1/nope"), 404, /no route GET \/v1\/nope/);
    await expectError(api(app, "PUT", "/v1/containers/t"), 404, /no route PUT/);
  });
});

function app(env: Env): Hono {
  return env.app;
}

describe("containers", () => {
  it("lists nothing, then a created container; create from a host path answers 201 with its summary", async () => {
    const env = await setup();
    expect(await ok(api(env.app, "GET", "/v1/containers"))).toEqual({ containers: [] });
    const t0 = Date.now();
    const s = await ok(api(env.app, "POST", "/v1/containers", { name: "t", module: { path: TICKER }, args: [TICKS], env: ["A=1"] }), 201);
    expect(s).toEqual({
      name: "t",
      status: "running",
      module: TICKER,
      args: [TICKS],
      createdAt: expect.any(String),
      exitCode: null,
      tasks: 1,
      checkpoints: 0,
      log: { start: 0, end: expect.any(Number) },
    });
    expect(Math.abs(Date.parse(s.createdAt as string) - t0)).toBeLessThan(60_000);
    const list = await ok<{ containers: { name: string }[] }>(api(env.app, "GET", "/v1/containers"));
    expect(list.containers).toEqual([{ ...s, log: { start: 0, end: expect.any(Number) } }]); // it runs on
    // Its definition and module are in the state directory.
    const def = JSON.parse(readFileSync(join(env.dir, "containers/t/container.json"), "utf8"));
    expect(def).toMatchObject({ name: "t", moduleName: TICKER, args: [TICKS], env: ["A=1"], state: "running" });
    expect(readFileSync(join(env.dir, "containers/t/module.wasm"))).toEqual(readFileSync(TICKER));
  });

  it("creates from base64 with a module name, runs it to its exit code, and keeps its output", async () => {
    const env = await setup();
    const base64 = readFileSync(HELLO).toString("base64");
    const s = await ok(api(env.app, "POST", "/v1/containers", { name: "h", module: { base64, name: "hi.wasm" }, args: ["a b", "exit=3"], env: ["GREETING=hey"] }), 201);
    expect(s).toMatchObject({ name: "h", module: "hi.wasm", args: ["a b", "exit=3"] });
    await ended(env, "h");
    const shown = await ok(api(env.app, "GET", "/v1/containers/h"));
    expect(shown).toMatchObject({ name: "h", status: "exited", exitCode: 3, tasks: [] });
    const want = await plain(HELLO, ["a b", "exit=3"], { name: "hi.wasm", env: ["GREETING=hey"] });
    expect(want).toContain("GREETING=hey");
    const res = await api(env.app, "GET", "/v1/containers/h/logs");
    expect(res.headers.get("content-type")).toBe("application/octet-stream");
    expect(res.headers.get("x-crvm-log-start")).toBe("0");
    expect(await res.text()).toBe(want);
    expect((shown.log as { end: number }).end).toBe(Buffer.byteLength(want));
  });

  it("a base64 module without a name is called NAME.wasm", async () => {
    const env = await setup();
    const s = await ok(api(env.app, "POST", "/v1/containers", { name: "h2", module: { base64: readFileSync(HELLO).toString("base64") } }), 201);
    expect(s.module).toBe("h2.wasm");
    await ended(env, "h2");
    expect(logText(env, "h2")).toContain("argv[0]=h2.wasm\n");
  });

  it("shows a container with its tasks, and its tree", async () => {
    const env = await setup();
    await createTicker(env);
    const shown = await ok<{ tasks: { pid: number; ppid: number; state: string; group: string; args: string[] }[] }>(api(env.app, "GET", "/v1/containers/t"));
    expect(shown).toMatchObject({ name: "t", status: "running", module: TICKER, args: [TICKS], exitCode: null });
    expect(shown.tasks).toEqual([expect.objectContaining({ pid: 1, group: "/", args: [TICKER, TICKS] })]);
    expect(["running", "blocked"]).toContain(shown.tasks[0]!.state);
    const tree = await ok<{ tasks: unknown[] }>(api(env.app, "GET", "/v1/containers/t/tree"));
    expect(tree.tasks).toEqual([expect.objectContaining({ pid: 1, ppid: 0, group: "/" })]);
    await ended(env, "t");
    expect(await ok(api(env.app, "GET", "/v1/containers/t/tree"))).toEqual({ tasks: [] });
  });

  it("logs: the whole log, from an offset, and past the cap", async () => {
    const env = await setup({ logCap: 64 });
    await ok(api(env.app, "POST", "/v1/containers", { name: "h", module: { path: HELLO }, args: ["x".repeat(100)] }), 201);
    await ended(env, "h");
    const want = await plain(HELLO, ["x".repeat(100)]);
    expect(want.length).toBeGreaterThan(64);
    const start = want.length - 64;
    let res = await api(env.app, "GET", "/v1/containers/h/logs");
    expect(res.headers.get("x-crvm-log-start")).toBe(String(start));
    expect(await res.text()).toBe(want.slice(start));
    res = await api(env.app, "GET", `/v1/containers/h/logs?from=${start + 10}`);
    expect(res.headers.get("x-crvm-log-start")).toBe(String(start + 10));
    expect(await res.text()).toBe(want.slice(start + 10));
    res = await api(env.app, "GET", "/v1/containers/h/logs?from=3");
    expect(res.headers.get("x-crvm-log-start")).toBe(String(start));
    expect(await res.text()).toBe(want.slice(start));
    res = await api(env.app, "GET", `/v1/containers/h/logs?from=${want.length + 5}&follow=0`);
    expect(await res.text()).toBe("");
    expect(await ok(api(env.app, "GET", "/v1/containers/h"))).toMatchObject({ log: { start, end: want.length } });
    for (const from of ["-1", "abc", "1.5", "1e400"]) await expectError(api(env.app, "GET", `/v1/containers/h/logs?from=${from}`), 400, /bad "from"/);
  });

  it("follows a log until the container exits: the same bytes as a plain run", async () => {
    const env = await setup();
    await createTicker(env);
    const res = await api(env.app, "GET", "/v1/containers/t/logs?follow=1");
    expect(res.status).toBe(200);
    const chunks: string[] = [];
    for await (const c of res.body as unknown as AsyncIterable<Uint8Array>) chunks.push(Buffer.from(c).toString());
    expect(chunks.join("")).toBe(await plain(TICKER, [TICKS]));
    expect(chunks.length).toBeGreaterThan(1); // it did follow, not read once at the end
    expect(env.daemon.get("t").status).toBe("exited");
  });

  it("follows from an offset", async () => {
    const env = await setup();
    await createTicker(env);
    await until("tick 2", () => logText(env, "t").includes("tick 2\n"));
    const res = await api(env.app, "GET", "/v1/containers/t/logs?follow=1&from=7");
    expect(res.headers.get("x-crvm-log-start")).toBe("7");
    expect(await res.text()).toBe((await plain(TICKER, [TICKS])).slice(7));
  });

  it("a followed log ends when the client aborts or cancels, while the container runs on", async () => {
    const env = await setup();
    await createTicker(env, "t", FOREVER);
    const ac = new AbortController();
    const res = await app(env).request("/v1/containers/t/logs?follow=1", { headers: AUTH, signal: ac.signal });
    const reader = res.body!.getReader();
    expect((await reader.read()).done).toBe(false);
    ac.abort();
    for (let r = await reader.read(); !r.done; r = await reader.read());
    expect(env.daemon.get("t").status).toBe("running");

    // Cancelling the body ends the follow too, even while the container is frozen (no output to wake it).
    const log = env.daemon.get("t").log;
    const follow = vi.spyOn(log, "follow");
    await ok(api(env.app, "POST", "/v1/containers/t/freeze"));
    const res2 = await api(env.app, "GET", `/v1/containers/t/logs?follow=1&from=${log.end}`);
    const signal = follow.mock.calls[0]![1]!;
    expect(signal.aborted).toBe(false);
    const reader2 = res2.body!.getReader();
    const pending = reader2.read();
    await sleep(5);
    await reader2.cancel();
    expect(signal.aborted).toBe(true);
    expect((await pending).done).toBe(true);
  });

  it("freezes and thaws the whole container: nothing runs while frozen, the output is unchanged", async () => {
    const env = await setup();
    await createTicker(env);
    await until("tick 2", () => logText(env, "t").includes("tick 2\n"));
    expect(await ok(api(env.app, "POST", "/v1/containers/t/freeze"))).toMatchObject({ status: "frozen" });
    const tree = await ok<{ tasks: { state: string }[] }>(api(env.app, "GET", "/v1/containers/t/tree"));
    expect(tree.tasks.map((t) => t.state)).toEqual(["frozen"]);
    const end = env.daemon.get("t").log.end;
    await sleep(30);
    expect(env.daemon.get("t").log.end).toBe(end);
    expect(await ok(api(env.app, "POST", "/v1/containers/t/freeze", {}))).toMatchObject({ status: "frozen" }); // again: still frozen
    expect(await ok(api(env.app, "POST", "/v1/containers/t/thaw", { group: "/" }))).toMatchObject({ status: "running" });
    await ended(env, "t");
    expect(logText(env, "t")).toBe(await plain(TICKER, [TICKS]));
    expect(env.daemon.get("t").def.exitCode).toBe(0);
  });

  it("freezes and thaws one freezer group; an unknown group is a 404", async () => {
    const env = await setup();
    await createTicker(env);
    const m = env.daemon.get("t").machine!;
    m.vm.freezer.attach(1, m.vm.freezer.create("/g"));
    await until("tick 2", () => logText(env, "t").includes("tick 2\n"));
    // Only the group is frozen, not the container.
    expect(await ok(api(env.app, "POST", "/v1/containers/t/freeze", { group: "/g" }))).toMatchObject({ status: "running" });
    let tree = await ok<{ tasks: { pid: number; state: string; group: string }[] }>(api(env.app, "GET", "/v1/containers/t/tree"));
    expect(tree.tasks).toEqual([expect.objectContaining({ pid: 1, state: "frozen", group: "/g" })]);
    const end = env.daemon.get("t").log.end;
    await sleep(30);
    expect(env.daemon.get("t").log.end).toBe(end);
    await ok(api(env.app, "POST", "/v1/containers/t/thaw", { group: "/g" }));
    tree = await ok(api(env.app, "GET", "/v1/containers/t/tree"));
    expect(tree.tasks[0]!.state).not.toBe("frozen");
    for (const op of ["freeze", "thaw"]) {
      await expectError(api(env.app, "POST", `/v1/containers/t/${op}`, { group: "/nope" }), 404, /container "t" has no freezer group "\/nope"/);
    }
    await ended(env, "t");
    expect(logText(env, "t")).toBe(await plain(TICKER, [TICKS]));
  });

  it("checkpoint stops the container and answers with an image that another daemon restores and finishes", async () => {
    const a = await setup();
    await createTicker(a);
    await until("tick 3", () => logText(a, "t").includes("tick 3\n"));
    const res = await api(a.app, "POST", "/v1/containers/t/checkpoint");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/octet-stream");
    const image = await bodyBytes(res);
    const decoded = await decodeSnapshot(image, { name: "response" });
    expect(decoded.meta.parent).toBeFalsy();
    expect(decoded.vm.tasks.map((t) => t.pid)).toEqual([1]);
    await until("checkpointed", () => a.daemon.get("t").status === "checkpointed");
    const shown = await ok(api(a.app, "GET", "/v1/containers/t"));
    expect(shown).toMatchObject({ status: "checkpointed", checkpoints: 1, tasks: [] });
    const before = logText(a, "t");
    await sleep(20);
    expect(logText(a, "t")).toBe(before); // it stopped
    expect(JSON.parse(readFileSync(join(a.dir, "containers/t/container.json"), "utf8")).state).toBe("checkpointed");

    const b = await setup();
    const s = await ok(api(b.app, "POST", "/v1/containers/t2/restore", chunked(image, 4096)), 201);
    expect(s).toMatchObject({ name: "t2", module: TICKER, args: [TICKS], status: "running" });
    await ended(b, "t2");
    expect(b.daemon.get("t2").def).toMatchObject({ state: "exited", exitCode: 0 });
    const want = await plain(TICKER, [TICKS]);
    expect(before.length).toBeGreaterThan(0);
    expect(before + logText(b, "t2")).toBe(want);
  });

  it("checkpoint with leaveRunning: the container goes on (thawed, or frozen if it was), and the image restores", async () => {
    const env = await setup();
    await createTicker(env, "t", "100");
    await until("tick 2", () => logText(env, "t").includes("tick 2\n"));
    const image1 = await bodyBytes(await api(env.app, "POST", "/v1/containers/t/checkpoint", { leaveRunning: true }));
    await decodeSnapshot(image1, { name: "first" });
    await until("thawed", () => env.daemon.get("t").status === "running");
    // Frozen by the client before: still frozen after.
    await ok(api(env.app, "POST", "/v1/containers/t/freeze"));
    const before = logText(env, "t");
    const image2 = await bodyBytes(await api(env.app, "POST", "/v1/containers/t/checkpoint", { leaveRunning: true }));
    await sleep(20);
    expect(env.daemon.get("t").status).toBe("frozen");
    expect(logText(env, "t")).toBe(before);
    expect(await ok(api(env.app, "GET", "/v1/containers/t"))).toMatchObject({ status: "frozen", checkpoints: 2 });
    await ok(api(env.app, "POST", "/v1/containers/t/thaw"));
    await ended(env, "t");
    const want = await plain(TICKER, ["100"]);
    expect(logText(env, "t")).toBe(want);

    // Restored frozen: nothing runs until the thaw; then it prints the rest.
    const s = await ok(api(env.app, "POST", "/v1/containers/r/restore?frozen=1", chunked(image2, 1000)), 201);
    expect(s).toMatchObject({ name: "r", status: "frozen" });
    const tree = await ok<{ tasks: { state: string }[] }>(api(env.app, "GET", "/v1/containers/r/tree"));
    expect(tree.tasks.map((t) => t.state)).toEqual(["frozen"]);
    await sleep(30);
    expect(env.daemon.get("r").log.end).toBe(0);
    expect(await ok(api(env.app, "POST", "/v1/containers/r/thaw"))).toMatchObject({ status: "running" });
    await ended(env, "r");
    expect(before + logText(env, "r")).toBe(want);
  });

  it("checkpoint of one task's subtree wants it frozen; unknown task is a 404", async () => {
    const env = await setup();
    await createTicker(env, "t", FOREVER);
    await expectError(api(env.app, "POST", "/v1/containers/t/checkpoint", { pid: 1 }), 409, /task 1 is not frozen/);
    await expectError(api(env.app, "POST", "/v1/containers/t/checkpoint", { pid: 99 }), 404, /container "t" has no task 99/);
    const m = env.daemon.get("t").machine!;
    m.vm.freezer.attach(1, m.vm.freezer.create("/g"));
    await ok(api(env.app, "POST", "/v1/containers/t/freeze", { group: "/g" }));
    const image = await bodyBytes(await api(env.app, "POST", "/v1/containers/t/checkpoint", { pid: 1 }));
    expect((await decodeSnapshot(image, { name: "subtree" })).vm.tasks.map((t) => t.pid)).toEqual([1]);
    // A subtree checkpoint leaves the container as it was.
    await sleep(10);
    expect(env.daemon.get("t").status).toBe("running");
    expect(env.daemon.get("t").tasks()[0]!.state).toBe("frozen");
  });

  it("kill ends every task: exit code 137", async () => {
    const env = await setup();
    await createTicker(env, "t", FOREVER);
    await until("tick 1", () => logText(env, "t").includes("tick 1\n"));
    expect(await ok(api(env.app, "POST", "/v1/containers/t/kill"))).toMatchObject({ status: "exited", exitCode: 137, tasks: 0 });
    expect(env.daemon.get("t").log.closed).toBe(true);
    expect(JSON.parse(readFileSync(join(env.dir, "containers/t/container.json"), "utf8"))).toMatchObject({ state: "exited", exitCode: 137 });
  });

  it("delete answers 204 and forgets the container and its state; then it is a 404", async () => {
    const env = await setup();
    await createTicker(env, "t", FOREVER);
    const res = await api(env.app, "DELETE", "/v1/containers/t");
    expect(res.status).toBe(204);
    expect(await res.text()).toBe("");
    expect(existsSync(join(env.dir, "containers/t"))).toBe(false);
    await expectError(api(env.app, "GET", "/v1/containers/t"), 404, /no container "t"/);
    await expectError(api(env.app, "DELETE", "/v1/containers/t"), 404, /no container "t"/);
    expect(await ok(api(env.app, "GET", "/v1/containers"))).toEqual({ containers: [] });
    // An exited one too, and the name is free again.
    await ok(api(env.app, "POST", "/v1/containers", { name: "h", module: { path: HELLO } }), 201);
    await ended(env, "h");
    expect((await api(env.app, "DELETE", "/v1/containers/h")).status).toBe(204);
    await ok(api(env.app, "POST", "/v1/containers", { name: "h", module: { path: HELLO } }), 201);
  });

  it("metrics: Prometheus text whose values move with creates, checkpoints, restores and requests", async () => {
    const env = await setup();
    const m0 = await scrape(env);
    for (const [name, type] of [
      ["crvm_containers", "gauge"],
      ["crvm_tasks", "gauge"],
      ["crvm_containers_created_total", "counter"],
      ["crvm_containers_restored_total", "counter"],
      ["crvm_checkpoints_total", "counter"],
      ["crvm_checkpoint_bytes_total", "counter"],
      ["crvm_checkpoint_seconds_total", "counter"],
      ["crvm_http_requests_total", "counter"],
    ]) expect(m0.types.get(name!), name).toBe(type);
    expect(m0.samples.get("crvm_containers_created_total")).toBe(0);
    expect(m0.samples.get('crvm_containers{status="running"}')).toBe(0);
    expect(m0.samples.get("crvm_tasks")).toBe(0);
    expect(m0.samples.get("crvm_checkpoints_total")).toBe(0);

    const { image } = await tickerImage(env);
    const m1 = await scrape(env);
    expect(m1.samples.get("crvm_containers_created_total")).toBe(1);
    expect(m1.samples.get('crvm_containers{status="running"}')).toBe(1);
    expect(m1.samples.get("crvm_tasks")).toBe(1);
    expect(m1.samples.get("crvm_checkpoints_total")).toBe(1);
    expect(m1.samples.get("crvm_checkpoint_bytes_total")).toBe(image.length);
    expect(m1.samples.get("crvm_checkpoint_seconds_total")).toBeGreaterThan(0);
    // setup's scrape, create, freeze, checkpoint, thaw, this scrape.
    expect(m1.samples.get("crvm_http_requests_total")! - m0.samples.get("crvm_http_requests_total")!).toBe(5);

    await ok(api(env.app, "POST", "/v1/containers/r/restore?frozen=1", image), 201);
    await ok(api(env.app, "POST", "/v1/containers/t/kill"));
    const m2 = await scrape(env);
    expect(m2.samples.get("crvm_containers_restored_total")).toBe(1);
    expect(m2.samples.get('crvm_containers{status="frozen"}')).toBe(1);
    expect(m2.samples.get('crvm_containers{status="exited"}')).toBe(1);
    expect(m2.samples.get('crvm_containers{status="running"}')).toBe(0);
    expect(m2.samples.get("crvm_tasks")).toBe(1);
  });
});

describe("bad requests", () => {
  const create = (env: Env, body: Body) => api(env.app, "POST", "/v1/containers", body);

  it("create: malformed JSON, wrong types, unknown fields, bad values", async () => {
    const env = await setup();
    const cases: [Body, RegExp][] = [
      ["{", /^malformed JSON body$/],
      ['{"name": "a",}', /^malformed JSON body$/],
      ["null", /^bad request body: /],
      ["[]", /^bad request body: /],
      ['"x"', /^bad request body: /],
      [{}, /^bad request body: name: /],
      [{ name: "a" }, /^bad request body: module: /],
      [{ name: 5, module: { path: HELLO } }, /^bad request body: name: .*string/i],
      [{ name: "a", module: HELLO }, /^bad request body: module: /],
      [{ name: "a", module: { path: 7 } }, /^bad request body: module/],
      [{ name: "a", module: { path: HELLO, base64: "AA==" } }, /^bad request body: module/],
      [{ name: "a", module: { path: HELLO }, args: "x" }, /^bad request body: args: /],
      [{ name: "a", module: { path: HELLO }, args: [1] }, /^bad request body: args\.0: /],
      [{ name: "a", module: { path: HELLO }, env: ["NOEQUALS"] }, /^bad request body: env\.0: expected NAME=VALUE$/],
      [{ name: "a", module: { path: HELLO }, dirs: [{ host: "/tmp" }] }, /^bad request body: dirs\.0\.guest: /],
      [{ name: "a", module: { path: HELLO }, maxTasks: 0 }, /^bad request body: maxTasks: /],
      [{ name: "a", module: { path: HELLO }, maxTasks: 1.5 }, /^bad request body: maxTasks: /],
      [{ name: "a", module: { path: HELLO }, maxMemoryPages: 65537 }, /^bad request body: maxMemoryPages: /],
      [{ name: "a", module: { path: HELLO }, cgroupfs: "yes" }, /^bad request body: cgroupfs: /],
      [{ name: "a", module: { path: HELLO }, extra: 1 }, /^bad request body: .*extra/],
      [{ name: "x".repeat(64), module: { path: HELLO } }, /^bad request body: name: /],
      [{ name: "", module: { path: HELLO } }, /^bad container name ""/],
      [{ name: "a/b", module: { path: HELLO } }, /^bad container name "a\/b"/],
      [{ name: "..", module: { path: HELLO } }, /^bad container name "\.\."/],
      [{ name: "-x", module: { path: HELLO } }, /^bad container name/],
      [{ name: "a b", module: { path: HELLO } }, /^bad container name/],
      [{ name: "a", module: { path: "/no/such/module.wasm" } }, /^Cannot read module "\/no\/such\/module\.wasm": no such file$/],
      [{ name: "a", module: { path: GUESTS } }, /is a directory/],
      [{ name: "a", module: { path: new URL("../../package.json", import.meta.url).pathname } }, /not a WebAssembly binary/],
      [{ name: "a", module: { base64: "not base64!" } }, /^bad request body: module\.base64: not base64$/],
      [{ name: "a", module: { base64: "AAAAA" } }, /^bad request body: module\.base64: not base64$/],
      [{ name: "a", module: { base64: "AA=A" } }, /^bad request body: module\.base64: not base64$/],
      [{ name: "a", module: { base64: "AA=" } }, /^bad request body: module\.base64: not base64$/],
      [{ name: "a", module: { base64: btoa("hello, not wasm") } }, /not a WebAssembly binary/],
    ];
    for (const [body, message] of cases) await expectError(create(env, body), 400, message);
    expect(env.daemon.containers.size).toBe(0);
    expect(readdirSync(join(env.dir, "containers"))).toEqual([]);
    expect((await scrape(env)).samples.get("crvm_containers_created_total")).toBe(0);
  });

  it("create: a name in use is a 409", async () => {
    const env = await setup();
    await ok(create(env, { name: "a", module: { path: HELLO } }), 201);
    await expectError(create(env, { name: "a", module: { path: TICKER } }), 409, /^container "a" exists$/);
    expect(env.daemon.get("a").def.moduleName).toBe(HELLO);
  });

  it("other bodies: wrong types and unknown fields are 400s", async () => {
    const env = await setup();
    await createTicker(env, "t", FOREVER);
    const cases: [string, Body, RegExp][] = [
      ["freeze", { group: 5 }, /^bad request body: group: /],
      ["freeze", { grop: "/" }, /^bad request body: .*grop/],
      ["thaw", "{oops", /^malformed JSON body$/],
      ["checkpoint", { pid: "1" }, /^bad request body: pid: /],
      ["checkpoint", { pid: 0 }, /^bad request body: pid: /],
      ["checkpoint", { leaveRunning: 1 }, /^bad request body: leaveRunning: /],
      ["checkpoint", { parent: "x" }, /^bad request body: .*parent/],
      ["kill", { signal: 99 }, /^bad request body: signal: /],
      ["kill", { signal: "KILL" }, /^bad request body: signal: /],
    ];
    for (const [op, body, message] of cases) await expectError(api(env.app, "POST", `/v1/containers/t/${op}`, body), 400, message);
    expect(env.daemon.get("t").status).toBe("running");
  });

  it("an unknown container is a 404 on every route", async () => {
    const env = await setup();
    const routes: [string, string, Body?][] = [
      ["GET", "/v1/containers/nope"],
      ["GET", "/v1/containers/nope/tree"],
      ["GET", "/v1/containers/nope/logs"],
      ["GET", "/v1/containers/nope/logs?follow=1"],
      ["POST", "/v1/containers/nope/freeze"],
      ["POST", "/v1/containers/nope/thaw", {}],
      ["POST", "/v1/containers/nope/checkpoint", { leaveRunning: true }],
      ["POST", "/v1/containers/nope/kill"],
      ["DELETE", "/v1/containers/nope"],
    ];
    for (const [method, path, body] of routes) await expectError(api(env.app, method, path, body), 404, /^no container "nope"$/);
  });

  it("operations that need a running container are 409s on an exited one", async () => {
    const env = await setup();
    await ok(create(env, { name: "h", module: { path: HELLO } }), 201);
    await ended(env, "h");
    for (const op of ["freeze", "thaw", "checkpoint", "kill"]) {
      await expectError(api(env.app, "POST", `/v1/containers/h/${op}`), 409, /^container "h" is not running \(exited\)$/);
    }
    await expectError(api(env.app, "POST", "/v1/containers/h/checkpoint", { pid: 1 }), 409, /not running/);
    // It is still there, unchanged.
    expect(await ok(api(env.app, "GET", "/v1/containers/h"))).toMatchObject({ status: "exited", exitCode: 0 });
  });

  it("a JSON body over maxJsonBytes is a 413, whether it declares its length or not", async () => {
    const env = await setup({ maxJsonBytes: 1024 });
    const body = JSON.stringify({ name: "big", module: { base64: readFileSync(HELLO).toString("base64") } });
    expect(body.length).toBeGreaterThan(1024);
    await expectError(api(env.app, "POST", "/v1/containers", body), 413, /^body larger than 1024 bytes$/);
    await expectError(api(env.app, "POST", "/v1/containers", body, { "Content-Length": String(body.length) }), 413, /larger than 1024/);
    await expectError(api(env.app, "POST", "/v1/containers", chunked(new TextEncoder().encode(body), 100)), 413, /larger than 1024/);
    expect(env.daemon.containers.size).toBe(0);
    // One of exactly the limit still passes.
    await ok(api(env.app, "POST", "/v1/containers", JSON.stringify({ name: "small", module: { path: HELLO } }).padEnd(1024)), 201);
  });

  describe("restore", () => {
    async function nothingCreated(env: Env, name: string, before: string[]): Promise<void> {
      expect([...env.daemon.containers.keys()]).toEqual(before);
      expect(existsSync(join(env.dir, "containers", name))).toBe(false);
      expect((await scrape(env)).samples.get("crvm_containers_restored_total")).toBe(0);
    }

    it("refuses truncated, corrupted, empty and foreign images with a 422 naming the problem, creating nothing", async () => {
      const env = await setup();
      const { image } = await tickerImage(env);
      const corrupt = image.slice();
      corrupt[image.length >> 1]! ^= 0xff;
      const cases: [Uint8Array, RegExp][] = [
        [image.subarray(0, image.length >> 1), /^Cannot read snapshot "request body for r": .*truncated/],
        [image.subarray(0, image.length - 1), /^Cannot read snapshot "request body for r": /],
        [image.subarray(0, 10), /^Cannot read snapshot "request body for r": .*truncated/],
        [corrupt, /^Cannot read snapshot "request body for r": /],
        [new Uint8Array(0), /^Cannot read snapshot "request body for r": .*empty/],
        [readFileSync(HELLO), /^Cannot read snapshot "request body for r": not a crvm snapshot/],
      ];
      for (const [body, message] of cases) {
        await expectError(api(env.app, "POST", "/v1/containers/r/restore", chunked(body, 777)), 422, message);
        await nothingCreated(env, "r", ["t"]);
      }
      await expectError(api(env.app, "POST", "/v1/containers/r/restore"), 400, /^the request has no body$/);
      // The good image still restores.
      await ok(api(env.app, "POST", "/v1/containers/r/restore", image), 201);
    });

    it("an image over maxImageBytes is a 413", async () => {
      const env = await setup({ maxImageBytes: 50_000 });
      const { image } = await tickerImage(env);
      expect(image.length).toBeGreaterThan(50_000);
      await expectError(api(env.app, "POST", "/v1/containers/r/restore", chunked(image, 8192)), 413, /^body larger than 50000 bytes$/);
      await nothingCreated(env, "r", ["t"]);
    });

    it("an incremental image is a 422", async () => {
      const env = await setup();
      await createTicker(env, "t", FOREVER);
      const c = env.daemon.get("t");
      await env.daemon.snapshot(c);
      await env.daemon.snapshot(c);
      const incremental = readFileSync(join(env.dir, "containers/t/images/000002.snap"));
      expect((await decodeSnapshot(incremental, { name: "2", verifyPages: false })).meta.parent).toBeTruthy();
      await expectError(api(env.app, "POST", "/v1/containers/r/restore", incremental), 422, /incremental/);
      await nothingCreated(env, "r", ["t"]);
    });

    it("a name in use is a 409, a bad name a 400", async () => {
      const env = await setup();
      const { image } = await tickerImage(env);
      await expectError(api(env.app, "POST", "/v1/containers/t/restore", image), 409, /^container "t" exists$/);
      await expectError(api(env.app, "POST", "/v1/containers/.hidden/restore", image), 400, /^bad container name "\.hidden"/);
      await expectError(api(env.app, "POST", `/v1/containers/${"x".repeat(64)}/restore`, image), 400, /^bad container name/);
      expect([...env.daemon.containers.keys()]).toEqual(["t"]);
    });
  });

  it("a 500 says only \"internal error\" and reports the details", async () => {
    const env = await setup();
    vi.spyOn(env.daemon, "get").mockImplementation(() => {
      throw new Error("boom: secret detail");
    });
    const res = await api(env.app, "GET", "/v1/containers/x");
    expect(res.status).toBe(500);
    expect(await res.text()).toBe('{"error":"internal error"}');
    const line = env.reports.find((l) => l.includes("boom"));
    expect(line).toMatch(/^internal error on GET \/v1\/containers\/x: Error: boom: secret detail\n\s+at /);

    vi.spyOn(env.daemon, "create").mockRejectedValue(new TypeError("cannot read properties of undefined"));
    await expectError(api(env.app, "POST", "/v1/containers", { name: "a", module: { path: HELLO } }), 500, /^internal error$/);
    expect(env.reports.some((l) => l.startsWith("internal error on POST /v1/containers: TypeError: cannot read"))).toBe(true);
  });
});

describe("over a real socket", () => {
  it("serves health, refuses a missing token, creates and follows a log to the end", async () => {
    const env = await setup();
    const server = await serveHttp(env.app.fetch, { hostname: "127.0.0.1", port: 0 });
    try {
      const base = `http://127.0.0.1:${server.port}`;
      expect(await (await fetch(`${base}/v1/health`)).json()).toMatchObject({ ok: true });
      await expectError(fetch(`${base}/v1/containers`), 401, /missing Authorization/);
      const created = await fetch(`${base}/v1/containers`, { method: "POST", headers: AUTH, body: JSON.stringify({ name: "t", module: { path: TICKER }, args: [TICKS] }) });
      expect(created.status).toBe(201);
      const log = await fetch(`${base}/v1/containers/t/logs?follow=1`, { headers: AUTH });
      expect(await log.text()).toBe(await plain(TICKER, [TICKS]));
      const image = await fetch(`${base}/v1/containers/t/checkpoint`, { method: "POST", headers: AUTH });
      await expectError(image, 409, /not running \(exited\)/);
    } finally {
      await server.close();
    }
  });
});
