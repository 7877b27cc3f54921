// The HTTP API (/v1, docs/api.md) as a hono app. `createApp` never starts a
// server: `crvm serve` hands `app.fetch` to the runtime's server, and tests
// call `app.request()`.
import { type Context, Hono } from "hono";
import { bearerAuth } from "hono/bearer-auth";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import { z } from "zod";
import { CRVM_VERSION } from "../checkpoint/dump.ts";
import { CrvmError, ModuleError, SnapshotError, UsageError } from "../errors.ts";
import { decodeSnapshotStream } from "../snapshot/mod.ts";
import type { Container } from "./container.ts";
import type { Daemon } from "./daemon.ts";
import { ApiError } from "./errors.ts";
import { bodyChunks, jsonBody, summary } from "./http.ts";
import { migrationRoutes } from "./migration/routes.ts";

export interface AppOptions {
  /** The bearer token every route but /v1/health requires. */
  token: string;
  /** Largest JSON body (a module uploaded in base64 counts), bytes. */
  maxJsonBytes?: number;
  /** Largest image streamed in, bytes. */
  maxImageBytes?: number;
  /** Reports internal errors (the client gets no details). */
  report?: (line: string) => void;
}

const str = z.string().max(1 << 16);
const createSchema = z.strictObject({
  name: z.string().max(63),
  module: z.union([z.strictObject({ path: str }), z.strictObject({ base64: z.string(), name: str.optional() })]),
  args: z.array(str).max(4096).optional(),
  env: z.array(str.regex(/^[^=]+=/, "expected NAME=VALUE")).max(4096).optional(),
  dirs: z.array(z.strictObject({ host: str.min(1), guest: str.min(1) })).max(256).optional(),
  tmpfs: z.array(str.min(1)).max(256).optional(),
  cgroupfs: z.boolean().optional(),
  maxTasks: z.number().int().min(1).max(1 << 20).optional(),
  maxMemoryPages: z.number().int().min(1).max(65536).optional(),
});
const groupSchema = z.strictObject({ group: str.optional() });
const checkpointSchema = z.strictObject({ pid: z.number().int().positive().optional(), leaveRunning: z.boolean().optional() });
const killSchema = z.strictObject({ signal: z.number().int().min(1).max(64).optional() });

/**
 * @example
 * const app = createApp(await Daemon.open({ host, stateDir }), { token });
 * const res = await app.request("/v1/containers", { headers: { Authorization: `Bearer ${token}` } });
 */
export function createApp(daemon: Daemon, opts: AppOptions): Hono {
  const app = new Hono();
  const maxJson = opts.maxJsonBytes ?? 64 * 1024 * 1024;
  const maxImage = opts.maxImageBytes ?? 16 * 1024 ** 3;

  app.onError((e, c) => {
    if (e instanceof ApiError) return c.json({ error: e.message }, e.status);
    if (e instanceof HTTPException) return e.getResponse();
    if (e instanceof SnapshotError) return c.json({ error: e.message }, 422);
    if (e instanceof ModuleError || e instanceof UsageError) return c.json({ error: e.message }, 400);
    if (e instanceof CrvmError) return c.json({ error: e.message }, 409);
    opts.report?.(`internal error on ${c.req.method} ${c.req.path}: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
    return c.json({ error: "internal error" }, 500);
  });
  app.notFound((c) => c.json({ error: `no route ${c.req.method} ${c.req.path}` }, 404));

  app.get("/v1/health", (c) => c.json({ ok: true, version: CRVM_VERSION, runtime: `${daemon.host.runtime.name} ${daemon.host.runtime.version}` }));

  const denied = (message: string) => ({ message: { error: message } });
  app.use("/v1/*", async (c, next) => {
    daemon.metrics.requests++;
    await next();
  });
  app.use(
    "/v1/*",
    bearerAuth({
      token: opts.token,
      noAuthenticationHeader: denied("missing Authorization: Bearer <token>"),
      // Another scheme, or no token after "Bearer", carries no credentials: a 401 like a missing
      // header (RFC 6750 section 3.1), not hono's default 400.
      invalidAuthenticationHeader: {
        message: (c: Context) => c.json({ error: "malformed Authorization header: expected Bearer <token>" }, 401),
        wwwAuthenticateHeader: 'Bearer realm=""',
      },
      invalidToken: denied("invalid token"),
    }),
  );
  const jsonLimit = bodyLimit({ maxSize: maxJson, onError: (c) => c.json({ error: `body larger than ${maxJson} bytes` }, 413) });

  app.get("/v1/metrics", (c) => {
    const containers: Record<string, number> = { running: 0, frozen: 0, exited: 0, checkpointed: 0 };
    let tasks = 0;
    for (const x of daemon.containers.values()) {
      containers[x.status] = (containers[x.status] ?? 0) + 1;
      tasks += x.tasks().filter((t) => t.state !== "zombie").length;
    }
    return c.text(daemon.metrics.render({ containers, tasks }), 200, { "Content-Type": "text/plain; version=0.0.4" });
  });

  app.get("/v1/containers", (c) => c.json({ containers: [...daemon.containers.values()].map(summary) }));

  app.post("/v1/containers", jsonLimit, async (c) => {
    const b = await jsonBody(c.req.raw, createSchema);
    const module = "path" in b.module ? { path: b.module.path } : { data: decodeBase64(b.module.base64), name: b.module.name };
    const created = await daemon.create({ ...b, module });
    return c.json(summary(created), 201);
  });

  app.get("/v1/containers/:name", (c) => {
    const x = daemon.get(c.req.param("name"));
    return c.json({ ...summary(x), tasks: x.tasks() });
  });

  app.get("/v1/containers/:name/tree", (c) => c.json({ tasks: daemon.get(c.req.param("name")).tasks() }));

  app.get("/v1/containers/:name/logs", (c) => {
    const x = daemon.get(c.req.param("name"));
    const from = Number(c.req.query("from") ?? 0);
    if (!Number.isSafeInteger(from) || from < 0) throw new ApiError(400, `bad "from": ${c.req.query("from")}`);
    const headers = { "Content-Type": "application/octet-stream", "X-Crvm-Log-Start": String(Math.max(from, x.log.start)) };
    if (c.req.query("follow") === undefined || c.req.query("follow") === "0") return c.body(x.log.read(from).data as Uint8Array<ArrayBuffer>, 200, headers);
    // Ends the follow when the client goes (the request's signal) or cancels the body: a return()
    // alone would wait behind a next() that waits for output a frozen container never writes.
    const stop = new AbortController();
    const gone = () => stop.abort();
    if (c.req.raw.signal.aborted) stop.abort();
    else c.req.raw.signal.addEventListener("abort", gone, { once: true });
    const it = x.log.follow(from, stop.signal);
    const stream = new ReadableStream<Uint8Array>({
      async pull(ctrl) {
        const r = await it.next();
        if (r.done) {
          c.req.raw.signal.removeEventListener("abort", gone);
          ctrl.close();
        } else ctrl.enqueue(r.value);
      },
      cancel: () => {
        c.req.raw.signal.removeEventListener("abort", gone);
        stop.abort();
        void it.return(undefined);
      },
    });
    return c.body(stream, 200, headers);
  });

  app.post("/v1/containers/:name/freeze", jsonLimit, async (c) => {
    const b = await jsonBody(c.req.raw, groupSchema);
    const x = daemon.get(c.req.param("name"));
    await x.freeze(groupOf(x, b.group));
    return c.json(summary(x));
  });

  app.post("/v1/containers/:name/thaw", jsonLimit, async (c) => {
    const b = await jsonBody(c.req.raw, groupSchema);
    const x = daemon.get(c.req.param("name"));
    await x.thaw(groupOf(x, b.group));
    return c.json(summary(x));
  });

  app.post("/v1/containers/:name/checkpoint", jsonLimit, async (c) => {
    const b = await jsonBody(c.req.raw, checkpointSchema);
    const stream = await daemon.checkpoint(c.req.param("name"), b);
    return c.body(stream, 200, { "Content-Type": "application/octet-stream" });
  });

  app.post("/v1/containers/:name/restore", async (c) => {
    const name = c.req.param("name");
    const frozen = c.req.query("frozen") === "1" || c.req.query("frozen") === "true";
    const image = await decodeSnapshotStream(bodyChunks(c.req.raw, maxImage), { name: `request body for ${name}` });
    if (image.meta.parent) throw new ApiError(422, "the image is incremental (it has a parent): send a full image");
    const x = await daemon.adopt(name, image, { frozen });
    return c.json(summary(x), 201);
  });

  app.post("/v1/containers/:name/kill", jsonLimit, async (c) => {
    const b = await jsonBody(c.req.raw, killSchema);
    await daemon.kill(c.req.param("name"), b.signal);
    return c.json(summary(daemon.get(c.req.param("name"))));
  });

  app.delete("/v1/containers/:name", async (c) => {
    await daemon.remove(c.req.param("name"));
    return c.body(null, 204);
  });

  migrationRoutes(app, daemon, { jsonLimit, maxImage });
  return app;
}

function groupOf(c: Container, group: string | undefined): string {
  const g = group ?? "/";
  if (!c.machine) throw new ApiError(409, `container "${c.name}" is not running (${c.status})`);
  if (!c.machine.vm.freezer.get(g)) throw new ApiError(404, `container "${c.name}" has no freezer group "${g}"`);
  return g;
}

function decodeBase64(s: string): Uint8Array {
  const bad = () => new ApiError(400, "bad request body: module.base64: not base64");
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(s)) throw bad();
  let bin: string;
  try {
    bin = atob(s);
  } catch {
    // Only the alphabet was checked: 4n+1 characters, or padding where it does not fit, still fail.
    throw bad();
  }
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
