// The HTTP API's answers to bad requests: malformed or mistyped bodies, bad
// names, unknown containers, too-large bodies, bad, truncated or incremental
// images, operations on an ended container, and an internal error that leaks
// nothing. Each test has its own daemon and state directory.
import { describe, expect, it, vi } from "vitest";
import { toBase64 } from "../host/testing.ts";
import { decodeSnapshot } from "../snapshot/mod.ts";
import { files, pathJoin, names, GUESTS, TICKER, HELLO, FOREVER, type Env, setup, type Body, api, ok, expectError, ended, createTicker, chunked, tickerImage, scrape } from "./_test_env.ts";

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
    expect(names(pathJoin(env.dir, "containers"))).toEqual([]);
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
    const body = JSON.stringify({ name: "big", module: { base64: toBase64(files.readFile(HELLO)) } });
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
      expect(files.exists(pathJoin(env.dir, "containers", name))).toBe(false);
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
        [files.readFile(HELLO), /^Cannot read snapshot "request body for r": not a crvm snapshot/],
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
      const incremental = files.readFile(pathJoin(env.dir, "containers/t/images/000002.snap"));
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
