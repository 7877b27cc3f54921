// The fds a new task starts with: stdio at 0-2, then the preopened
// directories (host dirs from --dir, in-memory dirs from --tmpfs) from 3 on,
// in the order given, as wasi-libc expects.
import { UsageError } from "../errors.ts";
import type { Host } from "../host/mod.ts";
import type { CrvmFd, FsContext } from "./fd.ts";
import { HostPreopenFd } from "./hostfs.ts";
import { MemPreopenFd } from "./memfs.ts";
import { StdinFd, StdoutFd } from "./stdio.ts";

export function stdioFds(host: Host): CrvmFd[] {
  return [new StdinFd(host.stdio), new StdoutFd(1, host.stdio), new StdoutFd(2, host.stdio)];
}

/**
 * Host directories (checked to exist) and empty in-memory directories.
 *
 * @example
 * buildPreopens(host, vm.fsContext, now, [{ host: "./data", guest: "/data" }], ["/tmp"]);
 */
export function buildPreopens(
  host: Host,
  ctx: FsContext,
  now: () => bigint,
  dirs: { host: string; guest: string }[],
  tmpfs: string[],
): CrvmFd[] {
  const out: CrvmFd[] = [];
  for (const d of dirs) {
    const hostPath = host.resolvePath(d.host);
    let isDir = false;
    try {
      isDir = host.fs.stat(hostPath).type === "dir";
    } catch { /* reported below */ }
    if (!isDir) throw new UsageError(`--dir "${d.host}": not a directory`);
    out.push(new HostPreopenFd(host.fs, { guestPath: d.guest, hostPath: host.fs.realpath(hostPath) }));
  }
  for (const guest of tmpfs) out.push(new MemPreopenFd({ ctx, now }, guest));
  return out;
}
