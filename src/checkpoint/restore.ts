// Restore orchestration, in stages: modules (re-instrumented, hashes
// checked), files and inodes (host files checked), tasks (instantiated,
// memory, globals, stacks, fd tables). Nothing runs until every stage has
// succeeded; the caller then calls `vm.run()`.
import { SnapshotError } from "../errors.ts";
import type { Host } from "../host/mod.ts";
import type { InstrumentedModule } from "../instrument/mod.ts";
import type { FreezerGroup } from "../freezer/freezer.ts";
import { Task, type TaskSpec } from "../sched/task.ts";
import { Vm } from "../sched/vm.ts";
import type { ModuleEntry, SnapshotImage } from "../snapshot/mod.ts";
import { FdTable } from "../wasi/fd_table.ts";
import { restoreFiles } from "./fds.ts";
import { restoreGlobals } from "./globals.ts";
import { restoreMemory } from "./memory.ts";
import type { MemoryLease, MemoryPool } from "./pool.ts";
import { restorePending } from "./stack.ts";

export interface LoadedModule {
  module: InstrumentedModule;
  compiled: WebAssembly.Module;
}

export interface RestoreOptions {
  host: Host;
  /** Instruments (or finds in the cache) a module of the image. */
  load(entry: ModuleEntry): Promise<LoadedModule>;
  /** Host directory to use for a guest preopen path, overriding the one recorded (`--dir` at restore). */
  dirs: Map<string, string>;
  /** Name of the image for messages. */
  name: string;
  /**
   * Take guest memories from this pool (already touched, so the restore
   * copies instead of page-faulting). The caller releases them to the pool
   * when the VM is done. Needs `TaskSpec.pooled` (see bench/README.md).
   */
  memories?: MemoryPool;
  /** Keep every restored task frozen (the VM-wide freeze) until `vm.thaw()`. */
  frozen?: boolean;
}

/**
 * Rebuilds a VM from an image. All-or-nothing: on any error it throws a
 * `SnapshotError` and no task has run.
 *
 * @example
 * const vm = await restoreVm(image, { host, load, dirs: new Map(), name: "app.snap" });
 * await vm.run();
 */
export async function restoreVm(image: SnapshotImage, opts: RestoreOptions): Promise<Vm> {
  const what = `Cannot restore snapshot "${opts.name}"`;
  // Stage 1: modules.
  const modules = new Map<number, LoadedModule>();
  for (const entry of image.modules) {
    const loaded = await opts.load(entry);
    if (loaded.module.sourceHash !== entry.sourceHash) throw new SnapshotError(`${what}: module ${entry.name} hash differs`);
    if (loaded.module.wasmHash !== entry.wasmHash) {
      throw new SnapshotError(
        `${what}: module ${entry.name} instruments differently here (pass version ${loaded.module.passVersion}, image made with ${entry.passVersion})`,
      );
    }
    if (opts.memories) await opts.memories.prepare(loaded.module);
    modules.set(entry.id, loaded);
  }
  // Stage 2: the VM, its inodes and open files.
  const rec = image.vm;
  if (!rec || !Array.isArray(rec.tasks) || rec.tasks.length === 0) throw new SnapshotError(`${what}: the image has no tasks`);
  const vm = new Vm(opts.host, BigInt(image.meta.monotonicNs));
  // Limits first: memories the tasks create below are capped by them.
  if (rec.maxTasks !== undefined) vm.maxTasks = rec.maxTasks;
  vm.maxMemoryPages = rec.maxMemoryPages;
  const files = restoreFiles(rec, image, { host: opts.host, fsContext: vm.fsContext, dirs: opts.dirs, what, now: () => vm.clock.realtimeNs(), cgroups: vm });
  vm.fsContext.reserveIno(BigInt(rec.nextIno) - 1n);
  try {
    vm.freezer.load(rec.groups ?? []);
  } catch (e) {
    throw new SnapshotError(`${what}: ${(e as Error).message}`);
  }
  // Stage 3: tasks.
  const tasks: { task: Task; group: FreezerGroup }[] = [];
  for (const tr of rec.tasks) {
    const loaded = modules.get(tr.moduleId);
    const tw = `${what}: task ${tr.pid}`;
    if (!loaded) throw new SnapshotError(`${tw} refers to missing module ${tr.moduleId}`);
    const fds = new FdTable();
    for (const [fd, id] of tr.fds) {
      const obj = files.get(id);
      if (!obj) throw new SnapshotError(`${tw}: fd ${fd} refers to missing file ${id}`);
      fds.add(obj, fd);
    }
    const lease = opts.memories ? await opts.memories.lease(loaded.module, tr.memory.pages, rec.maxMemoryPages) : null;
    const task = newTask(vm, { pid: tr.pid, ppid: tr.ppid, module: loaded.module, compiled: loaded.compiled, args: tr.args, env: tr.env, fds }, lease, opts.memories, tw);
    restoreMemory(task.memory, tr.memory, image.pages, tw, lease ? { dirtyPages: lease.dirtyPages } : {});
    restoreGlobals(task.globals(), tr.globals, tw);
    const frames = image.blobs.get(tr.frames);
    if (!frames) throw new SnapshotError(`${tw}: missing stack blob ${tr.frames}`);
    task.frames = frames.slice();
    task.pending = restorePending(tr.pending, tw);
    task.status = task.pending.wait.freeze || task.pending.wait.yield ? "ready" : "suspended";
    task.stopped = !!tr.stopped;
    if (tr.unsent !== undefined) vm.unsent.set(tr.pid, image.blobs.get(tr.unsent)!);
    const group = vm.freezer.get(tr.group ?? "/");
    if (!group) throw new SnapshotError(`${tw}: no freezer group ${tr.group}`);
    tasks.push({ task, group });
  }
  // Stage 4: only now does the VM own them, in their freezer groups.
  for (const { task, group } of tasks) {
    vm.adopt(task);
    vm.freezer.attach(task.pid, group);
  }
  // The freeze the checkpoint needed ends now, unless the caller of a self-checkpoint is here to end it itself.
  const taken = rec.checkpoint ?? { group: "/" };
  if (taken.caller === undefined) vm.freezer.get(taken.group)!.frozen = false;
  vm.freezer.root.frozen = !!opts.frozen;
  vm.initPid = Math.min(...rec.tasks.filter((t) => t.ppid === 0).map((t) => t.pid));
  if (rec.nextCheckpointId !== undefined) vm.nextCheckpointId = rec.nextCheckpointId;
  for (const z of rec.zombies ?? []) vm.zombies.set(z.pid, { pid: z.pid, ppid: z.ppid, status: "exited", exitCode: z.code, exitSignal: z.signal });
  vm.nextPid = Math.max(vm.nextPid, rec.nextPid);
  return vm;
}

/**
 * A task over a pooled memory when there is a lease: Task instantiates the
 * lease's variant of the module (which imports its memory) over it, and
 * keeps `spec.compiled` for what it spawns later.
 */
function newTask(vm: Vm, spec: TaskSpec, lease: MemoryLease | null, pool: MemoryPool | undefined, what: string): Task {
  if (!lease) return new Task(vm, spec);
  const pooled: TaskSpec & { pooled: { compiled: WebAssembly.Module; import: { module: string; name: string }; memory: WebAssembly.Memory } } = {
    ...spec,
    pooled: { compiled: lease.compiled, import: lease.import, memory: lease.memory },
  };
  const task = new Task(vm, pooled);
  if (task.memory !== lease.memory) {
    pool?.release(lease.memory);
    throw new SnapshotError(`${what}: this build's Task cannot take a pooled memory (TaskSpec.pooled)`);
  }
  return task;
}
