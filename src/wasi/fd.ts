// The interface every fd object a guest can hold implements. It extends
// browser_wasi_shim's `Fd` (whose defaults answer ENOTSUP/EBADF) with the
// calls crvm needs that the shim's interface lacks: renames and links across
// two directory fds, symlinks, readiness for poll_oneoff, and a kind tag so
// that `src/checkpoint/fds.ts` can dump and restore every fd by its fields.
import { Fd, wasi } from "@bjorn3/browser_wasi_shim";

export { wasi };

/** Returned by an fd method that would have to wait (an empty pipe or stdin). */
export const ERRNO_WOULDBLOCK = -1;

export abstract class CrvmFd extends Fd {
  /** Fixed tag of the concrete class, used by checkpoint/restore. */
  abstract readonly kind: string;
  /** How many fd slots, in all fd tables, refer to this open file (fork and dup share it). */
  refs = 0;

  /** Rename `oldPath` (relative to this directory) to `newPath` relative to `target`. */
  path_rename_to(_oldPath: string, _target: CrvmFd, _newPath: string): number {
    return wasi.ERRNO_NOTDIR;
  }
  /** Hard link `oldPath` (relative to this dir; follow symlinks if `followSymlinks`) to `newPath` in `target`. */
  path_link_to(_oldPath: string, _followSymlinks: boolean, _target: CrvmFd, _newPath: string): number {
    return wasi.ERRNO_NOTDIR;
  }
  /** Create a symlink at `path` (relative to this dir) whose contents are `target`. */
  path_symlink(_target: string, _path: string): number {
    return wasi.ERRNO_NOTDIR;
  }
  /** Like the shim's `path_filestat_get` but with the lookup flags honoured. */
  /** Whether a read / write would complete now (for poll_oneoff). Regular files and directories always can. */
  readiness(): { read: boolean; write: boolean } {
    return { read: true, write: true };
  }
  /** Resolves when `readiness()` may have changed (for fds that can block). */
  whenReady(_what: "read" | "write"): Promise<void> {
    return Promise.resolve();
  }
}

/** Counters that belong to one VM (never module-level): inode numbers. */
export class FsContext {
  #nextIno = 1n;
  issueIno(): bigint {
    return this.#nextIno++;
  }
  /** For restore: continue numbering after the highest restored inode. */
  reserveIno(ino: bigint): void {
    if (ino >= this.#nextIno) this.#nextIno = ino + 1n;
  }
  get nextIno(): bigint {
    return this.#nextIno;
  }
}

/**
 * browser_wasi_shim 0.4.2's `Filestat.write_bytes` writes atim/mtim/ctim at
 * offsets 38/46/52 instead of 40/48/56 (WASI's `filestat` layout), which
 * clobbers the top bytes of `size` as soon as atim is not 0. Every crvm fd
 * returns this subclass, whose `write_bytes` follows the layout.
 *
 * @example
 * const st = new CrvmFilestat(ino, wasi.FILETYPE_REGULAR_FILE, 5n);
 * st.write_bytes(view, ptr); // 64 bytes at ptr
 */
export class CrvmFilestat extends wasi.Filestat {
  override write_bytes(view: DataView, ptr: number): void {
    view.setBigUint64(ptr, this.dev, true);
    view.setBigUint64(ptr + 8, this.ino, true);
    view.setUint8(ptr + 16, this.filetype);
    view.setBigUint64(ptr + 24, this.nlink, true);
    view.setBigUint64(ptr + 32, this.size, true);
    view.setBigUint64(ptr + 40, this.atim, true);
    view.setBigUint64(ptr + 48, this.mtim, true);
    view.setBigUint64(ptr + 56, this.ctim, true);
  }
}
