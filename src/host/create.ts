import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";
import { nodeFs } from "./fs.ts";
import { nodeStdio } from "./stdio.ts";
import type { Host, RuntimeInfo } from "./types.ts";

/** Which runtime is running this code. */
export function runtimeInfo(): RuntimeInfo {
  const g = globalThis as { Deno?: { version: { deno: string } }; Bun?: { version: string } };
  if (g.Deno) return { name: "deno", version: g.Deno.version.deno };
  if (g.Bun) return { name: "bun", version: g.Bun.version };
  return { name: "node", version: process.versions.node };
}

/** The host for the runtime this process runs on. */
export function createHost(): Host {
  return {
    runtime: runtimeInfo(),
    fs: nodeFs(),
    stdio: nodeStdio(),
    env: (name) => process.env[name],
    homeDir: () => os.homedir(),
    resolvePath: (p, base) => (base === undefined ? path.resolve(p) : path.resolve(base, p)),
    relativePath: (from, to) => path.relative(from, to),
    dirname: (p) => path.dirname(p),
    collectGarbage() {
      const g = globalThis as { gc?: () => void; Bun?: { gc(force: boolean): void } };
      if (g.Bun) g.Bun.gc(true);
      else g.gc?.();
    },
    machine: () => ({
      cpu: os.cpus()[0]?.model ?? "unknown",
      cores: os.cpus().length,
      memoryBytes: os.totalmem(),
      os: `${os.type()} ${os.release()} ${os.arch()}`,
    }),
    pid: () => process.pid,
    onSignal(signal, fn) {
      // Node does not stay alive for a signal listener alone: a timer keeps it waiting.
      const keepAlive = setInterval(() => {}, 2 ** 30);
      process.on(signal, fn);
      return () => {
        clearInterval(keepAlive);
        process.off(signal, fn);
      };
    },
  };
}
