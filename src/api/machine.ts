// The embedding API: a Machine is one VM with everything wired (module
// loading for exec/spawn, the guest checkpointer, preopens, the cgroup
// filesystem), and the operations a host program needs: run, freeze, thaw,
// checkpoint to a stream, restore. The CLI and the server are built on it.
import { dumpVm, type CheckpointStats, type DumpScope } from "../checkpoint/dump.ts";
import { GuestCheckpoints } from "../checkpoint/guest_call.ts";
import { restoreVm } from "../checkpoint/restore.ts";
import { CrvmError } from "../errors.ts";
import { CgroupPreopenFd } from "../freezer/cgroupfs.ts";
import type { FreezerGroup } from "../freezer/freezer.ts";
import { createHost, type Host } from "../host/mod.ts";
import { DEFAULT_MAX_MEMORY_PAGES, type RunOutcome, Vm } from "../sched/vm.ts";
import { Hashing, type ParentRef, type SnapshotImage } from "../snapshot/mod.ts";
import { FdTable } from "../wasi/fd_table.ts";
import { buildPreopens, stdioFds } from "../wasi/preopens.ts";
import { loadModule, readModuleFile } from "./modules.ts";

/** A host directory preopened for the guest (`--dir HOST::GUEST`). */
export interface DirSpec {
  host: string;
  guest: string;
}

export interface MachineOptions {
  /** Defaults to the runtime crvm runs on (`createHost()`). */
  host?: Host;
  /** Name of the module for messages and argv[0] (a path: the module is read from it). */
  name?: string;
  /** Arguments after argv[0]. */
  args?: string[];
  /** NAME=VALUE strings. */
  env?: string[];
  dirs?: DirSpec[];
  /** Guest paths of empty in-memory directories. */
  tmpfs?: string[];
  /** Preopen /sys/fs/cgroup (default true). */
  cgroupfs?: boolean;
  maxTasks?: number;
  /** Most memory one task may have, in 64 KiB pages (default 1 GiB). */
  maxMemoryPages?: number;
}

export interface RestoreMachineOptions {
  host?: Host;
  /** Name of the image for messages. */
  name?: string;
  /** Host directories to use for guest preopen paths instead of the recorded ones. */
  dirs?: DirSpec[];
  /** Keep every task frozen until `thaw()`. */
  frozen?: boolean;
}

/** One task as `tasks()` reports it. */
export interface TaskInfo {
  pid: number;
  ppid: number;
  /** "running" (may run), "blocked" (waits in a call), "frozen", "stopped" (SIGSTOP) or "zombie". */
  state: "running" | "blocked" | "frozen" | "stopped" | "zombie";
  group: string;
  /** The call it is suspended in, e.g. "wasix_32v1.proc_join". */
  call: string | null;
  args: string[];
}

export interface CheckpointOptions {
  /** Only this task and its descendants (default: the whole VM). They must be frozen. */
  pid?: number;
  /** Write an incremental image: pages and modules the parent chain holds are not written again. */
  parent?: { ref: ParentRef; pages: ReadonlySet<string>; modules: ReadonlySet<string> };
}

/** Where an image goes: a function called with each chunk, or a WritableStream. */
export type ImageSink = ((chunk: Uint8Array) => void) | WritableStream<Uint8Array>;

/**
 * A crvm VM for embedding.
 *
 * @example
 * const m = await Machine.create("guests/build/hello.wasm", { args: ["world"] });
 * const out = await m.run();                      // { kind: "exited", code: 0 }
 *
 * @example External checkpoint of a running machine
 * const running = m.run();
 * await m.freeze();                               // every task stopped at a yield point
 * await m.checkpoint(file.writable);              // the image, streamed
 * await m.thaw();
 */
export class Machine {
  private constructor(readonly vm: Vm, readonly host: Host, private readonly hashing: Hashing) {}

  /** Loads (instruments, compiles) a module and makes its VM, with pid 1 ready to run. */
  static async create(module: Uint8Array | string, opts: MachineOptions = {}): Promise<Machine> {
    const host = opts.host ?? createHost();
    const name = opts.name ?? (typeof module === "string" ? module : "module.wasm");
    const source = typeof module === "string" ? await readModuleFile(host, module) : module;
    const maxMemoryPages = opts.maxMemoryPages ?? DEFAULT_MAX_MEMORY_PAGES;
    const { module: mod, compiled } = await loadModule(host, source, name, maxMemoryPages);
    const vm = new Vm(host);
    vm.maxMemoryPages = maxMemoryPages;
    if (opts.maxTasks !== undefined) vm.maxTasks = opts.maxTasks;
    const fds = new FdTable();
    for (const f of stdioFds(host)) fds.add(f);
    for (const p of buildPreopens(host, vm.fsContext, () => vm.clock.realtimeNs(), opts.dirs ?? [], opts.tmpfs ?? [])) fds.add(p);
    if (opts.cgroupfs !== false) fds.add(new CgroupPreopenFd(vm));
    vm.spawn(mod, compiled, { args: [name, ...(opts.args ?? [])], env: opts.env ?? [], fds });
    return await Machine.#wire(vm, host);
  }

  /** Rebuilds a machine from a decoded image (its parent chain resolved); nothing runs until `run()`. */
  static async restore(image: SnapshotImage, opts: RestoreMachineOptions = {}): Promise<Machine> {
    const host = opts.host ?? createHost();
    const maxMemoryPages = image.vm.maxMemoryPages;
    const vm = await restoreVm(image, {
      host,
      name: opts.name ?? image.meta.id,
      dirs: new Map((opts.dirs ?? []).map((d) => [d.guest, host.resolvePath(d.host)])),
      load: (entry) => loadModule(host, entry.source, entry.name, maxMemoryPages),
      frozen: opts.frozen,
    });
    return await Machine.#wire(vm, host);
  }

  static async #wire(vm: Vm, host: Host): Promise<Machine> {
    const hashing = await Hashing.create();
    vm.loader = (bytes, name) => loadModule(host, bytes, name, vm.maxMemoryPages);
    vm.checkpointer = new GuestCheckpoints(vm, hashing, runtimeName(host));
    return new Machine(vm, host, hashing);
  }

  /** Runs until pid 1 (the init task) exits, or every task is frozen. Call again after a thaw. */
  run(): Promise<RunOutcome> {
    return this.vm.run();
  }

  /** Freezes a group ("/" is the whole VM); resolves once all its tasks are stopped at yield points (FROZEN). */
  freeze(group = "/"): Promise<void> {
    return this.vm.freezer.freeze(this.#group(group));
  }

  /** Thaws a group ("/" is the whole VM); waits while a checkpoint reads it. */
  thaw(group = "/"): Promise<void> {
    return this.vm.freezer.thaw(this.#group(group));
  }

  /** The VM's tasks and zombies, by pid. */
  tasks(): TaskInfo[] {
    const vm = this.vm;
    const out: TaskInfo[] = [];
    for (const t of vm.tasks.values()) {
      if (t.status === "exited") continue;
      const state = t.stopped ? "stopped" : vm.freezer.isFrozen(t.pid) ? "frozen" : t.status === "suspended" ? "blocked" : "running";
      out.push({ pid: t.pid, ppid: t.ppid, state, group: vm.freezer.groupOf(t.pid).path, call: t.pending?.call ?? null, args: t.args });
    }
    for (const z of vm.zombies.values()) out.push({ pid: z.pid, ppid: z.ppid, state: "zombie", group: "/", call: null, args: [] });
    return out.sort((a, b) => a.pid - b.pid);
  }

  /**
   * External checkpoint: writes the image of the whole VM, or of task `pid`
   * and its descendants, to `sink`. Every task in it must be frozen. While
   * the image is written, a thaw of the group waits. Throws at once (not
   * through the promise) when there is nothing it can checkpoint.
   */
  checkpoint(sink: ImageSink, opts: CheckpointOptions = {}): Promise<CheckpointStats> {
    const vm = this.vm;
    const root = opts.pid ?? vm.initPid;
    const task = vm.tasks.get(root);
    if (!task || task.status === "exited") throw new CrvmError(`Cannot checkpoint: no task ${root}`);
    const group = frozenBy(vm.freezer.groupOf(root));
    if (!group) throw new CrvmError(`Cannot checkpoint: task ${root} is not frozen (freeze its group first)`);
    const scope: DumpScope = { group: group.path, ...(opts.pid !== undefined ? { root } : {}) };
    return this.#write(sink, scope, group, opts);
  }

  async #write(sink: ImageSink, scope: DumpScope, group: FreezerGroup, opts: CheckpointOptions): Promise<CheckpointStats> {
    const vm = this.vm;
    const done = vm.freezer.beginCheckpoint(group);
    try {
      if (typeof sink === "function") return dumpVm(vm, this.hashing, sink, { runtime: runtimeName(this.host), scope, parent: opts.parent });
      // Chunks may be views of guest memory or files that running tasks change: copy them before the first await.
      const chunks: Uint8Array[] = [];
      const stats = dumpVm(vm, this.hashing, (c) => chunks.push(c.slice()), { runtime: runtimeName(this.host), scope, parent: opts.parent });
      const w = sink.getWriter();
      try {
        for (const c of chunks) await w.write(c);
        await w.close();
      } finally {
        w.releaseLock();
      }
      return stats;
    } finally {
      done();
    }
  }

  #group(path: string): FreezerGroup {
    const g = this.vm.freezer.get(path);
    if (!g) throw new CrvmError(`No freezer group "${path}"`);
    return g;
  }
}

/** The topmost frozen group among `g` and its ancestors: the freeze a checkpoint of its tasks relies on. */
function frozenBy(g: FreezerGroup): FreezerGroup | null {
  let found: FreezerGroup | null = null;
  for (let x: FreezerGroup | null = g; x; x = x.parent) if (x.frozen) found = x;
  return found;
}

function runtimeName(host: Host): string {
  return `${host.runtime.name} ${host.runtime.version}`;
}
