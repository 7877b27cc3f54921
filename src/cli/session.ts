// Drives a VM to its end: runs it, takes the requested checkpoint when it
// freezes, and either stops there or lets it continue.
import { CrvmError } from "../errors.ts";
import type { Host } from "../host/mod.ts";
import type { Vm } from "../sched/vm.ts";
import { writeImage } from "../api/images.ts";
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
    if (spec.file === undefined || !vm.freezing) {
      throw new CrvmError("every task is frozen by its guests and nothing is left to thaw them");
    }
    await writeImage(host, vm, spec.file, { parent: spec.parent, compress: spec.compress });
    if (!spec.leaveRunning) return 0;
    vm.thaw();
  }
}
