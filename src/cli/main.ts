// The `crvm` command line. This entry may touch the runtime (process exit);
// everything else goes through the Host.
import { spawn } from "node:child_process";
import process from "node:process";
import { Command, CommanderError } from "commander";
import { CrvmError, UsageError } from "../errors.ts";
import { createHost, type Host } from "../host/mod.ts";
import { CRVM_VERSION } from "../checkpoint/dump.ts";
import { benchCommand } from "./bench.ts";
import { inspectCommand } from "./inspect.ts";
import { checkpointSpec, collect, parseCount, parseDir, parseEnv, parseMemorySize } from "./options.ts";
import { DEFAULT_MAX_TASKS } from "../sched/vm.ts";
import { restoreCommand } from "./restore.ts";
import { runCommand } from "./run.ts";
import { freezeCommand, killCommand, logsCommand, psCommand, rmCommand, treeCommand } from "./remote.ts";
import { checkpointCommand, migrateCommand, restoreRemote, runRemote } from "./transfer.ts";
import { parseDuration, serveCommand } from "./serve.ts";

type Opts = Record<string, unknown>;

/** The options of every command that talks to `crvm serve`. */
function clientOptions(cmd: Command, what = "the daemon's URL (default: $CRVM_HOST, else http://127.0.0.1:7070)", json = true): Command {
  cmd
    .option("--host <url>", what)
    .option("--token-file <file>", "the daemon's API token (default: $CRVM_TOKEN_FILE, else the local daemon's STATE/token)");
  return json ? cmd.option("--json", "print the API's JSON instead of text") : cmd;
}

const remote = (o: Opts) => ({ url: o.host as string | undefined, tokenFile: o.tokenFile as string | undefined, json: !!o.json });

/** `--signal 15`, `--signal TERM` or `--signal SIGTERM` (Linux numbers, as the VM uses). */
function parseSignal(spec: string): number {
  const names: Record<string, number> = { HUP: 1, INT: 2, QUIT: 3, KILL: 9, USR1: 10, USR2: 12, ALRM: 14, TERM: 15 };
  const n = /^\d+$/.test(spec) ? Number(spec) : names[spec.toUpperCase().replace(/^SIG/, "")];
  if (n === undefined || n < 1 || n > 64) throw new UsageError(`--signal "${spec}": expected a number from 1 to 64 or a name such as TERM or KILL`);
  return n;
}

/** Flags of `run`/`restore` that only make sense locally, or only with --host. */
function checkMode(cmd: string, o: Opts, localOnly: string[], remoteOnly: string[]): boolean {
  const isRemote = o.host !== undefined;
  const given = (flag: string) => {
    const key = flag.replace(/^--/, "").replace(/-(.)/g, (_, c: string) => c.toUpperCase());
    return o[key] !== undefined && o[key] !== false && !(Array.isArray(o[key]) && (o[key] as unknown[]).length === 0);
  };
  for (const f of isRemote ? localOnly : remoteOnly) {
    if (given(f)) throw new UsageError(isRemote ? `${cmd} --host: ${f} is for local ${cmd}s only` : `${cmd}: ${f} needs --host URL`);
  }
  return isRemote;
}

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

  clientOptions(checkpointOptions(
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
      .option("--name <name>", "with --host: the container's name (default: the module's base name)")
      .option("-d, --detach", "with --host: print the name and return instead of following the log")
      .passThroughOptions(),
  ), "run in the crvm serve daemon at URL instead of in this process").action(async (module: string, args: string[], o: Opts) => {
    const localOnly = ["--checkpoint-after", "--checkpoint-after-yields", "--checkpoint-file", "--leave-running", "--parent", "--compress", "--stats"];
    if (checkMode("run", o, localOnly, ["--name", "--detach", "--token-file", "--json"])) {
      return setCode(await runRemote(host, {
        ...remote(o),
        module,
        args,
        name: o.name as string | undefined,
        detach: !!o.detach,
        dirs: o.dir as never,
        tmpfs: o.tmpfs as string[],
        env: o.env as string[],
        cgroupfs: o.cgroupfs !== false,
        maxTasks: o.maxTasks === undefined ? undefined : Math.max(1, parseCount("--max-tasks", o.maxTasks as string)),
        maxMemoryPages: o.maxMemory === undefined ? undefined : parseMemorySize(o.maxMemory as string),
      }));
    }
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

  clientOptions(checkpointOptions(
    p.command("restore")
      .description("continue a checkpointed program from a snapshot")
      .argument("<snapshot>", "snapshot file, or - to read it from stdin as it arrives")
      .option("--dir <HOST[::GUEST]>", "use HOST for the guest directory GUEST instead of the recorded one", collect(parseDir), [])
      .option("--frozen", "restore every task, then leave them frozen until this process gets SIGCONT (with --host: until thawed)")
      .option("--name <name>", "with --host: the container's name (default: the file's base name without extension)"),
  ), "restore into the crvm serve daemon at URL instead of in this process").action(async (snapshot: string, o: Opts) => {
    const localOnly = ["--dir", "--checkpoint-after", "--checkpoint-after-yields", "--checkpoint-file", "--leave-running", "--parent", "--compress", "--stats"];
    if (checkMode("restore", o, localOnly, ["--name", "--token-file", "--json"])) {
      return setCode(await restoreRemote(host, snapshot, { ...remote(o), name: o.name as string | undefined, frozen: !!o.frozen }));
    }
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

  clientOptions(p.command("ps").description("list the daemon's containers"))
    .action(async (o: Opts) => setCode(await psCommand(host, remote(o))));

  clientOptions(p.command("tree").description("show a container's task tree: state, freezer group and the call each task is in").argument("<name>"))
    .action(async (name: string, o: Opts) => setCode(await treeCommand(host, name, remote(o))));

  // No --json: a log is the guest's bytes, printed as they are.
  clientOptions(p.command("logs").description("print a container's output (stdout and stderr, in order)").argument("<name>"), undefined, false)
    .option("-f, --follow", "keep printing new output until the container ends")
    .action(async (name: string, o: Opts) => setCode(await logsCommand(host, name, { ...remote(o), follow: !!o.follow })));

  for (const verb of ["freeze", "thaw"] as const) {
    clientOptions(p.command(verb).description(`${verb} a container, or one freezer group of it`).argument("<name[/group]>"))
      .action(async (target: string, o: Opts) => setCode(await freezeCommand(host, verb, target, remote(o))));
  }

  clientOptions(p.command("checkpoint").description("checkpoint a container into a snapshot file (it stops unless --leave-running)").argument("<name>"))
    .requiredOption("-o, --output <file>", "where to write the image (atomically; - for stdout)")
    .option("--leave-running", "let it continue after the checkpoint")
    .option("--pid <n>", "only task N and its subtree (frozen beforehand, e.g. with crvm freeze NAME/GROUP)")
    .action(async (name: string, o: Opts) =>
      setCode(await checkpointCommand(host, name, {
        ...remote(o),
        output: o.output as string,
        leaveRunning: !!o.leaveRunning,
        pid: o.pid === undefined ? undefined : Math.max(1, parseCount("--pid", o.pid as string)),
      }))
    );

  clientOptions(p.command("kill").description("end every task of a container").argument("<name>"))
    .option("--signal <n>", "the signal (number or name, default KILL)")
    .action(async (name: string, o: Opts) =>
      setCode(await killCommand(host, name, { ...remote(o), signal: o.signal === undefined ? undefined : parseSignal(o.signal as string) }))
    );

  clientOptions(p.command("rm").description("remove a container (killed first if it runs) and its state").argument("<name>"))
    .action(async (name: string, o: Opts) => setCode(await rmCommand(host, name, remote(o))));

  clientOptions(p.command("migrate").description("move a container to another crvm serve daemon").argument("<name>"), "the source daemon's URL (default: $CRVM_HOST, else http://127.0.0.1:7070)")
    .requiredOption("--to <url>", "the target daemon's URL")
    .option("--live", "pre-copy memory while it runs; freeze only for the last delta")
    .option("--to-token-file <file>", "the target daemon's token (default: the same token as the source's)")
    .action(async (name: string, o: Opts) =>
      setCode(await migrateCommand(host, name, { ...remote(o), to: o.to as string, live: !!o.live, toTokenFile: o.toTokenFile as string | undefined }))
    );

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
