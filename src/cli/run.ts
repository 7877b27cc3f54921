// `crvm run`: run a WASI command module, optionally checkpointing it.
import { type DirSpec, Machine } from "../api/machine.ts";
import type { Host } from "../host/mod.ts";
import type { CheckpointSpec } from "./options.ts";
import { drive } from "./session.ts";

export interface RunOptions {
  module: string;
  args: string[];
  dirs: DirSpec[];
  tmpfs: string[];
  env: string[];
  cgroupfs: boolean;
  checkpoint: CheckpointSpec;
  stats: boolean;
  maxTasks?: number;
  maxMemoryPages?: number;
}

export async function runCommand(host: Host, o: RunOptions): Promise<number> {
  const machine = await Machine.create(o.module, {
    host,
    args: o.args,
    env: o.env,
    dirs: o.dirs,
    tmpfs: o.tmpfs,
    cgroupfs: o.cgroupfs,
    maxTasks: o.maxTasks,
    maxMemoryPages: o.maxMemoryPages,
  });
  return await drive(host, machine.vm, o.checkpoint, o.stats);
}
