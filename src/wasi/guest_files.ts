// Reading a whole file by its absolute guest path, through the task's own
// preopens (so exec and spawn see exactly what the guest can open).
import { type CrvmFd, wasi } from "./fd.ts";
import type { FdTable } from "./fd_table.ts";

const READ_RIGHTS = BigInt(wasi.RIGHTS_FD_READ | wasi.RIGHTS_FD_SEEK | wasi.RIGHTS_FD_FILESTAT_GET);
const LOOKUP_SYMLINK_FOLLOW = 1;
const MAX_MODULE = 1 << 30;

function preopenName(fd: CrvmFd): string | null {
  const { prestat } = fd.fd_prestat_get();
  return prestat ? new TextDecoder().decode(prestat.inner.pr_name) : null;
}

/** The preopen that holds absolute guest path `path` (the longest matching one), and the rest of the path. */
function locate(fds: FdTable, path: string): { fd: CrvmFd; rel: string } | null {
  const abs = path.startsWith("/") ? path : `/${path}`;
  let best: { fd: CrvmFd; rel: string; len: number } | null = null;
  for (const [, fd] of fds.entries()) {
    const name = preopenName(fd);
    if (name === null) continue;
    const root = name.endsWith("/") ? name : `${name}/`;
    if ((abs.startsWith(root) || abs === name) && name.length > (best?.len ?? -1)) {
      best = { fd, rel: abs.slice(root.length) || ".", len: name.length };
    }
  }
  return best;
}

/** Opens an absolute guest path (posix_spawn's open action). */
export function openGuestPath(
  fds: FdTable,
  path: string,
  dirflags: number,
  oflags: number,
  rights: bigint,
  inheriting: bigint,
  fdflags: number,
): { ret: number; fd: CrvmFd | null } {
  const at = locate(fds, path);
  if (!at) return { ret: wasi.ERRNO_NOENT, fd: null };
  const { ret, fd_obj } = at.fd.path_open(dirflags, at.rel, oflags, rights, inheriting, fdflags);
  return { ret, fd: (fd_obj as CrvmFd | null) ?? null };
}

/**
 * The contents of the file at `path` (absolute, or relative to "/"), or an
 * errno: ENOENT when no preopen holds it.
 *
 * @example
 * const r = readGuestFile(task.fds, "/data/prog.wasm");
 */
export function readGuestFile(fds: FdTable, path: string): { ret: number; data: Uint8Array | null } {
  const { ret, fd: fd_obj } = openGuestPath(fds, path, LOOKUP_SYMLINK_FOLLOW, 0, READ_RIGHTS, 0n, 0);
  if (ret !== 0 || !fd_obj) return { ret: ret || wasi.ERRNO_NOENT, data: null };
  try {
    const parts: Uint8Array[] = [];
    let total = 0;
    for (;;) {
      const r = fd_obj.fd_read(1 << 20);
      if (r.ret !== 0) return { ret: r.ret, data: null };
      if (r.data.length === 0) break;
      total += r.data.length;
      if (total > MAX_MODULE) return { ret: wasi.ERRNO_FBIG, data: null };
      parts.push(r.data);
    }
    const out = new Uint8Array(total);
    let off = 0;
    for (const p of parts) {
      out.set(p, off);
      off += p.length;
    }
    return { ret: 0, data: out };
  } finally {
    fd_obj.fd_close();
  }
}
