// `crvm restore`: continue a checkpointed VM in this process.
import { restoreVm } from "../checkpoint/restore.ts";
import type { Host } from "../host/mod.ts";
import { readImage } from "./images.ts";
import { loadModule } from "./modules.ts";
import type { CheckpointSpec, DirSpec } from "./options.ts";
import { drive } from "./session.ts";

export interface RestoreCliOptions {
  snapshot: string;
  dirs: DirSpec[];
  checkpoint: CheckpointSpec;
  stats: boolean;
}

export async function restoreCommand(host: Host, o: RestoreCliOptions): Promise<number> {
  const { image } = await readImage(host, o.snapshot);
  const maxMemoryPages = image.vm.maxMemoryPages;
  const vm = await restoreVm(image, {
    host,
    name: o.snapshot,
    dirs: new Map(o.dirs.map((d) => [d.guest, host.resolvePath(d.host)])),
    load: (entry) => loadModule(host, entry.source, entry.name, maxMemoryPages),
  });
  vm.loader = (bytes, name) => loadModule(host, bytes, name, maxMemoryPages);
  return await drive(host, vm, o.checkpoint, o.stats);
}
