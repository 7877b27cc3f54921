// The `crvm` command line. This entry may touch the runtime (process exit);
// everything else goes through the Host.
import { spawn } from "node:child_process";
import process from "node:process";
import { Command, CommanderError } from "commander";
import { CrvmError } from "../errors.ts";
import { createHost, type Host } from "../host/mod.ts";
import { CRVM_VERSION } from "../checkpoint/dump.ts";
import { benchCommand } from "./bench.ts";
import { inspectCommand } from "./inspect.ts";
import { checkpointSpec, collect, parseCount, parseDir, parseEnv, parseMemorySize } from "./options.ts";
import { DEFAULT_MAX_TASKS } from "../sched/vm.ts";
import { restoreCommand } from "./restore.ts";
import { runCommand } from "./run.ts";
import { parseDuration, serveCommand } from "./serve.ts";

type Opts = Record<string, unknown>;

function checkpointOptions(cmd: Command): Command {
  return cmd
    .option("--checkpoint-after <ms>", "freeze at the next yield point after MS milliseconds and write a snapshot")
    .option("--checkpoint-after-yields <n>", "freeze at the N-th yield point instead (deterministic; for tests)")
    .option("--checkpoint-file <path>", "where to write the snapshot (atomically)")
    .option("--leave-running", "continue after writing the snapshot instead of stopping")
    .option("--parent <snapshot>", "write an incremental snapshot: only pages that PARENT's chain does not have")
    .option("--compress", "gzip the snapshot (for networks and long-term storage)")
    .option("--stats", "print run statistics (yield points passed) to stderr at the end");
}

function program(host: Host, setCode: (n: number) => void): Command {
  const p = new Command("crvm")
    .description("Run WebAssembly WASI programs as checkpointable task trees")
    .version(CRVM_VERSION)
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({ outputError: (s, write) => write(`crvm: ${s.replace(/^error: /, "").trim()}\n`) })
    .enablePositionalOptions();

  checkpointOptions(
    p.command("run")
      .description("run a WASI command module (.wasm or .wat)")
      .argument("<module>", "MODULE.wasm or MODULE.wat")
      .argument("[args...]", "arguments for the guest")
      .option("--dir <HOST[::GUEST]>", "preopen a host directory (read-write), optionally under another guest path", collect(parseDir), [])
      .option("--tmpfs <GUEST>", "preopen an empty in-memory directory at GUEST", collect((s: string) => s), [])
      .option("--env <NAME=VALUE>", "set an environment variable for the guest", collect(parseEnv), [])
      .option("--max-memory <size>", "most memory one task may have, e.g. 64M or 2G (default 1G); memory.grow beyond it fails in the guest")
      .option("--max-tasks <n>", `most tasks (zombies included) the VM holds; fork and spawn beyond it get EAGAIN (default ${DEFAULT_MAX_TASKS})`)
      .option("--no-cgroupfs", "do not preopen the freezer's cgroup filesystem at /sys/fs/cgroup")
      .passThroughOptions(),
  ).action(async (module: string, args: string[], o: Opts) => {
    setCode(await runCommand(host, {
      module,
      args,
      dirs: o.dir as never,
      tmpfs: o.tmpfs as string[],
      env: o.env as string[],
      cgroupfs: o.cgroupfs !== false,
      checkpoint: checkpointSpec(o),
      stats: !!o.stats,
      maxTasks: o.maxTasks === undefined ? undefined : Math.max(1, parseCount("--max-tasks", o.maxTasks as string)),
      maxMemoryPages: parseMemorySize((o.maxMemory as string | undefined) ?? "1G"),
    }));
  });

  checkpointOptions(
    p.command("restore")
      .description("continue a checkpointed program from a snapshot")
      .argument("<snapshot>", "snapshot file, or - to read it from stdin as it arrives")
      .option("--dir <HOST[::GUEST]>", "use HOST for the guest directory GUEST instead of the recorded one", collect(parseDir), [])
      .option("--frozen", "restore every task, then leave them frozen until this process gets SIGCONT"),
  ).action(async (snapshot: string, o: Opts) => {
    setCode(await restoreCommand(host, { snapshot, dirs: o.dir as never, checkpoint: checkpointSpec(o), stats: !!o.stats, frozen: !!o.frozen }));
  });

  p.command("inspect")
    .description("show what a snapshot holds; --verify checks it; --encode turns --json output back into an image")
    .argument("<input>", "snapshot file (with --encode: a JSON file, - for stdin)")
    .option("--json", "print every record as JSON (pages as hashes)")
    .option("--with-pages", "with --json: include page contents (base64)")
    .option("--verify", "check every record, page and the parent chain; exit 1 naming the first bad record")
    .option("--encode", "read JSON from `crvm inspect --json --with-pages` and write the image")
    .option("-o, --output <file>", "with --encode: write the image here (default: stdout)")
    .action(async (input: string, o: Opts) => {
      setCode(await inspectCommand(host, {
        input,
        json: !!o.json,
        withPages: !!o.withPages,
        verify: !!o.verify,
        encode: !!o.encode,
        output: o.output as string | undefined,
      }));
    });

  p.command("serve")
    .description("run the daemon: containers, their snapshots and the HTTP API (docs/api.md)")
    .option("--listen <host:port>", "address to listen on", "127.0.0.1:7070")
    .option("--state-dir <dir>", "where containers, snapshots and the token live (default: $XDG_STATE_HOME/crvm or ~/.local/state/crvm)")
    .option("--token-file <file>", "read the API token from this file (default: STATE/token, made at first start)")
    .option("--checkpoint-every <duration>", "checkpoint running containers this often (e.g. 30s), incrementally")
    .action(async (o: Opts) => {
      setCode(await serveCommand(host, {
        listen: o.listen as string,
        stateDir: o.stateDir as string | undefined,
        tokenFile: o.tokenFile as string | undefined,
        checkpointEvery: o.checkpointEvery === undefined ? undefined : parseDuration("--checkpoint-every", o.checkpointEvery as string),
      }));
    });

  p.command("bench")
    .description("measure checkpoint and restore against a plain memory copy on this runtime")
    .option("--quick", "a fast smoke run (smaller memories, 3 repetitions)")
    .option("--json <file>", "also write every figure and sample as JSON")
    .option("--dir <dir>", "where to write the image files (default: $TMPDIR or /tmp)")
    .action(async (o: Opts) => {
      setCode(await benchCommand(host, { quick: !!o.quick, json: o.json as string | undefined, dir: o.dir as string | undefined }));
    });
  return p;
}

async function main(argv: string[]): Promise<number> {
  const host = createHost();
  let code = 0;
  try {
    await program(host, (n) => (code = n)).parseAsync(argv, { from: "user" });
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    if (e instanceof CrvmError) {
      process.stderr.write(`crvm: ${e.message}\n`);
      return 1;
    }
    process.stderr.write(`crvm: internal error: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
    return 70;
  }
  return code;
}

/**
 * Bun (JavaScriptCore) reads its stack limit from the environment at start:
 * Asyncify-instrumented guests need more than the default, so the CLI
 * re-launches itself once with a larger limit (Node and Deno get theirs from
 * --stack-size in bin/crvm.mjs and deno.json). SIGCONT and SIGTERM sent to
 * the outer process are passed on (`restore --frozen` waits for SIGCONT).
 */
async function relaunchBunWithLargerStack(): Promise<number | null> {
  const bun = "Bun" in globalThis;
  if (!bun || process.env.BUN_JSC_maxPerThreadStackUsage) return null;
  const child = spawn(process.execPath, process.argv.slice(1), {
    stdio: "inherit",
    env: { ...process.env, BUN_JSC_maxPerThreadStackUsage: String(7 * 1024 * 1024) },
  });
  for (const sig of ["SIGCONT", "SIGTERM"] as const) process.on(sig, () => child.kill(sig));
  return await new Promise((resolve) => child.on("exit", (code, signal) => resolve(code ?? (signal === "SIGTERM" ? 143 : 1))));
}

process.exit(await relaunchBunWithLargerStack() ?? await main(process.argv.slice(2)));
