// `crvm restore`: continue a checkpointed VM in this process.
import { type DirSpec, Machine } from "../api/machine.ts";
import type { Host } from "../host/mod.ts";
import { readImage } from "../api/images.ts";
import type { CheckpointSpec } from "./options.ts";
import { drive } from "./session.ts";

export interface RestoreCliOptions {
  snapshot: string;
  dirs: DirSpec[];
  checkpoint: CheckpointSpec;
  stats: boolean;
  /** Leave the tasks frozen until this process gets SIGCONT (CRIU's --leave-stopped). */
  frozen: boolean;
}

export async function restoreCommand(host: Host, o: RestoreCliOptions): Promise<number> {
  const { image } = await readImage(host, o.snapshot);
  const machine = await Machine.restore(image, { host, name: o.snapshot, dirs: o.dirs, frozen: o.frozen });
  if (o.frozen) {
    const n = machine.tasks().filter((t) => t.state !== "zombie").length;
    host.stdio.write(2, new TextEncoder().encode(`crvm: restored ${n} task${n === 1 ? "" : "s"}, frozen; send SIGCONT to process ${host.pid()} to thaw them\n`));
    await new Promise<void>((resolve) => {
      const stop = host.onSignal("SIGCONT", () => {
        stop();
        resolve();
      });
    });
    machine.vm.thaw();
  }
  return await drive(host, machine.vm, o.checkpoint, o.stats);
}
