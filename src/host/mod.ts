/**
 * The host: everything crvm needs from the JavaScript runtime it runs on.
 * Only this folder (and the CLI entry) touches `Deno.*`, `Bun.*` or `node:*`;
 * the core receives a `Host` and calls plain functions on it.
 *
 * @example
 * const host = await createHost();
 * host.stdio.write(1, new TextEncoder().encode("hi\n"));
 */
export type { Host, HostFs, HostStat, HostDirent, HostStdio, RuntimeInfo } from "./types.ts";
export { createHost } from "./create.ts";
export { HostFsError } from "./types.ts";
export { progressBar, type Progress } from "./progress.ts";
export { type FetchHandler, type HttpServer, serveHttp } from "./serve.ts";
