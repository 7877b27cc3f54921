// Checkpoint orchestration: walk a frozen VM and write its image. Each kind
// of object is dumped by its own module; this file only sequences them so
// that every object is written before the record that refers to it.
import { CrvmError } from "../errors.ts";
import type { Zombie } from "../sched/process_calls.ts";
import type { Pending, Task } from "../sched/task.ts";
import type { Vm } from "../sched/vm.ts";
import type { CrvmFd } from "../wasi/fd.ts";
import { bytesToHex, type Hashing, type ModuleEntry, type ParentRef, type Sink, SnapshotWriter, type TaskRecord, type WriteStats } from "../snapshot/mod.ts";
import { FdDumper } from "./fds.ts";
import { dumpGlobals } from "./globals.ts";
import { dumpMemory } from "./memory.ts";
import { dumpPending } from "./stack.ts";

export const CRVM_VERSION = "0.1.0";

export interface CheckpointStats extends WriteStats {
  /** The new image's id and digest (what a child image would name it by). */
  id: string;
  digest: string;
  tasks: number;
  ms: number;
  /** Ids of the pages the image stores (an incremental image's next child inherits these and its parent's). */
  storedPages: ReadonlySet<string>;
}

export interface DumpOptions {
  /** Runtime and version, recorded in the image. */
  runtime: string;
  /** For an incremental image: the parent, and the page ids and module hashes its chain holds (not written again). */
  parent?: { ref: ParentRef; pages: ReadonlySet<string>; modules: ReadonlySet<string> };
  /** Which tasks, and how the image was taken; the default is the whole VM, frozen by the VM-wide freeze. */
  scope?: DumpScope;
}

/** What a checkpoint covers and who took it (see checkpoint(2) in README). */
export interface DumpScope {
  /** Only this task and its descendants (and their zombies); in the image it has no parent and is the init task. */
  root?: number;
  /** The task taking a self-checkpoint, and the pending call it resumes in from the image (returning 0). */
  caller?: { pid: number; pending: Pending };
  /** The freezer group the tasks were frozen in; a restore thaws it unless the caller is in the image. */
  group: string;
  /** The fd the caller writes this image into (a host file is recorded as growing by it). */
  imageFile?: CrvmFd;
}

/** Task `pid` and its descendants, parents before children, and the zombies among them. */
export function subtreeOf(vm: Vm, pid: number): { tasks: Task[]; zombies: Zombie[] } {
  const root = vm.tasks.get(pid);
  if (!root || root.status === "exited") return { tasks: [], zombies: [] };
  const tasks: Task[] = [root];
  const pids = new Set([pid]);
  for (let i = 0; i < tasks.length; i++) {
    for (const c of vm.tasks.values()) {
      if (c.ppid === tasks[i]!.pid && c.status !== "exited" && !pids.has(c.pid)) {
        tasks.push(c);
        pids.add(c.pid);
      }
    }
  }
  return { tasks, zombies: [...vm.zombies.values()].filter((z) => pids.has(z.ppid)) };
}

/**
 * Writes the image of a frozen VM to `sink`. Every live task must be
 * suspended at a yield point (the freezer guarantees it); otherwise this
 * throws and writes nothing further.
 *
 * @example
 * await vm.run();                               // resolves { kind: "frozen" }
 * dumpVm(vm, hashing, (c) => file.write(c));
 */
export function dumpVm(vm: Vm, hashing: Hashing, sink: Sink, opts: DumpOptions): CheckpointStats {
  const t0 = performance.now();
  const scope = opts.scope ?? { group: "/" };
  const sub = scope.root !== undefined ? subtreeOf(vm, scope.root) : null;
  const live = sub ? sub.tasks : [...vm.tasks.values()].filter((t) => t.status !== "exited");
  const zombieList = sub ? sub.zombies : [...vm.zombies.values()];
  if (live.length === 0) throw new CrvmError(`Cannot checkpoint: no task ${scope.root}`);
  for (const t of live) {
    if (t.frames === null || t.pending === null) throw new CrvmError(`Cannot checkpoint: task ${t.pid} is not stopped at a yield point`);
    if (t.pid !== scope.caller?.pid && !vm.freezer.isFrozen(t.pid)) throw new CrvmError(`Cannot checkpoint: task ${t.pid} is not frozen`);
  }
  const w = new SnapshotWriter(hashing, sink, opts.parent?.pages);
  const id = bytesToHex(crypto.getRandomValues(new Uint8Array(16)));
  w.meta({
    crvmVersion: CRVM_VERSION,
    createdAt: new Date().toISOString(),
    runtime: opts.runtime,
    monotonicNs: vm.clock.monotonicNs().toString(),
    id,
    ...(opts.parent ? { parent: opts.parent.ref } : {}),
  });
  const moduleIds = new Map<string, number>();
  for (const t of live) {
    if (moduleIds.has(t.module.wasmHash)) continue;
    const entry: ModuleEntry = {
      id: moduleIds.size,
      name: t.module.name,
      sourceHash: t.module.sourceHash,
      wasmHash: t.module.wasmHash,
      passVersion: t.module.passVersion,
      source: t.module.source,
    };
    moduleIds.set(t.module.wasmHash, entry.id);
    if (opts.parent?.modules.has(entry.sourceHash)) w.moduleRef({ id: entry.id, name: entry.name, sourceHash: entry.sourceHash, wasmHash: entry.wasmHash, passVersion: entry.passVersion });
    else w.module(entry);
  }
  let nextBlob = 0;
  const blob = (bytes: Uint8Array) => {
    const id = nextBlob++;
    w.blob(id, bytes);
    return id;
  };
  const fds = new FdDumper(blob, vm.host, scope.imageFile);
  const unsent = (t: Task) => {
    const bytes = vm.checkpointer?.unsent(t);
    return bytes ? { unsent: blob(bytes) } : {};
  };
  const tasks: TaskRecord[] = live.map((t) => ({
    pid: t.pid,
    ppid: t.pid === scope.root ? 0 : t.ppid,
    moduleId: moduleIds.get(t.module.wasmHash)!,
    args: t.args,
    env: t.env,
    memory: dumpMemory(t.memory, w, hashing),
    globals: dumpGlobals(t.globals()),
    frames: blob(t.frames!),
    pending: dumpPending(t.pid === scope.caller?.pid ? scope.caller.pending : t.pending!, t.status === "ready"),
    fds: t.fds.entries().map(([fd, obj]) => [fd, fds.fileId(obj)]),
    ...(t.stopped ? { stopped: true } : {}),
    group: vm.freezer.groupOf(t.pid).path,
    ...unsent(t),
  }));
  const zombies = zombieList.map((z) => ({ pid: z.pid, ppid: z.ppid, code: z.exitCode, signal: z.exitSignal }));
  w.vm({
    nextPid: vm.nextPid,
    nextIno: vm.fsContext.nextIno.toString(),
    inodes: fds.inodes,
    files: fds.files,
    tasks,
    pipes: fds.pipes,
    zombies,
    maxTasks: vm.maxTasks,
    // In the schema's key order: the JSON round trip (inspect --json, --encode) gives the same bytes.
    ...(vm.maxMemoryPages !== undefined ? { maxMemoryPages: vm.maxMemoryPages } : {}),
    groups: vm.freezer.records(),
    checkpoint: { group: scope.group, ...(scope.caller ? { caller: scope.caller.pid } : {}) },
    nextCheckpointId: vm.nextCheckpointId,
  });
  const digest = w.finish();
  return { ...w.stats, id, digest, tasks: tasks.length, ms: performance.now() - t0, storedPages: w.storedPages };
}
