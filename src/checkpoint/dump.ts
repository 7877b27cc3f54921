// Checkpoint orchestration: walk a frozen VM and write its image. Each kind
// of object is dumped by its own module; this file only sequences them so
// that every object is written before the record that refers to it.
import { CrvmError } from "../errors.ts";
import type { Vm } from "../sched/vm.ts";
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
}

export interface DumpOptions {
  /** Runtime and version, recorded in the image. */
  runtime: string;
  /** For an incremental image: the parent, and the page ids and module hashes its chain holds (not written again). */
  parent?: { ref: ParentRef; pages: ReadonlySet<string>; modules: ReadonlySet<string> };
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
  const live = [...vm.tasks.values()].filter((t) => t.status !== "exited");
  for (const t of live) {
    if (t.status !== "suspended" || t.frames === null || t.pending === null) {
      throw new CrvmError(`Cannot checkpoint: task ${t.pid} is not frozen`);
    }
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
  const fds = new FdDumper(blob, vm.host);
  const tasks: TaskRecord[] = live.map((t) => ({
    pid: t.pid,
    ppid: t.ppid,
    moduleId: moduleIds.get(t.module.wasmHash)!,
    args: t.args,
    env: t.env,
    memory: dumpMemory(t.memory, w, hashing),
    globals: dumpGlobals(t.globals()),
    frames: blob(t.frames!),
    pending: dumpPending(t.pending!),
    fds: t.fds.entries().map(([fd, obj]) => [fd, fds.fileId(obj)]),
    ...(t.stopped ? { stopped: true } : {}),
  }));
  const zombies = [...vm.zombies.values()].map((z) => ({ pid: z.pid, ppid: z.ppid, code: z.exitCode, signal: z.exitSignal }));
  w.vm({
    nextPid: vm.nextPid,
    nextIno: vm.fsContext.nextIno.toString(),
    inodes: fds.inodes,
    files: fds.files,
    tasks,
    pipes: fds.pipes,
    zombies,
    maxTasks: vm.maxTasks,
    ...(vm.maxMemoryPages !== undefined ? { maxMemoryPages: vm.maxMemoryPages } : {}),
  });
  const digest = w.finish();
  return { ...w.stats, id, digest, tasks: tasks.length, ms: performance.now() - t0 };
}
