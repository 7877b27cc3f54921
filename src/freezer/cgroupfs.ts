// The cgroup filesystem: the freezer as guests see it at /sys/fs/cgroup, a
// cgroup v2 hierarchy with only the freezer. A group is a directory; mkdir
// and rmdir create and remove groups; cgroup.procs, cgroup.freeze and
// cgroup.events (in _cgroupfs_file.ts) list, move and freeze tasks. Every fd
// keeps its state in public fields, so src/checkpoint/fds.ts dumps it.
//
// Errno choices (Linux's, from its VFS and kernfs, unless noted): leaving the
// preopen by `..` or an absolute path → ENOTCAPABLE (crvm's sandbox rule, as
// in memfs); a missing entry → ENOENT; O_CREAT of a new file → EACCES (the
// VFS answer when a directory has no create operation); O_CREAT|O_DIRECTORY
// → EINVAL; a directory opened for writing or with O_CREAT/O_TRUNC → EISDIR;
// O_DIRECTORY or a trailing slash on a file → ENOTDIR; cgroup.events opened
// for writing → EACCES (kernfs refuses a write open of a file without a
// write operation, even to root); O_TRUNC on a writable file is ignored
// (`echo 1 > cgroup.freeze` opens with it); mkdir of an existing name →
// EEXIST, of a bad name (see Freezer.create) → EINVAL; rmdir of a group with
// tasks or child groups, or one a checkpoint reads → EBUSY, of `.` → EINVAL,
// of a file → ENOTDIR; unlink, link and symlink → EPERM (kernfs has no such
// operations), of a directory → EISDIR; rename → EPERM (the freezer cannot
// rename groups; Linux can, within one parent); set-times → EPERM (times are
// not kept). An fd whose group was removed fails its later calls: a file fd
// with ENODEV (kernfs), a directory fd with ENOENT.
import { DirFdBase } from "../wasi/_fs_common.ts";
import { type CrvmFd, wasi } from "../wasi/fd.ts";
import { resolvePath, type NodeType, type PathWalker, type WalkResult } from "../wasi/path.ts";
import {
  CgroupFileFd, GroupRef, FILE_RIGHTS_ALL, cgroupStat, filesOf, freezerErrno, inoOf, positionOf, writableFile,
  type CgroupFileName, type CgroupHost,
} from "./_cgroupfs_file.ts";
import type { FreezerGroup } from "./freezer.ts";

export { CgroupBinding, CgroupFileFd, GroupRef, type CgroupFileName, type CgroupFileOptions, type CgroupHost } from "./_cgroupfs_file.ts";

/** Where every task finds the cgroup filesystem. */
export const CGROUPFS_PATH = "/sys/fs/cgroup";

const R = (n: number) => BigInt(n);
const DIR_RIGHTS = R(wasi.RIGHTS_PATH_CREATE_DIRECTORY) | R(wasi.RIGHTS_PATH_CREATE_FILE) | R(wasi.RIGHTS_PATH_OPEN) |
  R(wasi.RIGHTS_FD_READDIR) | R(wasi.RIGHTS_PATH_FILESTAT_GET) | R(wasi.RIGHTS_FD_FILESTAT_GET) |
  R(wasi.RIGHTS_PATH_REMOVE_DIRECTORY) | R(wasi.RIGHTS_PATH_UNLINK_FILE) | R(wasi.RIGHTS_FD_FDSTAT_SET_FLAGS) |
  R(wasi.RIGHTS_FD_SYNC) | R(wasi.RIGHTS_POLL_FD_READWRITE);

/** A node of a path walk: a group directory (`file` null) or one of its files. */
interface Node {
  group: FreezerGroup;
  file: CgroupFileName | null;
}

const joinPath = (parent: string, name: string) => (parent === "/" ? `/${name}` : `${parent}/${name}`);

/**
 * An open group directory. Paths are resolved from its group; `..` climbs
 * up to the root group and no further.
 *
 * @example
 * dir.path_create_directory("workers");            // freezer.create("/workers")
 * dir.path_open(0, "workers/cgroup.freeze", 0, BigInt(wasi.RIGHTS_FD_WRITE), 0n, 0);
 */
export class CgroupDirFd extends DirFdBase implements PathWalker<Node> {
  readonly kind: string = "cgroupdir";
  readonly host: CgroupHost;
  readonly ref: GroupRef;

  constructor(host: CgroupHost, group: FreezerGroup | GroupRef) {
    super();
    this.host = host;
    this.ref = group instanceof GroupRef ? group : new GroupRef(group);
  }

  /** The group, or null once it is removed. */
  get group(): FreezerGroup | null {
    return this.ref.live(this.host);
  }

  #live(g: FreezerGroup): boolean {
    return this.host.freezer.get(g.path) === g;
  }

  // PathWalker: how walkPath sees the group tree.
  lookup(dir: Node, name: string): { ret: number; node: Node | null; type: NodeType | null } {
    if (!this.#live(dir.group)) return { ret: wasi.ERRNO_NOENT, node: null, type: null };
    const file = filesOf(dir.group).find((f) => f === name);
    if (file !== undefined) return { ret: 0, node: { group: dir.group, file }, type: "file" };
    const child = dir.group.children.get(name);
    return child === undefined ? { ret: 0, node: null, type: null } : { ret: 0, node: { group: child, file: null }, type: "dir" };
  }
  parent(dir: Node): { ret: number; node: Node | null } {
    const p = dir.group.parent;
    if (p === null) return { ret: wasi.ERRNO_NOTCAPABLE, node: null };
    if (!this.#live(dir.group)) return { ret: wasi.ERRNO_NOENT, node: null };
    return { ret: 0, node: { group: p, file: null } };
  }
  readlink(_link: Node): { ret: number; target: string } {
    return { ret: wasi.ERRNO_INVAL, target: "" }; // no symlinks here
  }

  /** Resolves a guest path from this directory (there are no symlinks to follow). */
  #walk(path: string): { r: WalkResult<Node>; mustBeDir: boolean } {
    const g = this.group;
    if (g === null) return { r: { ret: wasi.ERRNO_NOENT, dir: null, name: null, node: null, type: null }, mustBeDir: false };
    return resolvePath<Node>(this, { group: g, file: null }, path, "never");
  }

  override path_open(_dirflags: number, path: string, oflags: number, rightsBase: bigint, _ri: bigint, fdflags: number) {
    const no = (ret: number) => ({ ret, fd_obj: null });
    const creat = (oflags & wasi.OFLAGS_CREAT) !== 0;
    if (creat && (oflags & wasi.OFLAGS_DIRECTORY) !== 0) return no(wasi.ERRNO_INVAL);
    const { r, mustBeDir } = this.#walk(path);
    if (r.ret !== 0) return no(r.ret);
    const readable = (rightsBase & R(wasi.RIGHTS_FD_READ)) !== 0n;
    const writable = (rightsBase & R(wasi.RIGHTS_FD_WRITE)) !== 0n;
    const node = r.node;
    if (node === null) {
      if (!creat) return no(wasi.ERRNO_NOENT);
      return no(mustBeDir ? wasi.ERRNO_ISDIR : wasi.ERRNO_ACCES);
    }
    if (creat && (oflags & wasi.OFLAGS_EXCL) !== 0) return no(wasi.ERRNO_EXIST);
    if (node.file === null) {
      if (writable || creat || (oflags & wasi.OFLAGS_TRUNC) !== 0) return no(wasi.ERRNO_ISDIR);
      return { ret: 0, fd_obj: new CgroupDirFd(this.host, node.group) };
    }
    if ((oflags & wasi.OFLAGS_DIRECTORY) !== 0) return no(wasi.ERRNO_NOTDIR);
    if (writable && !writableFile(node.file)) return no(wasi.ERRNO_ACCES);
    return { ret: 0, fd_obj: new CgroupFileFd(this.host, node.group, node.file, { readable, writable, fdflags }) };
  }

  override path_create_directory(path: string): number {
    const { r } = this.#walk(path);
    if (r.ret !== 0) return r.ret;
    if (r.node !== null) return wasi.ERRNO_EXIST;
    const parent = r.dir!.group;
    return freezerErrno(() => this.host.freezer.create(joinPath(parent.path, r.name!)));
  }

  override path_remove_directory(path: string): number {
    const { r } = this.#walk(path);
    if (r.ret !== 0) return r.ret;
    if (r.name === null) return wasi.ERRNO_INVAL; // "." or ".."
    if (r.node === null) return wasi.ERRNO_NOENT;
    if (r.node.file !== null) return wasi.ERRNO_NOTDIR;
    const group = r.node.group.path;
    return freezerErrno(() => this.host.freezer.remove(group));
  }

  override path_unlink_file(path: string): number {
    const { r } = this.#walk(path);
    if (r.ret !== 0) return r.ret;
    if (r.name === null || r.node?.file === null) return wasi.ERRNO_ISDIR;
    return r.node === null ? wasi.ERRNO_NOENT : wasi.ERRNO_PERM;
  }

  override path_filestat_get(_flags: number, path: string) {
    const { r } = this.#walk(path);
    if (r.ret !== 0) return { ret: r.ret, filestat: null };
    if (r.node === null) return { ret: wasi.ERRNO_NOENT, filestat: null };
    return { ret: 0, filestat: cgroupStat(r.node.group, r.node.file) };
  }

  override path_filestat_set_times(_flags: number, path: string, _atim: bigint, _mtim: bigint, _fst: number): number {
    const { r } = this.#walk(path);
    if (r.ret !== 0) return r.ret;
    return r.node === null ? wasi.ERRNO_NOENT : wasi.ERRNO_PERM;
  }

  override path_readlink(path: string) {
    const { r } = this.#walk(path);
    if (r.ret !== 0) return { ret: r.ret, data: null };
    return { ret: r.node === null ? wasi.ERRNO_NOENT : wasi.ERRNO_INVAL, data: null };
  }

  override path_symlink(_target: string, path: string): number {
    const { r } = this.#walk(path);
    if (r.ret !== 0) return r.ret;
    return r.node === null ? wasi.ERRNO_PERM : wasi.ERRNO_EXIST;
  }

  override path_link_to(_oldPath: string, _follow: boolean, target: CrvmFd, _newPath: string): number {
    return target instanceof CgroupDirFd ? wasi.ERRNO_PERM : wasi.ERRNO_XDEV;
  }

  override path_rename_to(_oldPath: string, target: CrvmFd, _newPath: string): number {
    return target instanceof CgroupDirFd ? wasi.ERRNO_PERM : wasi.ERRNO_XDEV;
  }

  override fd_readdir_single(cookie: bigint) {
    const g = this.group;
    if (g === null) return { ret: wasi.ERRNO_NOENT, dirent: null };
    if (cookie === 0n) return { ret: 0, dirent: new wasi.Dirent(1n, inoOf(g, null), ".", wasi.FILETYPE_DIRECTORY) };
    if (cookie === 1n) return { ret: 0, dirent: new wasi.Dirent(2n, inoOf(g.parent ?? g, null), "..", wasi.FILETYPE_DIRECTORY) };
    const entries: [string, bigint, number][] = filesOf(g).map((f) => [f, inoOf(g, f), wasi.FILETYPE_REGULAR_FILE]);
    for (const [name, c] of g.children) entries.push([name, inoOf(c, null), wasi.FILETYPE_DIRECTORY]);
    // The entry with the lowest position at or after the cookie (see positionOf).
    let best: { pos: bigint; name: string; ino: bigint; type: number } | null = null;
    for (const [name, ino, type] of entries) {
      const pos = positionOf(name);
      if (pos >= cookie && (best === null || pos < best.pos)) best = { pos, name, ino, type };
    }
    return { ret: 0, dirent: best === null ? null : new wasi.Dirent(best.pos + 1n, best.ino, best.name, best.type) };
  }

  override fd_filestat_get() {
    const g = this.group;
    return g === null ? { ret: wasi.ERRNO_NOENT, filestat: null } : { ret: 0, filestat: cgroupStat(g, null) };
  }
  override fd_filestat_set_times(_atim: bigint, _mtim: bigint, _fst: number): number {
    return wasi.ERRNO_PERM;
  }
  override fd_fdstat_get() {
    // The directory calls a cgroup directory answers (no links, renames or symlinks).
    const r = super.fd_fdstat_get();
    r.fdstat.fs_rights_base = DIR_RIGHTS;
    r.fdstat.fs_rights_inherited = DIR_RIGHTS | FILE_RIGHTS_ALL;
    return r;
  }
}

/**
 * The cgroup filesystem as a preopen at /sys/fs/cgroup: the root group's
 * directory. Give one to every task's fd table (a fork shares it).
 *
 * @example
 * fds.add(new CgroupPreopenFd(vm));
 */
export class CgroupPreopenFd extends CgroupDirFd {
  override readonly kind: string = "cgrouppreopen";

  /** `root` is for restore only (a reference of its CgroupBinding, so that its first call binds the others). */
  constructor(host: CgroupHost, root: GroupRef = new GroupRef(host.freezer.root)) {
    super(host, root);
  }

  override fd_prestat_get(): { ret: number; prestat: wasi.Prestat | null } {
    return { ret: 0, prestat: wasi.Prestat.dir(CGROUPFS_PATH) };
  }
}
