// Drives a VM to its end: runs it, takes the requested checkpoint when it
// freezes, and either stops there or lets it continue.
import { dumpVm } from "../checkpoint/dump.ts";
import { SnapshotError } from "../errors.ts";
import type { Host } from "../host/mod.ts";
import type { Vm } from "../sched/vm.ts";
import { Hashing } from "../snapshot/mod.ts";
import type { CheckpointSpec } from "./options.ts";

/** Runs `vm`; returns the process exit code. */
export async function drive(host: Host, vm: Vm, spec: CheckpointSpec, stats = false): Promise<number> {
  const code = await driveToEnd(host, vm, spec);
  if (stats) {
    const line = JSON.stringify({ yields: vm.yieldCount, runtime: `${host.runtime.name} ${host.runtime.version}` });
    host.stdio.write(2, new TextEncoder().encode(`crvm-stats: ${line}\n`));
  }
  return code;
}

async function driveToEnd(host: Host, vm: Vm, spec: CheckpointSpec): Promise<number> {
  if (spec.file !== undefined) vm.requestFreeze({ afterMs: spec.afterMs, afterYields: spec.afterYields });
  for (;;) {
    const out = await vm.run();
    if (out.kind === "exited") {
      if (out.trap !== null) host.stdio.write(2, new TextEncoder().encode(`crvm: guest trapped: ${out.trap}\n`));
      return out.code;
    }
    await writeCheckpoint(host, vm, spec.file!);
    if (!spec.leaveRunning) return 0;
    vm.thaw();
  }
}

/** Writes the frozen VM's image to `path` atomically (temp file + rename). */
export async function writeCheckpoint(host: Host, vm: Vm, path: string): Promise<void> {
  const hashing = await Hashing.create();
  const chunks: Uint8Array[] = [];
  // Chunks may be views of guest memory: they are written before any guest code runs again.
  dumpVm(vm, hashing, (c) => chunks.push(c), `${host.runtime.name} ${host.runtime.version}`);
  try {
    host.fs.writeFileAtomic(host.resolvePath(path), chunks);
  } catch (e) {
    throw new SnapshotError(`Cannot write snapshot "${path}": ${(e as Error).message}`);
  }
}
