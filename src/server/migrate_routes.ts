// Migration: the target's routes (/v1/migrations/...). Filled in by the migration work.
import type { Hono, MiddlewareHandler } from "hono";
import type { Daemon } from "./daemon.ts";

export function migrationRoutes(_app: Hono, _daemon: Daemon, _opts: { jsonLimit: MiddlewareHandler; maxImage: number }): void {}
