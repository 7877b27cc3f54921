// Migration routes (the protocol is in source.ts): the source's
// POST /v1/containers/:name/migrate, and the target's /v1/migrations/...
import type { Hono, MiddlewareHandler } from "hono";
import { z } from "zod";
import { bodyChunks, jsonBody, summary } from "../http.ts";
import type { Daemon } from "../daemon.ts";
import { ApiError } from "../errors.ts";
import { migrateOut } from "./source.ts";
import { abortIncoming, beginIncoming, commitIncoming, receiveImage, receivePages } from "./target.ts";

const hex32 = z.string().regex(/^[0-9a-f]{32}$/, "expected 32 lower-case hex digits");
const migrateSchema = z.strictObject({
  to: z.string().max(4096).regex(/^https?:\/\/[^\s/]+/, "expected an http:// or https:// URL"),
  token: z.string().max(4096),
  live: z.boolean().optional(),
  maxRounds: z.number().int().min(1).max(100).optional(),
});
const beginSchema = z.strictObject({
  id: hex32,
  name: z.string().max(63),
  modules: z.array(z.string().regex(/^[0-9a-f]{64}$/, "expected a sha256 in hex")).max(4096),
  pages: z.array(hex32).max(1 << 22),
});
const commitSchema = z.strictObject({ thaw: z.boolean().optional() });

export function migrationRoutes(app: Hono, daemon: Daemon, opts: { jsonLimit: MiddlewareHandler; maxImage: number }): void {
  const all = daemon.migrations;

  // The source: moves the container to another daemon; answers with the report.
  app.post("/v1/containers/:name/migrate", opts.jsonLimit, async (c) => {
    const b = await jsonBody(c.req.raw, migrateSchema);
    return c.json(await migrateOut(daemon, c.req.param("name"), b));
  });

  // The target.
  app.get("/v1/migrations", (c) => c.json({ migrations: [...all.incoming.values()].map((m) => m.info()) }));

  app.post("/v1/migrations", opts.jsonLimit, async (c) => {
    const b = await jsonBody(c.req.raw, beginSchema);
    const have = await beginIncoming(daemon, b);
    return c.json({ id: b.id, have }, 201);
  });

  app.get("/v1/migrations/:id", (c) => c.json(all.get(c.req.param("id")).info()));

  app.post("/v1/migrations/:id/pages", async (c) => {
    const m = all.get(c.req.param("id"));
    return c.json(await receivePages(all, m, bodyChunks(c.req.raw, opts.maxImage), opts.maxImage));
  });

  app.post("/v1/migrations/:id/image", async (c) => {
    const m = all.get(c.req.param("id"));
    const logStart = Number(c.req.query("logStart") ?? 0);
    if (!Number.isSafeInteger(logStart) || logStart < 0) throw new ApiError(400, `bad "logStart": ${c.req.query("logStart")}`);
    const x = await receiveImage(daemon, m, bodyChunks(c.req.raw, opts.maxImage), logStart);
    return c.json({ acknowledged: true, id: m.id, container: summary(x) });
  });

  app.post("/v1/migrations/:id/commit", opts.jsonLimit, async (c) => {
    const b = await jsonBody(c.req.raw, commitSchema);
    const { container, thawMs } = await commitIncoming(daemon, all.get(c.req.param("id")), b.thaw ?? true);
    return c.json({ committed: true, thawMs, container: summary(container) });
  });

  app.post("/v1/migrations/:id/abort", async (c) => {
    await abortIncoming(daemon, all.get(c.req.param("id")));
    return c.json({ aborted: true });
  });
}
