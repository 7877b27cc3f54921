// Restore orchestration, in stages: modules (re-instrumented, hashes
// checked), files and inodes (host files checked), tasks (instantiated,
// memory, globals, stacks, fd tables). Nothing runs until every stage has
// succeeded; the caller then calls `vm.run()`.
import { SnapshotError } from "../errors.ts";
import type { Host } from "../host/mod.ts";
import type { InstrumentedModule } from "../instrument/mod.ts";
import { Task } from "../sched/task.ts";
import { Vm } from "../sched/vm.ts";
import type { ModuleEntry, SnapshotImage } from "../snapshot/mod.ts";
import { FdTable } from "../wasi/fd_table.ts";
import { restoreFiles } from "./fds.ts";
import { restoreGlobals } from "./globals.ts";
import { restoreMemory } from "./memory.ts";
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
    modules.set(entry.id, loaded);
  }
  // Stage 2: the VM, its inodes and open files.
  const rec = image.vm;
  if (!rec || !Array.isArray(rec.tasks) || rec.tasks.length === 0) throw new SnapshotError(`${what}: the image has no tasks`);
  const vm = new Vm(opts.host, BigInt(image.meta.monotonicNs));
  const files = restoreFiles(rec, image, { host: opts.host, fsContext: vm.fsContext, dirs: opts.dirs, what, now: () => vm.clock.realtimeNs() });
  vm.fsContext.reserveIno(BigInt(rec.nextIno) - 1n);
  // Stage 3: tasks.
  const tasks: Task[] = [];
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
    const task = new Task(vm, { pid: tr.pid, ppid: tr.ppid, module: loaded.module, compiled: loaded.compiled, args: tr.args, env: tr.env, fds });
    restoreMemory(task.memory, tr.memory, image.pages, tw);
    restoreGlobals(task.globals(), tr.globals, tw);
    const frames = image.blobs.get(tr.frames);
    if (!frames) throw new SnapshotError(`${tw}: missing stack blob ${tr.frames}`);
    task.frames = frames.slice();
    task.pending = restorePending(tr.pending, tw);
    task.status = task.pending.wait.freeze || task.pending.wait.yield ? "ready" : "suspended";
    task.stopped = !!tr.stopped;
    tasks.push(task);
  }
  // Stage 4: only now does the VM own them.
  for (const t of tasks) vm.adopt(t);
  for (const z of rec.zombies ?? []) vm.zombies.set(z.pid, { pid: z.pid, ppid: z.ppid, status: "exited", exitCode: z.code, exitSignal: z.signal });
  if (rec.maxTasks !== undefined) vm.maxTasks = rec.maxTasks;
  vm.maxMemoryPages = rec.maxMemoryPages;
  vm.nextPid = Math.max(vm.nextPid, rec.nextPid);
  return vm;
}
