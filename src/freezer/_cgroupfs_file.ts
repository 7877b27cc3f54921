// The regular files of the cgroup filesystem (cgroup.procs, cgroup.freeze,
// cgroup.events) and what its directory fds share with them: how an fd names
// its group, inode numbers and stat. Private to src/freezer/; cgroupfs.ts is
// the public surface and documents the errno choices.
import { CrvmFilestat, ERRNO_WOULDBLOCK, wasi } from "../wasi/fd.ts";
import { FileFdBase, fileRights } from "../wasi/_fs_common.ts";
import { FreezerError, type Freezer, type FreezerGroup } from "./freezer.ts";

/** What the cgroup filesystem needs from its VM; `Vm` has exactly these members. */
export interface CgroupHost {
  readonly freezer: Freezer;
  /** The task making the current call, or null when the host itself acts (no task is running). */
  currentPid(): number | null;
  inSubtree(pid: number, ancestor: number): boolean;
  /** Tasks by pid (pid 1 stays here after it exits: `status` tells). */
  readonly tasks: ReadonlyMap<number, { readonly status: string }>;
}

export type CgroupFileName = "cgroup.procs" | "cgroup.freeze" | "cgroup.events";

/** The files of a group: the root group has only cgroup.procs, as on Linux (its freeze is the VM-wide one). */
export function filesOf(group: FreezerGroup): readonly CgroupFileName[] {
  return group.parent === null ? ["cgroup.procs"] : ["cgroup.procs", "cgroup.freeze", "cgroup.events"];
}

/** cgroup.events is read-only (mode 0444 on Linux); the other two are read-write. */
export const writableFile = (name: CgroupFileName): boolean => name !== "cgroup.events";

/** st_dev of every cgroupfs inode: its own filesystem, as cgroup2 is on Linux ("cgrp"). */
const CGROUPFS_DEV = 0x63677270n;

/** FNV-1a, 64 bits: stable across runs and restores, so needs no counter and no state. */
function fnv64(s: string): bigint {
  let h = 0xcbf29ce484222325n;
  for (let i = 0; i < s.length; i++) h = ((h ^ BigInt(s.charCodeAt(i))) * 0x100000001b3n) & 0xffffffffffffffffn;
  return h;
}

/** A group directory's or file's inode number, derived from its path (never 0). */
export function inoOf(group: FreezerGroup, file: CgroupFileName | null): bigint {
  return (fnv64(`${group.path}\0${file ?? ""}`) >> 1n) + 1n;
}

/**
 * A name's readdir position (≥ 2: cookies 0 and 1 are "." and ".."). Entries
 * are listed in position order and a cookie is a position, as Linux's kernfs
 * does with its name hash: a cookie stays valid while other groups come and
 * go, and after a restore. (Two names in one directory would have to collide
 * in 61 bits for one of them to be skipped.)
 */
export const positionOf = (name: string): bigint => 2n + (fnv64(name) >> 3n);

/** Stat of a group directory (`file` null) or of one of its files: size 0 and no times, like Linux's kernfs. */
export function cgroupStat(group: FreezerGroup, file: CgroupFileName | null): CrvmFilestat {
  const st = new CrvmFilestat(inoOf(group, file), file === null ? wasi.FILETYPE_DIRECTORY : wasi.FILETYPE_REGULAR_FILE, 0n);
  st.dev = CGROUPFS_DEV;
  st.nlink = file === null ? 2n + BigInt(group.children.size) : 1n;
  return st;
}

/** The errno a guest gets for a freezer operation that throws a FreezerError (anything else is a bug: rethrown). */
export function freezerErrno(f: () => void): number {
  try {
    f();
    return 0;
  } catch (e) {
    if (e instanceof FreezerError) return e.errno;
    throw e;
  }
}

/**
 * The group an fd is on. It is not resolved by path at each call: a group
 * removed and made again under the same name is another group, and the old
 * fd stays stale (Linux's ENODEV). `live` is null once the group is gone.
 */
export class GroupRef {
  #group: FreezerGroup | null;
  #later: { path: string | null; binding: CgroupBinding } | null = null;

  constructor(group: FreezerGroup | null) {
    this.#group = group;
  }

  /** Restore: the group at `path` (null: a stale fd), looked up when `binding` binds. */
  static later(path: string | null, binding: CgroupBinding): GroupRef {
    const r = new GroupRef(null);
    r.#later = { path, binding };
    return r;
  }

  /** Resolves a `later` reference (the binding calls it). */
  bind(freezer: Freezer): void {
    const l = this.#later;
    if (l === null) return;
    this.#later = null;
    this.#group = l.path === null ? null : freezer.get(l.path) ?? null;
  }

  /** The group, or null once it was removed. */
  live(host: CgroupHost): FreezerGroup | null {
    this.#later?.binding.bindAll();
    const g = this.#group;
    return g !== null && host.freezer.get(g.path) === g ? g : null;
  }

  /** What a checkpoint records: the live group's path, or null for a stale fd. */
  path(host: CgroupHost): string | null {
    return this.live(host)?.path ?? null;
  }
}

/**
 * The group fds of one restore, bound to their groups together on the first
 * call to any of them: restore builds the files before it loads the freezer's
 * groups, and binding them all at once means a guest's rmdir+mkdir before
 * another fd's first call cannot rebind that fd to the new group.
 *
 * @example
 * const binding = new CgroupBinding(vm);
 * const fd = new CgroupDirFd(vm, binding.ref("/workers"));
 */
export class CgroupBinding {
  readonly #refs: GroupRef[] = [];
  constructor(private readonly host: CgroupHost) {}

  ref(path: string | null): GroupRef {
    const r = GroupRef.later(path, this);
    this.#refs.push(r);
    return r;
  }

  bindAll(): void {
    for (const r of this.#refs.splice(0)) r.bind(this.host.freezer);
  }
}

/** What a file opened under a group directory may get (wasi-libc masks an open's rights with these). */
export const FILE_RIGHTS_ALL = fileRights(true, true);

const enc = new TextEncoder();
const dec = new TextDecoder();

/** How a cgroup file was opened. */
export interface CgroupFileOptions {
  readable: boolean;
  writable: boolean;
  fdflags?: number;
}

/**
 * An open cgroup.procs, cgroup.freeze or cgroup.events. Reads follow Linux's
 * seq_file: a read at offset 0 generates the text, later reads are served
 * from it at the fd's offset (so one pass sees one consistent text). Each
 * write is one value.
 *
 * @example
 * const fd = new CgroupFileFd(vm, group, "cgroup.freeze", { readable: true, writable: true });
 * fd.fd_write(new TextEncoder().encode("1\n")); // the group freezes
 */
export class CgroupFileFd extends FileFdBase {
  readonly kind = "cgroupfile";
  readonly host: CgroupHost;
  readonly ref: GroupRef;
  readonly name: CgroupFileName;
  /** The text of the last read at offset 0, served to later reads; null before any read. */
  content: Uint8Array | null = null;

  constructor(host: CgroupHost, group: FreezerGroup | GroupRef, name: CgroupFileName, opts: CgroupFileOptions) {
    super({ ...opts, append: false });
    this.host = host;
    this.ref = group instanceof GroupRef ? group : new GroupRef(group);
    this.name = name;
  }

  /** seq_file's lseek: SEEK_SET and SEEK_CUR only (the size is unknown until generated). */
  protected currentSize(): { ret: number; size: bigint } {
    return { ret: wasi.ERRNO_INVAL, size: 0n };
  }

  /** The group, or null once it is removed. */
  get group(): FreezerGroup | null {
    return this.ref.live(this.host);
  }

  #generate(g: FreezerGroup): string {
    const fz = this.host.freezer;
    if (this.name === "cgroup.procs") return fz.members(g).map((pid) => `${pid}\n`).join("");
    if (this.name === "cgroup.freeze") return g.frozen ? "1\n" : "0\n";
    const state = fz.state(g);
    const frozen = state === "FROZEN" || state === "CHECKPOINTING";
    return `populated ${fz.populated(g) ? 1 : 0}\nfrozen ${frozen ? 1 : 0}\n`;
  }

  protected override readAt(size: number, at: bigint): { ret: number; data: Uint8Array } {
    if (!this.readable) return { ret: wasi.ERRNO_BADF, data: new Uint8Array(0) };
    const g = this.group;
    if (g === null) return { ret: wasi.ERRNO_NODEV, data: new Uint8Array(0) };
    if (at === 0n || this.content === null) this.content = enc.encode(this.#generate(g));
    const c = this.content;
    if (at >= BigInt(c.length)) return { ret: 0, data: new Uint8Array(0) };
    const start = Number(at);
    return { ret: 0, data: c.slice(start, Math.min(c.length, start + size)) };
  }

  #write(data: Uint8Array): { ret: number; nwritten: number } {
    const fail = (ret: number) => ({ ret, nwritten: 0 });
    if (!this.writable || !writableFile(this.name)) return fail(wasi.ERRNO_BADF);
    const g = this.group;
    if (g === null) return fail(wasi.ERRNO_NODEV);
    const value = dec.decode(data).trim();
    // preview1 hands a writev's iovecs over one at a time, so "1" and "\n" may arrive as two writes: whitespace alone is no value.
    if (value === "") return { ret: 0, nwritten: data.length };
    const ret = this.name === "cgroup.procs" ? this.#move(g, value) : this.#freeze(g, value);
    return ret === 0 ? { ret: 0, nwritten: data.length } : fail(ret);
  }

  /** cgroup.procs ← pid (0: the writer itself, as on Linux). */
  #move(g: FreezerGroup, value: string): number {
    if (!/^\d{1,10}$/.test(value)) return wasi.ERRNO_INVAL;
    const cur = this.host.currentPid();
    const pid = Number(value) === 0 ? cur : Number(value);
    const task = pid === null ? undefined : this.host.tasks.get(pid);
    if (pid === null || task === undefined || task.status === "exited") return wasi.ERRNO_SRCH;
    // A task moves only tasks of its own subtree (itself included); the host (no current task) moves any.
    if (cur !== null && !this.host.inSubtree(pid, cur)) return wasi.ERRNO_PERM;
    this.host.freezer.attach(pid, g);
    return 0;
  }

  /** cgroup.freeze ← 0|1. A thaw waits while a checkpoint reads the group: the task blocks in the write. */
  #freeze(g: FreezerGroup, value: string): number {
    const fz = this.host.freezer;
    if (value === "1") void fz.freeze(g);
    else if (value === "0") {
      if (fz.thawBlocked(g)) return ERRNO_WOULDBLOCK;
      void fz.thaw(g); // not blocked: it completes before thaw() returns
    } else return wasi.ERRNO_INVAL;
    return 0;
  }

  #thawWouldBlock(): boolean {
    const g = this.name === "cgroup.freeze" ? this.group : null;
    return g !== null && this.host.freezer.thawBlocked(g);
  }

  override fd_write(data: Uint8Array) {
    const r = this.#write(data);
    if (r.ret === 0) this.pos += BigInt(r.nwritten);
    return r;
  }
  override fd_pwrite(data: Uint8Array, _offset: bigint) {
    return this.#write(data);
  }
  override fd_filestat_get() {
    const g = this.group;
    return g === null ? { ret: wasi.ERRNO_NODEV, filestat: null } : { ret: 0, filestat: cgroupStat(g, this.name) };
  }
  /** ftruncate (and a shell's O_TRUNC) is accepted and changes nothing, as on kernfs. */
  override fd_filestat_set_size(_size: bigint): number {
    if (!this.writable) return wasi.ERRNO_BADF;
    return this.group === null ? wasi.ERRNO_NODEV : 0;
  }
  override fd_filestat_set_times(_atim: bigint, _mtim: bigint, _fst: number): number {
    return wasi.ERRNO_PERM;
  }
  override fd_sync(): number {
    return 0;
  }
  override fd_close(): number {
    return 0;
  }
  override readiness(): { read: boolean; write: boolean } {
    return { read: true, write: !this.#thawWouldBlock() };
  }
  override whenReady(what: "read" | "write"): Promise<void> {
    return what === "write" && this.#thawWouldBlock() ? this.host.freezer.checkpointDone() : Promise.resolve();
  }
}
