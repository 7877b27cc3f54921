// What the API tests (app_test.ts, app_errors_test.ts) share: a daemon and its
// app per test in a fresh state directory, requests with and without the
// token, plain runs to compare logs with, images and metrics.
import type { Hono } from "hono";
import { afterEach, expect, vi } from "vitest";
import { Machine } from "../api/machine.ts";
import { createHost } from "../host/mod.ts";
import { capturingHost, removeTree, tempDir } from "../host/testing.ts";
import { type AppOptions, createApp } from "./app.ts";
import { Daemon } from "./daemon.ts";

export const files = createHost().fs;
export const pathJoin = (...parts: string[]) => parts.join("/");
export const readText = (p: string) => new TextDecoder().decode(files.readFile(p));
export const names = (p: string) => files.readdir(p).map((e) => e.name);

export const GUESTS = new URL("../../guests/build/", import.meta.url).pathname;
export const TICKER = GUESTS + "ticker.wasm";
export const HELLO = GUESTS + "hello.wasm";
/** Ticks of the ticker (5 ms each): long enough to catch it running, short enough to wait for. */
export const TICKS = "40";
/** A ticker that outlives the test (afterEach stops it). */
export const FOREVER = "1000000";
export const TOKEN = "s3cret.token-42";
export const AUTH = { Authorization: `Bearer ${TOKEN}` };

export interface Env {
  daemon: Daemon;
  app: Hono;
  dir: string;
  /** What the app and the daemon reported. */
  reports: string[];
}

export const envs: Env[] = [];

export async function setup(opts: Partial<AppOptions> & { logCap?: number } = {}): Promise<Env> {
  const dir = tempDir("crvm-app-");
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
    removeTree(e.dir);
  }
});

export type Body = unknown;

/** A request with the token; objects go as JSON, strings and bytes as they are, streams streamed. */
export function api(app: Hono, method: string, path: string, body?: Body, headers: Record<string, string> = {}): Promise<Response> {
  const init: RequestInit & { duplex?: "half" } = { method, headers: { ...AUTH, ...headers } };
  if (body instanceof ReadableStream) {
    init.body = body;
    init.duplex = "half";
  } else if (typeof body === "string" || body instanceof Uint8Array) init.body = body as BodyInit;
  else if (body !== undefined) init.body = JSON.stringify(body);
  return Promise.resolve(app.request(path, init));
}

export async function ok<T = Record<string, unknown>>(res: Response | Promise<Response>, status = 200): Promise<T> {
  const r = await res;
  const text = await r.text();
  expect(r.status, text).toBe(status);
  return JSON.parse(text) as T;
}

/** The response is `status` with a JSON `{ error }` matching `message`, and no stack trace. */
export async function expectError(res: Response | Promise<Response>, status: number, message?: RegExp): Promise<string> {
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

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

export const logText = (env: Env, name: string) => new TextDecoder().decode(env.daemon.get(name).log.read(0).data);

/** Waits until the container's log is closed (it exited, was checkpointed or detached). */
export async function ended(env: Env, name: string): Promise<void> {
  for await (const _ of env.daemon.get(name).log.follow(Number.MAX_SAFE_INTEGER));
}

export async function createTicker(env: Env, name = "t", ticks = TICKS): Promise<void> {
  await ok(api(env.app, "POST", "/v1/containers", { name, module: { path: TICKER }, args: [ticks] }), 201);
}

export const plainRuns = new Map<string, Promise<string>>();
/** The output of a run of the guest on its own (no daemon), argv[0] = `name`. */
export function plain(path: string, args: string[], opts: { name?: string; env?: string[] } = {}): Promise<string> {
  const key = JSON.stringify([path, args, opts]);
  let p = plainRuns.get(key);
  if (!p) {
    p = (async () => {
      const { host, text } = capturingHost();
      const m = await Machine.create(path, { host, args, name: opts.name ?? path, env: opts.env });
      const r = await m.run();
      expect(r.kind).toBe("exited");
      return text();
    })();
    plainRuns.set(key, p);
  }
  return p;
}

export async function bodyBytes(res: Response): Promise<Uint8Array> {
  return new Uint8Array(await res.arrayBuffer());
}

/** `bytes` as a request body stream of `size`-byte chunks. */
export function chunked(bytes: Uint8Array, size: number): ReadableStream<Uint8Array> {
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
export async function tickerImage(env: Env, name = "t"): Promise<{ image: Uint8Array }> {
  await createTicker(env, name, FOREVER);
  await until("a few ticks", () => logText(env, name).includes("tick 3\n"));
  await ok(api(env.app, "POST", `/v1/containers/${name}/freeze`));
  const image = await bodyBytes(await api(env.app, "POST", `/v1/containers/${name}/checkpoint`, { leaveRunning: true }));
  await ok(api(env.app, "POST", `/v1/containers/${name}/thaw`));
  return { image };
}

export interface Scrape {
  types: Map<string, string>;
  samples: Map<string, number>;
}

/** Parses the Prometheus text format, checking each sample's metric was declared (HELP and TYPE) before it. */
export function parseMetrics(text: string): Scrape {
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

export async function scrape(env: Env): Promise<Scrape> {
  const res = await api(env.app, "GET", "/v1/metrics");
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
  return parseMetrics(await res.text());
}

export function app(env: Env): Hono {
  return env.app;
}
