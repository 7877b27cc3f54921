import { CrvmFd } from "./fd.ts";

/**
 * A task's fd table: POSIX numbering (the lowest free number is reused) and
 * shared open-file objects (two fds, in one table or in a parent's and a
 * forked child's, may refer to one object with one offset); an object is
 * closed when the last fd referring to it, in any table, goes.
 *
 * @example
 * const t = new FdTable();
 * const fd = t.add(file);   // 3 if 0..2 are taken
 */
export class FdTable {
  readonly slots: (CrvmFd | undefined)[] = [];

  get(fd: number): CrvmFd | undefined {
    return fd >= 0 ? this.slots[fd] : undefined;
  }
  /** Puts `obj` at the lowest free fd number (at least `min`), or exactly at `at`, and returns it. */
  add(obj: CrvmFd, at?: number, min = 0): number {
    let fd = at ?? min;
    if (at === undefined) while (this.slots[fd] !== undefined) fd++;
    if (this.slots[fd] !== undefined) this.close(fd);
    this.slots[fd] = obj;
    obj.refs++;
    return fd;
  }
  /** Removes fd; closes the object when no other fd refers to it. */
  close(fd: number): number {
    const obj = this.get(fd);
    if (obj === undefined) return 8; // EBADF
    this.slots[fd] = undefined;
    while (this.slots.length > 0 && this.slots[this.slots.length - 1] === undefined) this.slots.pop();
    if (--obj.refs > 0) return 0;
    return obj.fd_close();
  }
  /** POSIX dup2-like renumber: `to` takes `from`'s object and `from` is freed (WASI fd_renumber). */
  renumber(from: number, to: number): number {
    const obj = this.get(from);
    if (obj === undefined) return 8;
    if (from === to) return 0;
    this.add(obj, to);
    return this.close(from);
  }
  /** Every (fd, object) pair in fd order. */
  entries(): [number, CrvmFd][] {
    const out: [number, CrvmFd][] = [];
    this.slots.forEach((o, fd) => o && out.push([fd, o]));
    return out;
  }
  /** A copy for a forked child: the same open files (shared offsets), each referred to once more. */
  clone(): FdTable {
    const t = new FdTable();
    for (const [fd, obj] of this.entries()) t.add(obj, fd);
    return t;
  }

  /** Closes everything (task exit). */
  closeAll(): void {
    for (const [fd] of this.entries()) this.close(fd);
  }
}
