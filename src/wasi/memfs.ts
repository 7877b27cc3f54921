// crvm's in-memory filesystem: the fd objects a guest holds on it. The
// inodes are in memfs_inode.ts (re-exported here). Every fd keeps its state in
// public fields (`env` is the VM's environment, not state: restore passes it
// again), so checkpoint/restore can rebuild each fd from its fields.
//
// Errno choices (POSIX/Linux unless noted): leaving the preopen by `..`, an
// absolute path or an absolute symlink target → ENOTCAPABLE; a symlink as the
// last component of path_open without LOOKUPFLAGS_SYMLINK_FOLLOW → ELOOP
// (O_NOFOLLOW); O_CREAT|O_DIRECTORY → EINVAL; opening a directory for writing
// or with O_TRUNC/O_CREAT → EISDIR; read/write/seek on a directory → EISDIR;
// a write, truncate or allocate through an fd without write access → EBADF,
// a read without read access → EBADF (wasmtime's choice); rename/link between
// different kinds of fs → EXDEV; rmdir of `.`/`..` → EINVAL; rename of
// `.`/`..` → EBUSY; hard link to a directory → EPERM.
import { CrvmFd, wasi } from "./fd.ts";
import {
  DirFdBase, FileFdBase, LOOKUPFLAGS_SYMLINK_FOLLOW,
  accessOf, applyTimes, checkOpenFlags, type FileFdOptions,
} from "./_fs_common.ts";
import { MEM_FILE_MAX, MemDir, MemFile, MemSymlink, memFiletype, memStat, type FsEnv, type MemInode } from "./memfs_inode.ts";
import { resolvePath, type NodeType, type PathWalker, type WalkResult } from "./path.ts";

export { MEM_FILE_MAX, MemDir, MemFile, MemSymlink, memStat, type FsEnv, type MemInode } from "./memfs_inode.ts";
export type { FileFdOptions } from "./_fs_common.ts";


/**
 * An open regular file of the in-memory fs. `pos` is the file offset; with
 * `append` every write goes to the end. After unlink the fd keeps the file
 * (nlink 0) readable and writable, as on POSIX.
 *
 * @example
 * const fd = new MemFileFd(env, new MemFile(env), { readable: true, writable: true, append: false });
 * fd.fd_write(new TextEncoder().encode("hi")); // { ret: 0, nwritten: 2 }
 */
export class MemFileFd extends FileFdBase {
  readonly kind = "memfile";
  env: FsEnv;
  file: MemFile;

  constructor(env: FsEnv, file: MemFile, opts: FileFdOptions) {
    super(opts);
    this.env = env;
    this.file = file;
  }

  protected override readAt(size: number, at: bigint): { ret: number; data: Uint8Array } {
    if (!this.readable) return { ret: wasi.ERRNO_BADF, data: new Uint8Array(0) };
    const f = this.file;
    if (at >= BigInt(f.size)) return { ret: 0, data: new Uint8Array(0) };
    const start = Number(at);
    // A copy, not a view: the caller may keep it past the next write that reallocates `data`.
    return { ret: 0, data: f.data.slice(start, Math.min(f.size, start + size)) };
  }

  /** Write at byte `at` (a bigint offset from the guest); returns the end offset. Number math on the hot path: BigInt arithmetic per 1-byte write costs more than the copy. */
  #writeAt(data: Uint8Array, at: bigint): { ret: number; end: number } {
    if (!this.writable) return { ret: wasi.ERRNO_BADF, end: 0 };
    const f = this.file;
    const start = Number(at);
    const end = start + data.length;
    if (end > MEM_FILE_MAX) return { ret: wasi.ERRNO_FBIG, end: 0 };
    if (end > f.data.length) {
      const ret = f.reserve(end);
      if (ret !== 0) return { ret, end: 0 };
    }
    // Bytes between the old size and `start` are already zero. A loop beats
    // TypedArray.set for the tiny writes of byte-at-a-time guests.
    if (data.length <= 16) for (let i = 0; i < data.length; i++) f.data[start + i] = data[i]!;
    else f.data.set(data, start);
    if (end > f.size) f.size = end;
    f.mtimNs = f.ctimNs = this.env.now();
    return { ret: 0, end };
  }

  override fd_write(data: Uint8Array) {
    const r = this.#writeAt(data, this.append ? BigInt(this.file.size) : this.pos);
    if (r.ret !== 0) return { ret: r.ret, nwritten: 0 };
    this.pos = BigInt(r.end);
    return { ret: 0, nwritten: data.length };
  }
  override fd_pwrite(data: Uint8Array, offset: bigint) {
    // pwrite writes at `offset` even with append (POSIX; Linux's O_APPEND pwrite quirk is not copied).
    const r = this.#writeAt(data, offset);
    return { ret: r.ret, nwritten: r.ret === 0 ? data.length : 0 };
  }
  protected currentSize() {
    return { ret: 0, size: BigInt(this.file.size) };
  }
  override fd_filestat_get() {
    return { ret: 0, filestat: memStat(this.file) };
  }
  override fd_filestat_set_size(size: bigint): number {
    if (!this.writable) return wasi.ERRNO_BADF;
    if (size < 0n) return wasi.ERRNO_INVAL;
    if (size > BigInt(Number.MAX_SAFE_INTEGER)) return wasi.ERRNO_FBIG;
    const ret = this.file.resize(Number(size));
    if (ret === 0) this.file.mtimNs = this.file.ctimNs = this.env.now();
    return ret;
  }
  override fd_allocate(offset: bigint, len: bigint): number {
    if (!this.writable) return wasi.ERRNO_BADF;
    if (offset < 0n || len <= 0n) return wasi.ERRNO_INVAL;
    const end = offset + len;
    if (end <= BigInt(this.file.size)) return 0; // posix_fallocate never shrinks
    return this.fd_filestat_set_size(end);
  }
  override fd_filestat_set_times(atim: bigint, mtim: bigint, fstFlags: number): number {
    return setTimes(this.file, atim, mtim, fstFlags, this.env.now);
  }
  override fd_sync(): number {
    return 0;
  }
  override fd_close(): number {
    return 0;
  }
}

function setTimes(node: MemInode, atim: bigint, mtim: bigint, fstFlags: number, now: () => bigint): number {
  const t = applyTimes(node.atimNs, node.mtimNs, atim, mtim, fstFlags, now);
  if (t.ret !== 0) return t.ret;
  node.atimNs = t.atim;
  node.mtimNs = t.mtim;
  node.ctimNs = now();
  return 0;
}

function typeOf(node: MemInode): NodeType {
  return node instanceof MemDir ? "dir" : node instanceof MemSymlink ? "symlink" : "file";
}

/**
 * An open directory of the in-memory fs. Paths are resolved from `dir`;
 * `..` may climb up to `root` (the preopen's directory) and no further.
 *
 * @example
 * const { fd_obj } = dirFd.path_open(0, "notes.txt", wasi.OFLAGS_CREAT, BigInt(wasi.RIGHTS_FD_WRITE), 0n, 0);
 */
export class MemDirFd extends DirFdBase implements PathWalker<MemInode> {
  readonly kind: string = "memdir";
  env: FsEnv;
  dir: MemDir;
  /** The directory of the preopen this fd was opened under: the sandbox root for `..`. */
  root: MemDir;
  // Transient cache, not state: a live iterator positioned after the last
  // entry returned, so a readdir that continues from that cookie is O(1).
  // Lost on restore, then rebuilt by a scan.
  #cursor: { next: bigint; it: Iterator<[string, MemInode]> } | null = null;

  constructor(env: FsEnv, dir: MemDir, root: MemDir) {
    super();
    this.env = env;
    this.dir = dir;
    this.root = root;
  }

  // PathWalker: how walkPath sees this fs.
  lookup(dir: MemInode, name: string): { ret: number; node: MemInode | null; type: NodeType | null } {
    const node = (dir as MemDir).entries.get(name) ?? null;
    return { ret: 0, node, type: node === null ? null : typeOf(node) };
  }
  parent(dir: MemInode): { ret: number; node: MemInode | null } {
    if (dir === this.root) return { ret: wasi.ERRNO_NOTCAPABLE, node: null };
    const p = (dir as MemDir).parent;
    // A removed directory has no parent any more; outside the root's tree there is nothing to reach.
    if (p === null) return { ret: wasi.ERRNO_NOENT, node: null };
    return { ret: 0, node: p };
  }
  readlink(link: MemInode): { ret: number; target: string } {
    return { ret: 0, target: (link as MemSymlink).target };
  }

  /** Parse and resolve a guest path from this directory (a trailing slash also follows a final symlink). */
  #walk(path: string, followLast: boolean): { r: WalkResult<MemInode>; mustBeDir: boolean } {
    return resolvePath(this, this.dir, path, followLast);
  }
  /** Same, for calls that act on the last component itself (never follow it, even with a trailing slash). */
  #walkNoFollow(path: string): { r: WalkResult<MemInode>; mustBeDir: boolean } {
    return resolvePath(this, this.dir, path, "never");
  }

  override fd_filestat_get() {
    return { ret: 0, filestat: memStat(this.dir) };
  }
  override fd_filestat_set_times(atim: bigint, mtim: bigint, fstFlags: number): number {
    return setTimes(this.dir, atim, mtim, fstFlags, this.env.now);
  }

  override fd_readdir_single(cookie: bigint) {
    const dir = this.dir;
    if (cookie === 0n) return { ret: 0, dirent: new wasi.Dirent(1n, dir.ino, ".", wasi.FILETYPE_DIRECTORY) };
    if (cookie === 1n) {
      const up = dir === this.root || dir.parent === null ? dir : dir.parent;
      return { ret: 0, dirent: new wasi.Dirent(2n, up.ino, "..", wasi.FILETYPE_DIRECTORY) };
    }
    const c = this.#cursor;
    const it = c !== null && c.next === cookie ? c.it : dir.entries.entries();
    for (;;) {
      const n = it.next();
      if (n.done) {
        this.#cursor = null;
        return { ret: 0, dirent: null };
      }
      const [name, node] = n.value;
      const seq = dir.cookies.get(name)!;
      if (seq < cookie) continue; // entries keep cookie order, so this only skips on a fresh scan
      this.#cursor = { next: seq + 1n, it };
      return { ret: 0, dirent: new wasi.Dirent(seq + 1n, node.ino, name, memFiletype(node)) };
    }
  }

  override path_open(dirflags: number, path: string, oflags: number, rightsBase: bigint, _rightsInheriting: bigint, fdflags: number) {
    const no = (ret: number) => ({ ret, fd_obj: null });
    const bad = checkOpenFlags(oflags);
    if (bad !== 0) return no(bad);
    const creat = (oflags & wasi.OFLAGS_CREAT) !== 0;
    const excl = creat && (oflags & wasi.OFLAGS_EXCL) !== 0;
    // O_EXCL never follows a symlink in the last component: an existing link is EEXIST.
    const follow = !excl && (dirflags & LOOKUPFLAGS_SYMLINK_FOLLOW) !== 0;
    const { r, mustBeDir } = excl ? this.#walkNoFollow(path) : this.#walk(path, follow);
    if (r.ret !== 0) return no(r.ret);
    const { readable, writable } = accessOf(rightsBase);
    const opts = { readable, writable, append: (fdflags & wasi.FDFLAGS_APPEND) !== 0, fdflags };
    if (r.node === null) {
      if (!creat) return no(wasi.ERRNO_NOENT);
      if (mustBeDir) return no(wasi.ERRNO_ISDIR);
      const parent = r.dir as MemDir;
      if (parent.removed) return no(wasi.ERRNO_NOENT);
      const f = new MemFile(this.env);
      parent.add(r.name!, f);
      parent.mtimNs = parent.ctimNs = f.ctimNs;
      return { ret: 0, fd_obj: new MemFileFd(this.env, f, opts) };
    }
    if (excl) return no(wasi.ERRNO_EXIST);
    const node = r.node;
    if (node instanceof MemSymlink) return no(wasi.ERRNO_LOOP);
    if (node instanceof MemDir) {
      if (writable || creat || (oflags & wasi.OFLAGS_TRUNC) !== 0) return no(wasi.ERRNO_ISDIR);
      return { ret: 0, fd_obj: new MemDirFd(this.env, node, this.root) };
    }
    if ((oflags & wasi.OFLAGS_DIRECTORY) !== 0) return no(wasi.ERRNO_NOTDIR);
    if ((oflags & wasi.OFLAGS_TRUNC) !== 0 && node.size > 0) {
      node.resize(0);
      node.mtimNs = node.ctimNs = this.env.now();
    }
    return { ret: 0, fd_obj: new MemFileFd(this.env, node, opts) };
  }

  override path_create_directory(path: string): number {
    const { r } = this.#walkNoFollow(path);
    if (r.ret !== 0) return r.ret;
    if (r.node !== null) return wasi.ERRNO_EXIST;
    const parent = r.dir as MemDir;
    if (parent.removed) return wasi.ERRNO_NOENT;
    const d = new MemDir(this.env);
    parent.add(r.name!, d);
    parent.mtimNs = parent.ctimNs = d.ctimNs;
    return 0;
  }

  override path_filestat_get(flags: number, path: string) {
    const { r } = this.#walk(path, (flags & LOOKUPFLAGS_SYMLINK_FOLLOW) !== 0);
    if (r.ret !== 0) return { ret: r.ret, filestat: null };
    if (r.node === null) return { ret: wasi.ERRNO_NOENT, filestat: null };
    return { ret: 0, filestat: memStat(r.node) };
  }

  override path_filestat_set_times(flags: number, path: string, atim: bigint, mtim: bigint, fstFlags: number): number {
    const { r } = this.#walk(path, (flags & LOOKUPFLAGS_SYMLINK_FOLLOW) !== 0);
    if (r.ret !== 0) return r.ret;
    if (r.node === null) return wasi.ERRNO_NOENT;
    return setTimes(r.node, atim, mtim, fstFlags, this.env.now);
  }

  override path_readlink(path: string) {
    const { r } = this.#walkNoFollow(path);
    if (r.ret !== 0) return { ret: r.ret, data: null };
    if (r.node === null) return { ret: wasi.ERRNO_NOENT, data: null };
    if (!(r.node instanceof MemSymlink)) return { ret: wasi.ERRNO_INVAL, data: null };
    return { ret: 0, data: r.node.target };
  }

  override path_remove_directory(path: string): number {
    const { r } = this.#walkNoFollow(path);
    if (r.ret !== 0) return r.ret;
    if (r.name === null) return wasi.ERRNO_INVAL; // "." or ".."
    const node = r.node;
    if (node === null) return wasi.ERRNO_NOENT;
    if (!(node instanceof MemDir)) return wasi.ERRNO_NOTDIR;
    if (node === this.root) return wasi.ERRNO_BUSY;
    if (node.entries.size > 0) return wasi.ERRNO_NOTEMPTY;
    const parent = r.dir as MemDir;
    parent.remove(r.name);
    node.removed = true;
    node.parent = null;
    parent.mtimNs = parent.ctimNs = this.env.now();
    return 0;
  }

  override path_unlink_file(path: string): number {
    const { r } = this.#walkNoFollow(path);
    if (r.ret !== 0) return r.ret;
    const node = r.node;
    if (r.name === null || node instanceof MemDir) return wasi.ERRNO_ISDIR;
    if (node === null) return wasi.ERRNO_NOENT;
    const parent = r.dir as MemDir;
    parent.remove(r.name);
    const t = this.env.now();
    node.ctimNs = t;
    parent.mtimNs = parent.ctimNs = t;
    return 0;
  }

  override path_symlink(target: string, path: string): number {
    if (target.includes("\0")) return wasi.ERRNO_INVAL;
    if (target === "") return wasi.ERRNO_NOENT;
    // A link to an absolute path could only ever name the host's root: refuse it when made (wasi-testsuite symlink_create).
    if (target.startsWith("/")) return wasi.ERRNO_NOTCAPABLE;
    const { r, mustBeDir } = this.#walkNoFollow(path);
    if (r.ret !== 0) return r.ret;
    if (r.node !== null || r.name === null) return wasi.ERRNO_EXIST;
    if (mustBeDir) return wasi.ERRNO_NOENT; // a symlink's name cannot end in "/" (Linux)
    const parent = r.dir as MemDir;
    if (parent.removed) return wasi.ERRNO_NOENT;
    const l = new MemSymlink(this.env, target);
    parent.add(r.name, l);
    parent.mtimNs = parent.ctimNs = l.ctimNs;
    return 0;
  }

  override path_link_to(oldPath: string, followSymlinks: boolean, target: CrvmFd, newPath: string): number {
    if (!(target instanceof MemDirFd)) return wasi.ERRNO_XDEV;
    const { r: o } = followSymlinks ? this.#walk(oldPath, true) : this.#walkNoFollow(oldPath);
    if (o.ret !== 0) return o.ret;
    const node = o.node;
    if (node === null) return wasi.ERRNO_NOENT;
    if (node instanceof MemDir) return wasi.ERRNO_PERM; // no hard links to directories
    const { r: n, mustBeDir } = target.#walkNoFollow(newPath);
    if (n.ret !== 0) return n.ret;
    if (n.node !== null || n.name === null) return wasi.ERRNO_EXIST;
    if (mustBeDir) return wasi.ERRNO_NOENT; // wasi-testsuite path_link: "link/" → ENOENT
    const parent = n.dir as MemDir;
    if (parent.removed) return wasi.ERRNO_NOENT;
    parent.add(n.name, node);
    const t = this.env.now();
    node.ctimNs = t;
    parent.mtimNs = parent.ctimNs = t;
    return 0;
  }

  override path_rename_to(oldPath: string, target: CrvmFd, newPath: string): number {
    if (!(target instanceof MemDirFd)) return wasi.ERRNO_XDEV;
    const { r: o } = this.#walkNoFollow(oldPath);
    if (o.ret !== 0) return o.ret;
    if (o.name === null) return wasi.ERRNO_BUSY;
    const src = o.node;
    if (src === null) return wasi.ERRNO_NOENT;
    const { r: n, mustBeDir } = target.#walkNoFollow(newPath);
    if (n.ret !== 0) return n.ret;
    if (n.name === null) return wasi.ERRNO_BUSY;
    const srcIsDir = src instanceof MemDir;
    if (mustBeDir && !srcIsDir) return wasi.ERRNO_NOTDIR;
    const dst = n.node;
    if (dst === src) return 0; // two names of one inode: POSIX says do nothing
    const oldParent = o.dir as MemDir, newParent = n.dir as MemDir;
    if (newParent.removed) return wasi.ERRNO_NOENT;
    if (srcIsDir) {
      // A directory cannot move into its own subtree.
      for (let d: MemDir | null = newParent; d !== null; d = d.parent) if (d === src) return wasi.ERRNO_INVAL;
    }
    if (dst !== null) {
      const dstIsDir = dst instanceof MemDir;
      if (srcIsDir && !dstIsDir) return wasi.ERRNO_NOTDIR;
      if (!srcIsDir && dstIsDir) return wasi.ERRNO_ISDIR;
      if (dstIsDir && (dst.entries.size > 0)) return wasi.ERRNO_NOTEMPTY;
      if (dst === this.root || dst === target.root) return wasi.ERRNO_BUSY;
    }
    const t = this.env.now();
    if (dst !== null) {
      newParent.remove(n.name);
      if (dst instanceof MemDir) {
        dst.removed = true;
        dst.parent = null;
      }
      dst.ctimNs = t;
    }
    oldParent.remove(o.name);
    newParent.add(n.name, src); // adopts a directory (sets its parent)
    src.ctimNs = t;
    oldParent.mtimNs = oldParent.ctimNs = t;
    newParent.mtimNs = newParent.ctimNs = t;
    return 0;
  }
}

/**
 * A preopened in-memory directory: what the guest finds at `name` (e.g.
 * "/tmp") through fd_prestat_get. Its directory is the sandbox root.
 *
 * @example
 * const tmp = new MemPreopenFd(env, "/tmp"); // a fresh empty directory
 */
export class MemPreopenFd extends MemDirFd {
  override readonly kind: string = "mempreopen";
  name: string;

  constructor(env: FsEnv, name: string, dir: MemDir = new MemDir(env)) {
    super(env, dir, dir);
    this.name = name;
  }

  override fd_prestat_get(): { ret: number; prestat: wasi.Prestat | null } {
    return { ret: 0, prestat: wasi.Prestat.dir(this.name) };
  }
}
