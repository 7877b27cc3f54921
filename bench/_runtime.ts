// What every benchmark script needs to know about the runtime it runs on:
// its name for log lines, the engine under it, and whether a full garbage
// collection can be forced between measurements (Host.collectGarbage does it).
import process from "node:process";

export function runtimeLabel(): string {
  const g = globalThis as { Deno?: unknown; Bun?: unknown };
  return g.Deno ? "deno" : g.Bun ? "bun" : "node";
}

/** A progress line on stderr, tagged with the runtime. */
export const log = (msg: string) => void process.stderr.write(`[bench ${runtimeLabel()}] ${msg}\n`);

/** The JavaScript engine under the runtime (Bun's process.versions.v8 is a compatibility fiction). */
export function engine(): string {
  const v = process.versions as Record<string, string | undefined>;
  if ((globalThis as { Bun?: unknown }).Bun) return `JavaScriptCore (WebKit ${v.webkit ?? "?"})`;
  const deno = (globalThis as { Deno?: { version: { v8: string } } }).Deno;
  return `V8 ${deno ? deno.version.v8 : v.v8 ?? "?"}`;
}

/** Whether a full collection can be forced (Bun; Node and Deno with --expose-gc). */
export const canCollect = () => !!((globalThis as { gc?: unknown; Bun?: unknown }).gc ?? (globalThis as { Bun?: unknown }).Bun);
