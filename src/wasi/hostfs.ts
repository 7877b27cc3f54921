// Host directories given to the guest with `--dir HOST::GUEST`. Files are the
// real host files, read and written in place. The guest reaches only what is
// inside the preopen: every path is resolved here, one component at a time
// with lstat (walkPath in path.ts), `..` stops at the preopen root, and a
// symlink is followed only while its target stays inside; the final open
// uses O_NOFOLLOW. node:fs has no openat(), so a host process that swaps a
// directory for a symlink between our lstat and our open could still win
// that race; crvm guards against the guest, not against the host.
//
// Positions are crvm's (`pos`), every read and write passes an explicit
// offset, so a host fd's own offset never matters: restore reopens the file
// by `hostPathOf(preopen, rel)` and sets `pos`.
//
// Errno choices are those of memfs.ts (sandbox escapes → ENOTCAPABLE, a
// symlink opened without SYMLINK_FOLLOW → ELOOP, ...); host failures are
// mapped by errnoOf (errno.ts). Opening a fifo, socket or device → ENOTSUP
// (opening a fifo would block the whole VM in a synchronous open).
import type { HostFs, HostOpenFlags, HostStat } from "../host/types.ts";
import { CrvmFd, CrvmFilestat, wasi } from "./fd.ts";
import {
  DirFdBase, FileFdBase, LOOKUPFLAGS_SYMLINK_FOLLOW,
  accessOf, applyTimes, checkOpenFlags, type FileFdOptions,
} from "./_fs_common.ts";
import { errnoOf } from "./errno.ts";
import { resolvePath, type NodeType, type PathWalker, type WalkResult } from "./path.ts";

/** A host directory and the guest path it appears at. `hostPath` is absolute (and best already a realpath). */
export interface HostPreopen {
  guestPath: string;
  hostPath: string;
}

/**
 * The host path of `rel` (a path inside the preopen, "" for its root).
 *
 * @example
 * hostPathOf({ guestPath: "/data", hostPath: "/srv/data" }, "a/b.txt") // "/srv/data/a/b.txt"
 */
export function hostPathOf(preopen: HostPreopen, rel: string): string {
  if (rel === "") return preopen.hostPath;
  return preopen.hostPath.endsWith("/") ? preopen.hostPath + rel : `${preopen.hostPath}/${rel}`;
}

const join = (dir: string, name: string) => (dir === "" ? name : `${dir}/${name}`);

/** Largest single read: a guest asking for gigabytes gets a short read instead of a huge allocation. */
const MAX_READ = 16 * 1024 * 1024;

// Host files carry host time, so "now" for ATIM_NOW/MTIM_NOW is the host's
// clock (the in-memory fs uses the VM's clock instead).
const hostNowNs = () => BigInt(Date.now()) * 1_000_000n;

function hostFiletype(t: HostStat["type"]): number {
  switch (t) {
    case "file": return wasi.FILETYPE_REGULAR_FILE;
    case "dir": return wasi.FILETYPE_DIRECTORY;
    case "symlink": return wasi.FILETYPE_SYMBOLIC_LINK;
    case "char": return wasi.FILETYPE_CHARACTER_DEVICE;
    case "block": return wasi.FILETYPE_BLOCK_DEVICE;
    case "socket": return wasi.FILETYPE_SOCKET_STREAM;
    default: return wasi.FILETYPE_UNKNOWN; // WASI has no fifo type
  }
}

function toFilestat(s: HostStat): CrvmFilestat {
  const st = new CrvmFilestat(s.ino, hostFiletype(s.type), s.size);
  st.dev = s.dev;
  st.nlink = s.nlink;
  st.atim = s.atimeNs;
  st.mtim = s.mtimeNs;
  st.ctim = s.ctimeNs;
  return st;
}

/** Run a host call; a `HostFsError` becomes its errno, anything else propagates. */
function host(f: () => void): number {
  try {
    f();
    return 0;
  } catch (e) {
    return errnoOf(e);
  }
}

/**
 * An open regular file in a host directory. `hfd` is the host fd, `rel` the
 * file's path inside the preopen as of its opening (it goes stale if the
 * guest later renames the file or a parent: crvm keeps no registry of open
 * fds by path).
 *
 * @example
 * const fd = dirFd.path_open(0, "out.txt", wasi.OFLAGS_CREAT, BigInt(wasi.RIGHTS_FD_WRITE), 0n, 0).fd_obj as HostFileFd;
 * fd.fd_write(bytes); // lands in /srv/data/out.txt
 */
export class HostFileFd extends FileFdBase {
  readonly kind = "hostfile";
  fs: HostFs;
  preopen: HostPreopen;
  rel: string;
  hfd: number;

  constructor(fs: HostFs, preopen: HostPreopen, rel: string, hfd: number, opts: FileFdOptions) {
    super(opts);
    this.fs = fs;
    this.preopen = preopen;
    this.rel = rel;
    this.hfd = hfd;
  }

  protected override readAt(size: number, at: bigint): { ret: number; data: Uint8Array } {
    if (!this.readable) return { ret: wasi.ERRNO_BADF, data: new Uint8Array(0) };
    const buf = new Uint8Array(Math.min(size, MAX_READ));
    let n = 0;
    const ret = host(() => void (n = this.fs.read(this.hfd, buf, at)));
    return { ret, data: buf.subarray(0, n) };
  }

  #writeAt(data: Uint8Array, at: bigint | null): { ret: number; end: bigint } {
    if (!this.writable) return { ret: wasi.ERRNO_BADF, end: 0n };
    let pos = 0n;
    const ret = host(() => {
      pos = at ?? this.fs.fstat(this.hfd).size; // null: append at the current end
      // A host write may be short; the guest asked for all of it.
      for (let done = 0; done < data.length;) {
        done += this.fs.write(this.hfd, data.subarray(done), pos + BigInt(done));
      }
      if ((this.fdflags & (wasi.FDFLAGS_SYNC | wasi.FDFLAGS_DSYNC)) !== 0) this.fs.fsync(this.hfd);
    });
    return { ret, end: pos + BigInt(data.length) };
  }

  override fd_write(data: Uint8Array) {
    const r = this.#writeAt(data, this.append ? null : this.pos);
    if (r.ret !== 0) return { ret: r.ret, nwritten: 0 };
    this.pos = r.end;
    return { ret: 0, nwritten: data.length };
  }
  override fd_pwrite(data: Uint8Array, offset: bigint) {
    const r = this.#writeAt(data, offset);
    return { ret: r.ret, nwritten: r.ret === 0 ? data.length : 0 };
  }
  protected currentSize() {
    let size = 0n;
    const ret = host(() => void (size = this.fs.fstat(this.hfd).size));
    return { ret, size };
  }
  override fd_filestat_get() {
    let st: HostStat | null = null;
    const ret = host(() => void (st = this.fs.fstat(this.hfd)));
    return { ret, filestat: st === null ? null : toFilestat(st) };
  }
  override fd_filestat_set_size(size: bigint): number {
    if (!this.writable) return wasi.ERRNO_BADF;
    if (size < 0n) return wasi.ERRNO_INVAL;
    return host(() => this.fs.ftruncate(this.hfd, size));
  }
  override fd_allocate(offset: bigint, len: bigint): number {
    if (!this.writable) return wasi.ERRNO_BADF;
    if (offset < 0n || len <= 0n) return wasi.ERRNO_INVAL;
    // Extending with ftruncate gives the size posix_fallocate promises (not the reserved blocks).
    return host(() => {
      if (this.fs.fstat(this.hfd).size < offset + len) this.fs.ftruncate(this.hfd, offset + len);
    });
  }
  override fd_filestat_set_times(atim: bigint, mtim: bigint, fstFlags: number): number {
    let ret = applyTimes(0n, 0n, atim, mtim, fstFlags, hostNowNs).ret;
    if (ret !== 0) return ret;
    ret = host(() => {
      const cur = this.fs.fstat(this.hfd);
      const t = applyTimes(cur.atimeNs, cur.mtimeNs, atim, mtim, fstFlags, hostNowNs);
      this.fs.futimes(this.hfd, t.atim, t.mtim);
    });
    return ret;
  }
  override fd_sync(): number {
    return host(() => this.fs.fsync(this.hfd));
  }
  override fd_close(): number {
    return host(() => this.fs.close(this.hfd));
  }
}

/**
 * An open directory inside a host preopen. It holds no host fd: `rel` (the
 * directory's path inside the preopen, "" for the root) is resolved again on
 * each call, which makes checkpoint/restore trivial; like `HostFileFd.rel` it
 * goes stale if the guest renames the directory or a parent.
 *
 * @example
 * const sub = new HostDirFd(host.fs, preopen, "src/lib");
 * sub.path_filestat_get(0, "../README.md");
 */
export class HostDirFd extends DirFdBase implements PathWalker<string> {
  readonly kind: string = "hostdir";
  fs: HostFs;
  preopen: HostPreopen;
  rel: string;
  // Transient cache, not state: the sorted listing read at cookie 0, so a
  // directory read in several calls sees one consistent order. Lost on
  // restore (then read again; cookies stay valid if the directory did not change).
  #listing: { name: string; type: HostStat["type"] }[] | null = null;

  constructor(fs: HostFs, preopen: HostPreopen, rel: string) {
    super();
    this.fs = fs;
    this.preopen = preopen;
    this.rel = rel;
  }

  #abs(rel: string): string {
    return hostPathOf(this.preopen, rel);
  }

  // PathWalker: nodes are paths relative to the preopen, free of symlinks
  // and of `..` (walkPath only descends into real directories), so the
  // parent of a node is its lexical dirname.
  lookup(dir: string, name: string): { ret: number; node: string | null; type: NodeType | null } {
    const rel = join(dir, name);
    let st: HostStat;
    try {
      st = this.fs.lstat(this.#abs(rel));
    } catch (e) {
      const ret = errnoOf(e);
      return ret === wasi.ERRNO_NOENT ? { ret: 0, node: null, type: null } : { ret, node: null, type: null };
    }
    const type: NodeType = st.type === "dir" ? "dir" : st.type === "symlink" ? "symlink" : st.type === "file" ? "file" : "other";
    return { ret: 0, node: rel, type };
  }
  parent(dir: string): { ret: number; node: string | null } {
    if (dir === "") return { ret: wasi.ERRNO_NOTCAPABLE, node: null };
    const i = dir.lastIndexOf("/");
    return { ret: 0, node: i < 0 ? "" : dir.slice(0, i) };
  }
  readlink(link: string): { ret: number; target: string } {
    let target = "";
    const ret = host(() => void (target = this.fs.readlink(this.#abs(link))));
    return { ret, target };
  }

  /** Parse and resolve a guest path from this directory (a trailing slash also follows a final symlink). */
  #walk(path: string, followLast: boolean): { r: WalkResult<string>; mustBeDir: boolean } {
    return resolvePath(this, this.rel, path, followLast);
  }
  /** Same, for calls that act on the last component itself (never follow it, even with a trailing slash). */
  #walkNoFollow(path: string): { r: WalkResult<string>; mustBeDir: boolean } {
    return resolvePath(this, this.rel, path, "never");
  }

  override fd_filestat_get() {
    let st: HostStat | null = null;
    const ret = host(() => void (st = this.fs.stat(this.#abs(this.rel))));
    return { ret, filestat: st === null ? null : toFilestat(st) };
  }
  override fd_filestat_set_times(atim: bigint, mtim: bigint, fstFlags: number): number {
    return this.#setTimes(this.rel, atim, mtim, fstFlags);
  }

  override fd_readdir_single(cookie: bigint) {
    const none = (ret: number) => ({ ret, dirent: null });
    if (cookie === 0n || this.#listing === null) {
      let list: { name: string; type: HostStat["type"] }[] = [];
      const ret = host(() => void (list = this.fs.readdir(this.#abs(this.rel))));
      if (ret !== 0) return none(ret);
      // Sorted, so cookies (indexes) mean the same thing after a restore or on another host.
      this.#listing = list.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    }
    if (cookie < 2n) {
      const rel = cookie === 0n || this.rel === "" ? this.rel : this.parent(this.rel).node!;
      let ino = 0n;
      const ret = host(() => void (ino = this.fs.stat(this.#abs(rel)).ino));
      if (ret !== 0) return none(ret);
      return { ret: 0, dirent: new wasi.Dirent(cookie + 1n, ino, cookie === 0n ? "." : "..", wasi.FILETYPE_DIRECTORY) };
    }
    for (let i = Number(cookie - 2n); i < this.#listing.length; i++) {
      const e = this.#listing[i]!;
      let ino = 0n;
      try {
        ino = this.fs.lstat(this.#abs(join(this.rel, e.name))).ino;
      } catch (err) {
        if (errnoOf(err) === wasi.ERRNO_NOENT) continue; // removed since the listing was read
        // Unreadable entry (EACCES...): still list it, with an unknown inode number.
      }
      return { ret: 0, dirent: new wasi.Dirent(BigInt(i) + 3n, ino, e.name, hostFiletype(e.type)) };
    }
    return none(0);
  }

  override path_open(dirflags: number, path: string, oflags: number, rightsBase: bigint, _rightsInheriting: bigint, fdflags: number) {
    const no = (ret: number) => ({ ret, fd_obj: null });
    const bad = checkOpenFlags(oflags);
    if (bad !== 0) return no(bad);
    const creat = (oflags & wasi.OFLAGS_CREAT) !== 0;
    const excl = creat && (oflags & wasi.OFLAGS_EXCL) !== 0;
    const trunc = (oflags & wasi.OFLAGS_TRUNC) !== 0;
    // O_EXCL never follows a symlink in the last component: an existing link is EEXIST.
    const follow = !excl && (dirflags & LOOKUPFLAGS_SYMLINK_FOLLOW) !== 0;
    const { r, mustBeDir } = excl ? this.#walkNoFollow(path) : this.#walk(path, follow);
    if (r.ret !== 0) return no(r.ret);
    const { readable, writable } = accessOf(rightsBase);
    const opts = { readable, writable, append: (fdflags & wasi.FDFLAGS_APPEND) !== 0, fdflags };
    // The host fd is opened for writing also for O_TRUNC without write rights (truncation needs no FD_WRITE in WASI).
    const flags: HostOpenFlags = { read: readable || !writable, write: writable || trunc, truncate: trunc, noFollow: true };
    let rel: string;
    if (r.node === null) {
      if (!creat) return no(wasi.ERRNO_NOENT);
      if (mustBeDir) return no(wasi.ERRNO_ISDIR);
      rel = join(r.dir!, r.name!);
      flags.create = true;
      flags.exclusive = excl;
    } else {
      if (excl) return no(wasi.ERRNO_EXIST);
      if (r.type === "symlink") return no(wasi.ERRNO_LOOP);
      if (r.type === "dir") {
        if (writable || creat || trunc) return no(wasi.ERRNO_ISDIR);
        return { ret: 0, fd_obj: new HostDirFd(this.fs, this.preopen, r.node) };
      }
      if ((oflags & wasi.OFLAGS_DIRECTORY) !== 0) return no(wasi.ERRNO_NOTDIR);
      if (r.type !== "file") return no(wasi.ERRNO_NOTSUP);
      rel = r.node;
    }
    let hfd = -1;
    const ret = host(() => void (hfd = this.fs.open(this.#abs(rel), flags)));
    if (ret !== 0) return no(ret);
    return { ret: 0, fd_obj: new HostFileFd(this.fs, this.preopen, rel, hfd, opts) };
  }

  override path_create_directory(path: string): number {
    const { r } = this.#walkNoFollow(path);
    if (r.ret !== 0) return r.ret;
    if (r.node !== null) return wasi.ERRNO_EXIST;
    return host(() => this.fs.mkdir(this.#abs(join(r.dir!, r.name!))));
  }

  override path_filestat_get(flags: number, path: string) {
    const { r } = this.#walk(path, (flags & LOOKUPFLAGS_SYMLINK_FOLLOW) !== 0);
    if (r.ret !== 0) return { ret: r.ret, filestat: null };
    if (r.node === null) return { ret: wasi.ERRNO_NOENT, filestat: null };
    let st: HostStat | null = null;
    const ret = host(() => void (st = this.fs.lstat(this.#abs(r.node!))));
    return { ret, filestat: st === null ? null : toFilestat(st) };
  }

  override path_filestat_set_times(flags: number, path: string, atim: bigint, mtim: bigint, fstFlags: number): number {
    const { r } = this.#walk(path, (flags & LOOKUPFLAGS_SYMLINK_FOLLOW) !== 0);
    if (r.ret !== 0) return r.ret;
    if (r.node === null) return wasi.ERRNO_NOENT;
    return this.#setTimes(r.node, atim, mtim, fstFlags);
  }

  /** Set times on `rel` itself (a symlink's own times if it is one: the walk already followed what it should). */
  #setTimes(rel: string, atim: bigint, mtim: bigint, fstFlags: number): number {
    const check = applyTimes(0n, 0n, atim, mtim, fstFlags, hostNowNs).ret;
    if (check !== 0) return check;
    return host(() => {
      const p = this.#abs(rel);
      const cur = this.fs.lstat(p);
      const t = applyTimes(cur.atimeNs, cur.mtimeNs, atim, mtim, fstFlags, hostNowNs);
      this.fs.utimes(p, t.atim, t.mtim, false);
    });
  }

  override path_readlink(path: string) {
    const { r } = this.#walkNoFollow(path);
    if (r.ret !== 0) return { ret: r.ret, data: null };
    if (r.node === null) return { ret: wasi.ERRNO_NOENT, data: null };
    if (r.type !== "symlink") return { ret: wasi.ERRNO_INVAL, data: null };
    const l = this.readlink(r.node);
    return { ret: l.ret, data: l.ret === 0 ? l.target : null };
  }

  override path_remove_directory(path: string): number {
    const { r } = this.#walkNoFollow(path);
    if (r.ret !== 0) return r.ret;
    if (r.name === null) return wasi.ERRNO_INVAL; // "." or ".."
    if (r.node === null) return wasi.ERRNO_NOENT;
    if (r.type !== "dir") return wasi.ERRNO_NOTDIR;
    return host(() => this.fs.rmdir(this.#abs(r.node!)));
  }

  override path_unlink_file(path: string): number {
    const { r } = this.#walkNoFollow(path);
    if (r.ret !== 0) return r.ret;
    if (r.name === null || r.type === "dir") return wasi.ERRNO_ISDIR;
    if (r.node === null) return wasi.ERRNO_NOENT;
    return host(() => this.fs.unlink(this.#abs(r.node!)));
  }

  override path_symlink(target: string, path: string): number {
    if (target.includes("\0")) return wasi.ERRNO_INVAL;
    if (target === "") return wasi.ERRNO_NOENT;
    if (target.startsWith("/")) return wasi.ERRNO_NOTCAPABLE; // see memfs.ts: it could only name the host's root
    const { r, mustBeDir } = this.#walkNoFollow(path);
    if (r.ret !== 0) return r.ret;
    if (r.node !== null || r.name === null) return wasi.ERRNO_EXIST;
    if (mustBeDir) return wasi.ERRNO_NOENT;
    return host(() => this.fs.symlink(target, this.#abs(join(r.dir!, r.name!))));
  }

  override path_link_to(oldPath: string, followSymlinks: boolean, target: CrvmFd, newPath: string): number {
    if (!(target instanceof HostDirFd)) return wasi.ERRNO_XDEV;
    const { r: o } = followSymlinks ? this.#walk(oldPath, true) : this.#walkNoFollow(oldPath);
    if (o.ret !== 0) return o.ret;
    if (o.node === null) return wasi.ERRNO_NOENT;
    if (o.type === "dir") return wasi.ERRNO_PERM;
    const { r: n, mustBeDir } = target.#walkNoFollow(newPath);
    if (n.ret !== 0) return n.ret;
    if (n.node !== null || n.name === null) return wasi.ERRNO_EXIST;
    if (mustBeDir) return wasi.ERRNO_NOENT;
    return host(() => this.fs.link(this.#abs(o.node!), target.#abs(join(n.dir!, n.name!))));
  }

  override path_rename_to(oldPath: string, target: CrvmFd, newPath: string): number {
    if (!(target instanceof HostDirFd)) return wasi.ERRNO_XDEV;
    const { r: o } = this.#walkNoFollow(oldPath);
    if (o.ret !== 0) return o.ret;
    if (o.name === null) return wasi.ERRNO_BUSY;
    if (o.node === null) return wasi.ERRNO_NOENT;
    const { r: n, mustBeDir } = target.#walkNoFollow(newPath);
    if (n.ret !== 0) return n.ret;
    if (n.name === null) return wasi.ERRNO_BUSY;
    if (mustBeDir && o.type !== "dir") return wasi.ERRNO_NOTDIR;
    // Both paths are symlink-free, so the host's rename(2) applies POSIX's
    // replace rules (EISDIR, ENOTDIR, ENOTEMPTY, EINVAL into its own subtree) to exactly these two entries.
    return host(() => this.fs.rename(this.#abs(o.node!), target.#abs(join(n.dir!, n.name!))));
  }
}

/**
 * The root of a `--dir HOST::GUEST` preopen: answers fd_prestat_get with the
 * guest path.
 *
 * @example
 * const fd = new HostPreopenFd(host.fs, { guestPath: "/data", hostPath: host.fs.realpath("./data") });
 */
export class HostPreopenFd extends HostDirFd {
  override readonly kind: string = "hostpreopen";

  constructor(fs: HostFs, preopen: HostPreopen) {
    super(fs, preopen, "");
  }

  override fd_prestat_get(): { ret: number; prestat: wasi.Prestat | null } {
    return { ret: 0, prestat: wasi.Prestat.dir(this.preopen.guestPath) };
  }
}
