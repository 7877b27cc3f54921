// Spawning the crvm CLI on each runtime, as a user would, for end-to-end tests.
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

export const ROOT = path.resolve(import.meta.dirname, "..");
export const GUESTS = path.join(ROOT, "guests", "build");
export type Runtime = "node" | "deno" | "bun";
export const RUNTIMES: Runtime[] = ["node", "deno", "bun"];

export interface Result {
  code: number;
  stdout: Buffer;
  stderr: string;
}

function command(rt: Runtime): string[] {
  const bin = (n: string) => path.join(ROOT, "node_modules", ".bin", n);
  switch (rt) {
    case "node":
      return [process.execPath, "--stack-size=4000", path.join(ROOT, "bin", "crvm.mjs")];
    case "deno":
      return [bin("deno"), "run", "--allow-all", "--quiet", "--v8-flags=--stack-size=4000", path.join(ROOT, "src", "cli", "main.ts")];
    case "bun":
      return [bin("bun"), path.join(ROOT, "src", "cli", "main.ts")];
  }
}

/** Runs `crvm ARGS...` on a runtime; resolves with exit code, stdout bytes and stderr text. */
export function crvm(rt: Runtime, args: string[], opts: { cwd?: string; input?: Buffer | string; env?: Record<string, string> } = {}): Promise<Result> {
  const [cmd, ...pre] = command(rt);
  return new Promise((resolve, reject) => {
    const child = spawn(cmd!, [...pre, ...args], {
      cwd: opts.cwd ?? ROOT,
      env: { ...process.env, NO_COLOR: "1", ...opts.env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (d: Buffer) => out.push(d));
    child.stderr.on("data", (d: Buffer) => err.push(d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString() }));
    child.stdin.end(opts.input ?? "");
  });
}

/** Starts `crvm ARGS...` and returns the child, for tests that signal it or read it as it goes. */
export function startCrvm(rt: Runtime, args: string[]): { child: ReturnType<typeof spawn>; stdout: () => string; stderr: () => string; done: Promise<number> } {
  const [cmd, ...pre] = command(rt);
  const child = spawn(cmd!, [...pre, ...args], { cwd: ROOT, env: { ...process.env, NO_COLOR: "1" }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "", err = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  const done = new Promise<number>((resolve) => child.on("close", (code) => resolve(code ?? -1)));
  return { child, stdout: () => out, stderr: () => err, done };
}

export function tmpDir(prefix = "crvm-test-"): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** All files under dir as { relative path: contents }. */
export function readTree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out[path.relative(dir, p)] = fs.readFileSync(p).toString("base64");
    }
  };
  walk(dir);
  return out;
}

export const guest = (name: string) => path.join(GUESTS, `${name}.wasm`);

/** A `crvm serve` started by a test (startServe). */
export interface Served {
  rt: Runtime;
  /** http://127.0.0.1:PORT */
  url: string;
  stateDir: string;
  tokenFile: string;
  /** CLI flags that point a client at it: --host URL --token-file FILE. */
  flags: string[];
  stderr(): string;
  /** SIGTERM and wait for the exit (the daemon stops cleanly). */
  stop(): Promise<number>;
  /** SIGKILL to its whole process group (Bun's relaunched child too), as a crash would. */
  crash(): Promise<void>;
}

const served = new Set<ReturnType<typeof spawn>>();
process.on("exit", () => {
  for (const c of served) {
    try {
      process.kill(-c.pid!, "SIGKILL");
    } catch { /* gone */ }
  }
});

/**
 * Starts `crvm serve --listen 127.0.0.1:0` on a runtime and resolves once it
 * listens (the port is read from its "listening on http://…" line).
 * `stateDir` defaults to a new temporary directory; `stateDir: null` leaves
 * --state-dir out (the daemon then uses $XDG_STATE_HOME/crvm: pass it in `env`).
 */
export function startServe(rt: Runtime, opts: { stateDir?: string | null; args?: string[]; env?: Record<string, string> } = {}): Promise<Served> {
  const stateDir = opts.stateDir === undefined ? tmpDir("crvm-serve-") : opts.stateDir;
  const [cmd, ...pre] = command(rt);
  const args = [...pre, "serve", "--listen", "127.0.0.1:0", ...(stateDir !== null ? ["--state-dir", stateDir] : []), ...(opts.args ?? [])];
  // Its own process group, so that a crash takes Bun's relaunched child with it.
  const child = spawn(cmd!, args, { cwd: ROOT, env: { ...process.env, NO_COLOR: "1", ...opts.env }, stdio: ["ignore", "ignore", "pipe"], detached: true });
  served.add(child);
  let err = "";
  const exited = new Promise<number>((resolve) => child.on("close", (code, signal) => {
    served.delete(child);
    resolve(code ?? (signal ? 128 : -1));
  }));
  const signalGroup = (sig: NodeJS.Signals) => {
    try {
      process.kill(-child.pid!, sig);
    } catch { /* already gone */ }
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      signalGroup("SIGKILL");
      reject(new Error(`crvm serve on ${rt} did not start within 60 s: ${err}`));
    }, 60_000);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`crvm serve on ${rt} exited with ${code} before listening: ${err}`));
    });
    let listening = false;
    child.stderr!.on("data", (d: Buffer) => {
      err += d.toString();
      const m = /listening on (http:\/\/[^;\s]+); state in ([^;]+); (?:new token written to|token from) (\S+)\n/.exec(err);
      if (!m || listening) return;
      listening = true;
      clearTimeout(timer);
      resolve({
        rt,
        url: m[1]!,
        stateDir: m[2]!,
        tokenFile: m[3]!,
        flags: ["--host", m[1]!, "--token-file", m[3]!],
        stderr: () => err,
        stop: () => {
          signalGroup("SIGTERM");
          return exited;
        },
        crash: async () => {
          signalGroup("SIGKILL");
          await exited;
        },
      });
    });
  });
}
