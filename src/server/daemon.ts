// The daemon: named containers, each a Machine with its own log, kept in a
// state directory so that a restarted daemon restores every container from
// its latest snapshot. With `checkpointEvery`, running containers are
// checkpointed periodically, each image incremental against the previous one.
import { readImage } from "../api/images.ts";
import { type DirSpec, Machine, type MachineOptions } from "../api/machine.ts";
import { readModuleFile } from "../api/modules.ts";
import type { Host } from "../host/mod.ts";
import type { SnapshotImage } from "../snapshot/mod.ts";
import { Container, containerHost } from "./container.ts";
import { ApiError } from "./errors.ts";
import { DEFAULT_LOG_CAP, LogBuffer } from "./logs.ts";
import { Metrics } from "./metrics.ts";
import { type FetchLike, Migrations } from "./migration/target.ts";
import { type ContainerDef, StateDir } from "./state_dir.ts";

export interface DaemonOptions {
  host: Host;
  /** Where definitions, modules, snapshots and the token live. */
  stateDir: string;
  /** Checkpoint every running container this often (ms). */
  checkpointEvery?: number;
  /** Cap of each container's log in bytes. */
  logCap?: number;
  /** Where the daemon reports what it does (a line at a time); default: nowhere. */
  report?: (line: string) => void;
  /** Outgoing HTTP of migrations (tests pass another app's `request`); default: the global fetch. */
  fetch?: FetchLike;
  /** An incoming migration without a request for this long, and not acknowledged, is dropped (ms; default 60 s). */
  migrationTimeout?: number;
}

export interface CreateRequest extends Omit<MachineOptions, "host" | "name"> {
  name: string;
  /** A module path on the daemon's host, or the module's bytes. */
  module: { path: string } | { data: Uint8Array; name?: string };
}

/** Full images this often in a chain of periodic ones (the rest are incremental). */
const CHAIN_MAX = 8;
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

export class Daemon {
  readonly containers = new Map<string, Container>();
  readonly metrics = new Metrics();
  readonly state: StateDir;
  #timer: ReturnType<typeof setInterval> | null = null;
  #periodic: Promise<void> | null = null;
  /** Migrations in both directions (src/server/migration/: source.ts, target.ts). */
  readonly migrations: Migrations;

  private constructor(readonly host: Host, private readonly opts: DaemonOptions) {
    this.state = new StateDir(host, opts.stateDir);
    this.migrations = new Migrations(opts.fetch, opts.migrationTimeout ?? 60_000, (line) => this.#report(line));
  }

  /** Opens the state directory and restores every container that was running from its latest snapshot. */
  static async open(opts: DaemonOptions): Promise<Daemon> {
    const d = new Daemon(opts.host, opts);
    for (const name of d.state.names()) await d.#recover(name);
    if (opts.checkpointEvery) d.#timer = setInterval(() => void d.checkpointAll(), opts.checkpointEvery);
    return d;
  }

  async #recover(name: string): Promise<void> {
    let def: ContainerDef | null;
    try {
      def = this.state.loadDef(name);
    } catch (e) {
      return this.#report(`cannot read container ${name}: ${(e as Error).message}`);
    }
    if (!def) return;
    const latest = this.state.latest(name);
    const final = `${this.state.dir(name)}/final.log`;
    // A running container continues from its snapshot's log; an ended one shows its whole log.
    const ended = def.state !== "running" && this.host.fs.exists(final);
    const log = new LogBuffer(this.opts.logCap ?? DEFAULT_LOG_CAP, ended ? 0 : latest?.logStart ?? 0);
    if (ended) log.append(this.host.fs.readFile(final));
    else if (latest) log.append(this.state.readLog(name, latest));
    const c = new Container(def, log, (x) => this.#exited(x));
    this.containers.set(name, c);
    if (def.state !== "running") return log.close();
    try {
      if (latest) {
        const { image } = await readImage(this.host, `${this.state.dir(name)}/${latest.image}`);
        c.start(await Machine.restore(image, { host: containerHost(this.host, log), name: `${name}/${latest.image}` }));
        this.#report(`restored ${name} from ${latest.image}`);
      } else {
        c.start(await this.#fresh(def, this.state.loadModule(name), log));
        this.#report(`restarted ${name} from the beginning (no snapshot yet)`);
      }
    } catch (e) {
      log.append(new TextEncoder().encode(`crvm: could not restore after a restart: ${(e as Error).message}\n`));
      c.def = { ...def, state: "exited", exitCode: null };
      log.close();
      this.#report(`cannot restore ${name}: ${(e as Error).message}`);
    }
  }

  #fresh(def: ContainerDef, module: Uint8Array, log: LogBuffer): Promise<Machine> {
    return Machine.create(module, {
      host: containerHost(this.host, log),
      name: def.moduleName,
      args: def.args,
      env: def.env,
      dirs: def.dirs,
      tmpfs: def.tmpfs,
      cgroupfs: def.cgroupfs,
      maxTasks: def.maxTasks,
      maxMemoryPages: def.maxMemoryPages,
    });
  }

  /** Creates a container and starts it. */
  async create(req: CreateRequest): Promise<Container> {
    this.#checkNewName(req.name);
    const bytes = "path" in req.module ? await readModuleFile(this.host, req.module.path) : req.module.data;
    const def: ContainerDef = {
      name: req.name,
      moduleName: "path" in req.module ? req.module.path : req.module.name ?? `${req.name}.wasm`,
      args: req.args ?? [],
      env: req.env ?? [],
      dirs: req.dirs ?? [],
      tmpfs: req.tmpfs ?? [],
      cgroupfs: req.cgroupfs ?? true,
      ...(req.maxTasks !== undefined ? { maxTasks: req.maxTasks } : {}),
      ...(req.maxMemoryPages !== undefined ? { maxMemoryPages: req.maxMemoryPages } : {}),
      createdAt: new Date().toISOString(),
      state: "running",
      exitCode: null,
    };
    const log = new LogBuffer(this.opts.logCap ?? DEFAULT_LOG_CAP);
    const machine = await this.#fresh(def, bytes, log);
    this.state.saveModule(def.name, bytes);
    this.state.saveDef(def);
    const c = new Container(def, log, (x) => this.#exited(x));
    this.containers.set(def.name, c);
    c.start(machine);
    this.metrics.created++;
    return c;
  }

  /**
   * Makes a container from an image (a restore or an incoming migration); it
   * runs unless `frozen`. An `incoming` one is not written to the state
   * directory until the migration commits (`persist`): a daemon that stops
   * before that forgets it.
   */
  async adopt(name: string, image: SnapshotImage, opts: { frozen?: boolean; logStart?: number; dirs?: DirSpec[]; incoming?: boolean } = {}): Promise<Container> {
    this.#checkNewName(name);
    const log = new LogBuffer(this.opts.logCap ?? DEFAULT_LOG_CAP, opts.logStart ?? 0);
    const machine = await Machine.restore(image, { host: containerHost(this.host, log), name, frozen: opts.frozen, dirs: opts.dirs });
    const mod = image.modules[0]!;
    const def: ContainerDef = {
      name,
      moduleName: mod.name,
      args: machine.vm.tasks.get(machine.vm.initPid)?.args.slice(1) ?? [],
      env: [],
      dirs: opts.dirs ?? [],
      tmpfs: [],
      cgroupfs: true,
      createdAt: new Date().toISOString(),
      state: "running",
      exitCode: null,
    };
    const c = new Container(def, log, (x) => this.#exited(x));
    if (!opts.incoming) this.persist(c, mod.source);
    this.containers.set(name, c);
    c.start(machine);
    // A first snapshot at once: after a restart the daemon resumes it from here, not from the module's start.
    if (!opts.incoming) await this.snapshot(c);
    this.metrics.restored++;
    return c;
  }

  /** Writes a container's module and definition to the state directory. */
  persist(c: Container, module: Uint8Array): void {
    this.state.saveModule(c.name, module);
    this.state.saveDef(c.def);
  }

  get(name: string): Container {
    const c = this.containers.get(name);
    if (!c) throw new ApiError(404, `no container "${name}"`);
    return c;
  }

  /**
   * Freezes the container (or checks that task `pid`'s subtree is frozen),
   * and returns its image as a stream; afterwards it is thawed
   * (`leaveRunning`) or stopped. If the stream fails the container is thawed.
   */
  async checkpoint(name: string, opts: { pid?: number; leaveRunning?: boolean } = {}): Promise<ReadableStream<Uint8Array>> {
    const c = this.get(name);
    const m = c.machine;
    if (!m) throw new ApiError(409, `container "${name}" is not running (${c.status})`);
    if (opts.pid !== undefined && !m.vm.tasks.has(opts.pid)) throw new ApiError(404, `container "${name}" has no task ${opts.pid}`);
    const wasFrozen = m.vm.freezing;
    if (opts.pid === undefined) await c.freeze("/");
    const t0 = performance.now();
    const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
    let written;
    try {
      written = m.checkpoint(writable, opts.pid !== undefined ? { pid: opts.pid } : {});
    } catch (e) {
      if (opts.pid === undefined && !wasFrozen) await c.thaw("/");
      throw new ApiError(409, (e as Error).message);
    }
    written.then(async (stats) => {
      c.checkpoints++;
      this.metrics.checkpoint(stats.bytes, performance.now() - t0);
      if (opts.pid !== undefined) return;
      if (opts.leaveRunning) {
        if (!wasFrozen) await c.thaw("/");
      } else {
        await c.detach("checkpointed");
        this.state.saveDef(c.def);
      }
    }, async () => {
      if (opts.pid === undefined && !wasFrozen && c.machine) await c.thaw("/");
    });
    return readable;
  }

  /** Periodic checkpoints of every running container (incremental against the previous one). */
  checkpointAll(): Promise<void> {
    this.#periodic ??= (async () => {
      for (const c of this.containers.values()) {
        if (c.status !== "running") continue;
        try {
          await this.snapshot(c);
        } catch (e) {
          this.#report(`checkpoint of ${c.name} failed: ${(e as Error).message}`);
        }
      }
    })().finally(() => (this.#periodic = null));
    return this.#periodic;
  }

  /** Writes the container's snapshot into the state directory. */
  async snapshot(c: Container): Promise<void> {
    const m = c.machine;
    if (!m || c.locked) return;
    const t0 = performance.now();
    // A container a client froze stays frozen: it is checkpointed as it is.
    const wasFrozen = m.vm.freezing;
    if (!wasFrozen) await c.freeze("/");
    const base = c.base && c.base.latest.chain.length < CHAIN_MAX ? c.base : null;
    const chunks: Uint8Array[] = [];
    let stats, log;
    try {
      stats = await m.checkpoint((chunk) => chunks.push(chunk.slice()), base ? { parent: base } : {});
      // The log as the image has it: what the tasks print after the thaw belongs to the next image.
      log = c.log.read(0);
    } finally {
      if (!wasFrozen) await c.thaw("/");
    }
    const seq = (c.base?.latest.seq ?? this.state.latest(c.name)?.seq ?? 0) + 1;
    const latest = this.state.saveSnapshot(c.name, chunks, log, base ? base.latest.chain : [], seq);
    c.base = {
      latest,
      ref: { id: stats.id, digest: stats.digest, path: latest.image.slice("images/".length) },
      pages: new Set([...(base?.pages ?? []), ...stats.storedPages]),
      modules: new Set(m.vm.tasks.size ? [...m.vm.tasks.values()].map((t) => t.module.sourceHash) : []),
    };
    c.checkpoints++;
    this.metrics.checkpoint(stats.bytes, performance.now() - t0);
  }

  async kill(name: string, signal = 9): Promise<void> {
    await this.get(name).kill(signal);
  }

  /** Kills (if needed) and forgets a container, with its state (`key`: the holder of its lock). */
  async remove(name: string, key?: symbol): Promise<void> {
    const c = this.get(name);
    if (c.machine) await c.detach("exited", key);
    this.containers.delete(name);
    this.state.remove(name);
  }

  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.migrations.close();
    await this.#periodic;
  }

  #exited(c: Container): void {
    this.state.saveDef(c.def);
    this.host.fs.writeFileAtomic(`${this.state.dir(c.name)}/final.log`, c.log.read(0).data);
  }

  #checkNewName(name: string): void {
    if (typeof name !== "string" || !NAME.test(name)) throw new ApiError(400, `bad container name ${JSON.stringify(name)}: letters, digits, "_", "." and "-", at most 63`);
    if (this.containers.has(name)) throw new ApiError(409, `container "${name}" exists`);
  }

  #report(line: string): void {
    this.opts.report?.(line);
  }
}

