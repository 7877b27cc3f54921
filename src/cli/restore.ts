// `crvm restore`: continue a checkpointed VM in this process.
import { restoreVm } from "../checkpoint/restore.ts";
import { SnapshotError } from "../errors.ts";
import { type Host, HostFsError } from "../host/mod.ts";
import { decodeSnapshot, Hashing, type SnapshotImage } from "../snapshot/mod.ts";
import { loadModule } from "./modules.ts";
import type { CheckpointSpec, DirSpec } from "./options.ts";
import { drive } from "./session.ts";

/** Reads and verifies an image file. */
export async function readSnapshot(host: Host, path: string): Promise<SnapshotImage> {
  let bytes: Uint8Array;
  try {
    bytes = host.fs.readFile(host.resolvePath(path));
  } catch (e) {
    const why = e instanceof HostFsError && e.code === "ENOENT" ? "no such file" : (e as Error).message;
    throw new SnapshotError(`Cannot read snapshot "${path}": ${why}`);
  }
  return decodeSnapshot(await Hashing.create(), bytes, path);
}

export interface RestoreCliOptions {
  snapshot: string;
  dirs: DirSpec[];
  checkpoint: CheckpointSpec;
  stats: boolean;
}

export async function restoreCommand(host: Host, o: RestoreCliOptions): Promise<number> {
  const image = await readSnapshot(host, o.snapshot);
  const vm = await restoreVm(image, {
    host,
    name: o.snapshot,
    dirs: new Map(o.dirs.map((d) => [d.guest, host.resolvePath(d.host)])),
    load: (entry) => loadModule(host, entry.source, entry.name),
  });
  return await drive(host, vm, o.checkpoint, o.stats);
}
