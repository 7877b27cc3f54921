// `crvm run`: run a WASI command module, optionally checkpointing it.
import type { Host } from "../host/mod.ts";
import { FdTable } from "../wasi/fd_table.ts";
import { buildPreopens, stdioFds } from "../wasi/preopens.ts";
import { Vm } from "../sched/vm.ts";
import { loadModule, readModuleFile } from "./modules.ts";
import type { CheckpointSpec, DirSpec } from "./options.ts";
import { drive } from "./session.ts";

export interface RunOptions {
  module: string;
  args: string[];
  dirs: DirSpec[];
  tmpfs: string[];
  env: string[];
  checkpoint: CheckpointSpec;
  stats: boolean;
  maxTasks?: number;
  maxMemoryPages?: number;
}

export async function runCommand(host: Host, o: RunOptions): Promise<number> {
  const source = await readModuleFile(host, o.module);
  const { module, compiled } = await loadModule(host, source, o.module, o.maxMemoryPages);
  const vm = new Vm(host);
  vm.maxMemoryPages = o.maxMemoryPages;
  vm.loader = (bytes, name) => loadModule(host, bytes, name, o.maxMemoryPages);
  if (o.maxTasks !== undefined) vm.maxTasks = o.maxTasks;
  const fds = new FdTable();
  for (const f of stdioFds(host)) fds.add(f);
  for (const p of buildPreopens(host, vm.fsContext, () => vm.clock.realtimeNs(), o.dirs, o.tmpfs)) fds.add(p);
  vm.spawn(module, compiled, { args: [o.module, ...o.args], env: o.env, fds });
  return await drive(host, vm, o.checkpoint, o.stats);
}
