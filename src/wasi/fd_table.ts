import { CrvmFd } from "./fd.ts";

/**
 * A task's fd table: POSIX numbering (the lowest free number is reused) and
 * shared open-file objects (two fds may refer to one object, e.g. after
 * `fd_renumber` or, later, `dup` and `fork`); an object is closed when its
 * last fd goes.
 *
 * @example
 * const t = new FdTable();
 * const fd = t.add(file);   // 3 if 0..2 are taken
 */
export class FdTable {
  readonly slots: (CrvmFd | undefined)[] = [];
  readonly #refs = new Map<CrvmFd, number>();

  get(fd: number): CrvmFd | undefined {
    return fd >= 0 ? this.slots[fd] : undefined;
  }
  /** Puts `obj` at the lowest free fd number (or at `at`) and returns it. */
  add(obj: CrvmFd, at?: number): number {
    let fd = at ?? this.slots.findIndex((s) => s === undefined);
    if (fd < 0) fd = this.slots.length;
    if (this.slots[fd] !== undefined) this.close(fd);
    this.slots[fd] = obj;
    this.#refs.set(obj, (this.#refs.get(obj) ?? 0) + 1);
    return fd;
  }
  /** Removes fd; closes the object when no other fd refers to it. */
  close(fd: number): number {
    const obj = this.get(fd);
    if (obj === undefined) return 8; // EBADF
    this.slots[fd] = undefined;
    while (this.slots.length > 0 && this.slots[this.slots.length - 1] === undefined) this.slots.pop();
    const n = (this.#refs.get(obj) ?? 1) - 1;
    if (n > 0) {
      this.#refs.set(obj, n);
      return 0;
    }
    this.#refs.delete(obj);
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
  /** Closes everything (task exit). */
  closeAll(): void {
    for (const [fd] of this.entries()) this.close(fd);
  }
}
