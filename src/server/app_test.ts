// The HTTP API through `app.request()`: every route and auth failures, and
// one test over a real socket (bad requests: app_errors_test.ts). Guests come
// from guests/build/; each test has its own daemon and state directory.
import { describe, expect, it, vi } from "vitest";
import { byteLength, textOf, toBase64 } from "../host/testing.ts";
import { serveHttp } from "../host/serve.ts";
import { decodeSnapshot } from "../snapshot/mod.ts";
import { files, pathJoin, readText, names, TICKER, HELLO, TICKS, FOREVER, TOKEN, AUTH, setup, api, ok, expectError, sleep, until, logText, ended, createTicker, plain, bodyBytes, chunked, tickerImage, scrape, app } from "./_test_env.ts";

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
    const def = JSON.parse(readText(pathJoin(env.dir, "containers/t/container.json")));
    expect(def).toMatchObject({ name: "t", moduleName: TICKER, args: [TICKS], env: ["A=1"], state: "running" });
    expect(files.readFile(pathJoin(env.dir, "containers/t/module.wasm"))).toEqual(files.readFile(TICKER));
  });

  it("creates from base64 with a module name, runs it to its exit code, and keeps its output", async () => {
    const env = await setup();
    const base64 = toBase64(files.readFile(HELLO));
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
    expect((shown.log as { end: number }).end).toBe(byteLength(want));
  });

  it("a base64 module without a name is called NAME.wasm", async () => {
    const env = await setup();
    const s = await ok(api(env.app, "POST", "/v1/containers", { name: "h2", module: { base64: toBase64(files.readFile(HELLO)) } }), 201);
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
    const chunks: Uint8Array[] = [];
    for await (const c of res.body as unknown as AsyncIterable<Uint8Array>) chunks.push(c);
    expect(textOf(chunks)).toBe(await plain(TICKER, [TICKS]));
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
    expect(JSON.parse(readText(pathJoin(a.dir, "containers/t/container.json"))).state).toBe("checkpointed");

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
    expect(JSON.parse(readText(pathJoin(env.dir, "containers/t/container.json")))).toMatchObject({ state: "exited", exitCode: 137 });
  });

  it("delete answers 204 and forgets the container and its state; then it is a 404", async () => {
    const env = await setup();
    await createTicker(env, "t", FOREVER);
    const res = await api(env.app, "DELETE", "/v1/containers/t");
    expect(res.status).toBe(204);
    expect(await res.text()).toBe("");
    expect(files.exists(pathJoin(env.dir, "containers/t"))).toBe(false);
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
