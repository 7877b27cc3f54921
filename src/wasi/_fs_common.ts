// Small rules shared by memfs.ts and hostfs.ts: the rights an fd reports,
// how fd flags and set-times flags are read. Private to src/wasi/.
import { CrvmFd, wasi } from "./fd.ts";

const R = (n: number) => BigInt(n);

/** Rights every regular-file fd has, whatever its access mode. */
const FILE_RIGHTS_COMMON =
  R(wasi.RIGHTS_FD_SEEK) | R(wasi.RIGHTS_FD_TELL) | R(wasi.RIGHTS_FD_FDSTAT_SET_FLAGS) |
  R(wasi.RIGHTS_FD_ADVISE) | R(wasi.RIGHTS_FD_FILESTAT_GET) | R(wasi.RIGHTS_FD_FILESTAT_SET_TIMES) |
  R(wasi.RIGHTS_FD_SYNC) | R(wasi.RIGHTS_POLL_FD_READWRITE);
const FILE_RIGHTS_READ = R(wasi.RIGHTS_FD_READ);
const FILE_RIGHTS_WRITE =
  R(wasi.RIGHTS_FD_WRITE) | R(wasi.RIGHTS_FD_DATASYNC) | R(wasi.RIGHTS_FD_ALLOCATE) | R(wasi.RIGHTS_FD_FILESTAT_SET_SIZE);

/**
 * Directory rights. No FD_SEEK (wasi-testsuite directory_seek), no
 * FD_FILESTAT_SET_SIZE, and no PATH_FILESTAT_SET_SIZE: crvm does not track
 * rights per fd, so it does not claim one the guest could try to drop with
 * fd_fdstat_set_rights (truncation_rights then skips that part).
 */
export const DIR_RIGHTS =
  R(wasi.RIGHTS_PATH_CREATE_DIRECTORY) | R(wasi.RIGHTS_PATH_CREATE_FILE) | R(wasi.RIGHTS_PATH_LINK_SOURCE) |
  R(wasi.RIGHTS_PATH_LINK_TARGET) | R(wasi.RIGHTS_PATH_OPEN) | R(wasi.RIGHTS_FD_READDIR) |
  R(wasi.RIGHTS_PATH_READLINK) | R(wasi.RIGHTS_PATH_RENAME_SOURCE) | R(wasi.RIGHTS_PATH_RENAME_TARGET) |
  R(wasi.RIGHTS_PATH_FILESTAT_GET) | R(wasi.RIGHTS_PATH_FILESTAT_SET_TIMES) | R(wasi.RIGHTS_FD_FILESTAT_GET) |
  R(wasi.RIGHTS_FD_FILESTAT_SET_TIMES) | R(wasi.RIGHTS_PATH_SYMLINK) | R(wasi.RIGHTS_PATH_REMOVE_DIRECTORY) |
  R(wasi.RIGHTS_PATH_UNLINK_FILE) | R(wasi.RIGHTS_FD_FDSTAT_SET_FLAGS) | R(wasi.RIGHTS_FD_SYNC) |
  R(wasi.RIGHTS_POLL_FD_READWRITE);
/** What a file or directory opened below a directory may get. */
export const DIR_RIGHTS_INHERITING = DIR_RIGHTS | FILE_RIGHTS_COMMON | FILE_RIGHTS_READ | FILE_RIGHTS_WRITE;

/** The rights a file fd reports for its access mode. */
export function fileRights(readable: boolean, writable: boolean): bigint {
  return FILE_RIGHTS_COMMON | (readable ? FILE_RIGHTS_READ : 0n) | (writable ? FILE_RIGHTS_WRITE : 0n);
}

/** Access mode requested by path_open's rights (wasi-libc and Rust's std derive these from O_RDONLY/O_WRONLY/O_RDWR). */
export function accessOf(rightsBase: bigint): { readable: boolean; writable: boolean } {
  return {
    readable: (rightsBase & FILE_RIGHTS_READ) !== 0n,
    writable: (rightsBase & R(wasi.RIGHTS_FD_WRITE)) !== 0n,
  };
}

/** The fd flags crvm keeps besides APPEND; they are reported back by fd_fdstat_get. */
export const FDFLAGS_KEPT = wasi.FDFLAGS_DSYNC | wasi.FDFLAGS_RSYNC | wasi.FDFLAGS_SYNC | wasi.FDFLAGS_NONBLOCK;

/** Options of a file fd, as taken by the file fd constructors. */
export interface FileFdOptions {
  readable: boolean;
  writable: boolean;
  append: boolean;
  /** DSYNC/RSYNC/SYNC/NONBLOCK bits, kept for fd_fdstat_get (and honoured by hostfs as an fsync per write). */
  fdflags?: number;
}

/**
 * New (atime, mtime) for a set-times call, or EINVAL when both a time and its
 * _NOW flag are set (wasi-testsuite fstflags_validate). Unset times keep
 * their current value.
 */
export function applyTimes(
  curAtim: bigint, curMtim: bigint, atim: bigint, mtim: bigint, fstFlags: number, now: () => bigint,
): { ret: number; atim: bigint; mtim: bigint } {
  const aSet = (fstFlags & wasi.FSTFLAGS_ATIM) !== 0, aNow = (fstFlags & wasi.FSTFLAGS_ATIM_NOW) !== 0;
  const mSet = (fstFlags & wasi.FSTFLAGS_MTIM) !== 0, mNow = (fstFlags & wasi.FSTFLAGS_MTIM_NOW) !== 0;
  if ((aSet && aNow) || (mSet && mNow)) return { ret: wasi.ERRNO_INVAL, atim: 0n, mtim: 0n };
  const t = aNow || mNow ? now() : 0n;
  return {
    ret: wasi.ERRNO_SUCCESS,
    atim: aSet ? atim : aNow ? t : curAtim,
    mtim: mSet ? mtim : mNow ? t : curMtim,
  };
}

/** Checks shared by every path_open: flag combinations that are errors whatever the path names. */
export function checkOpenFlags(oflags: number): number {
  // O_CREAT|O_DIRECTORY is EINVAL on Linux since 6.4 and in wasmtime.
  if ((oflags & wasi.OFLAGS_CREAT) !== 0 && (oflags & wasi.OFLAGS_DIRECTORY) !== 0) return wasi.ERRNO_INVAL;
  return wasi.ERRNO_SUCCESS;
}

/** lookupflags bit 0 (the shim's wasi_defs lacks this constant). */
export const LOOKUPFLAGS_SYMLINK_FOLLOW = 1;

/**
 * Base of an open regular file, on either filesystem: the offset, the access
 * mode and fd flags, and the calls that only need those. Every path call on
 * it is ENOTDIR (wasi-testsuite path_open_dirfd_not_dir), and it is not a
 * preopen (fd_prestat_get → EBADF, which is how wasi-libc's preopen scan ends).
 */
export abstract class FileFdBase extends CrvmFd {
  pos = 0n;
  append: boolean;
  readable: boolean;
  writable: boolean;
  /** DSYNC/RSYNC/SYNC/NONBLOCK bits as the guest set them. */
  fdflags: number;

  constructor(opts: FileFdOptions) {
    super();
    this.readable = opts.readable;
    this.writable = opts.writable;
    this.append = opts.append;
    this.fdflags = (opts.fdflags ?? 0) & FDFLAGS_KEPT;
  }

  /** The file's current size, for SEEK_END (an errno if it cannot be had). */
  protected abstract currentSize(): { ret: number; size: bigint };
  /** Up to `size` bytes at offset `at` (an errno and no bytes if they cannot be read). */
  protected abstract readAt(size: number, at: bigint): { ret: number; data: Uint8Array };

  override fd_read(size: number) {
    const r = this.readAt(size, this.pos);
    this.pos += BigInt(r.data.length);
    return r;
  }
  override fd_pread(size: number, offset: bigint) {
    return this.readAt(size, offset);
  }

  override fd_seek(offset: bigint, whence: number) {
    let base: bigint;
    if (whence === wasi.WHENCE_SET) base = 0n;
    else if (whence === wasi.WHENCE_CUR) base = this.pos;
    else if (whence === wasi.WHENCE_END) {
      const { ret, size } = this.currentSize();
      if (ret !== 0) return { ret, offset: 0n };
      base = size;
    } else return { ret: wasi.ERRNO_INVAL, offset: 0n };
    const to = base + offset;
    if (to < 0n || to > BigInt(Number.MAX_SAFE_INTEGER)) return { ret: wasi.ERRNO_INVAL, offset: 0n };
    this.pos = to;
    return { ret: 0, offset: to };
  }
  override fd_tell() {
    return { ret: 0, offset: this.pos };
  }
  override fd_fdstat_get() {
    const st = new wasi.Fdstat(wasi.FILETYPE_REGULAR_FILE, (this.append ? wasi.FDFLAGS_APPEND : 0) | this.fdflags);
    st.fs_rights_base = fileRights(this.readable, this.writable);
    st.fs_rights_inherited = 0n;
    return { ret: 0, fdstat: st };
  }
  override fd_fdstat_set_flags(flags: number): number {
    this.append = (flags & wasi.FDFLAGS_APPEND) !== 0;
    this.fdflags = flags & FDFLAGS_KEPT;
    return 0;
  }
  override fd_prestat_get(): { ret: number; prestat: wasi.Prestat | null } {
    return { ret: wasi.ERRNO_BADF, prestat: null };
  }
  override fd_readdir_single(_cookie: bigint) {
    return { ret: wasi.ERRNO_NOTDIR, dirent: null };
  }
  override path_create_directory(_path: string): number {
    return wasi.ERRNO_NOTDIR;
  }
  override path_filestat_get(_flags: number, _path: string) {
    return { ret: wasi.ERRNO_NOTDIR, filestat: null };
  }
  override path_filestat_set_times(_flags: number, _path: string, _atim: bigint, _mtim: bigint, _fst: number): number {
    return wasi.ERRNO_NOTDIR;
  }
  override path_open(_dirflags: number, _path: string, _oflags: number, _rb: bigint, _ri: bigint, _fdflags: number) {
    return { ret: wasi.ERRNO_NOTDIR, fd_obj: null };
  }
  override path_readlink(_path: string) {
    return { ret: wasi.ERRNO_NOTDIR, data: null };
  }
  override path_remove_directory(_path: string): number {
    return wasi.ERRNO_NOTDIR;
  }
  override path_unlink_file(_path: string): number {
    return wasi.ERRNO_NOTDIR;
  }
}


/**
 * Base of a directory fd: the file calls (read, write, seek, truncate...)
 * answer EISDIR, and its fdstat is a directory's. Both filesystems'
 * directory fds extend it.
 */
export abstract class DirFdBase extends CrvmFd {
  override fd_read(_size: number) {
    return { ret: wasi.ERRNO_ISDIR, data: new Uint8Array(0) };
  }
  override fd_pread(_size: number, _offset: bigint) {
    return { ret: wasi.ERRNO_ISDIR, data: new Uint8Array(0) };
  }
  override fd_write(_data: Uint8Array) {
    return { ret: wasi.ERRNO_ISDIR, nwritten: 0 };
  }
  override fd_pwrite(_data: Uint8Array, _offset: bigint) {
    return { ret: wasi.ERRNO_ISDIR, nwritten: 0 };
  }
  override fd_seek(_offset: bigint, _whence: number) {
    return { ret: wasi.ERRNO_ISDIR, offset: 0n };
  }
  override fd_tell() {
    return { ret: wasi.ERRNO_ISDIR, offset: 0n };
  }
  override fd_allocate(_offset: bigint, _len: bigint): number {
    return wasi.ERRNO_ISDIR;
  }
  override fd_filestat_set_size(_size: bigint): number {
    return wasi.ERRNO_ISDIR;
  }
  override fd_fdstat_get() {
    const st = new wasi.Fdstat(wasi.FILETYPE_DIRECTORY, 0);
    st.fs_rights_base = DIR_RIGHTS;
    st.fs_rights_inherited = DIR_RIGHTS_INHERITING;
    return { ret: 0, fdstat: st };
  }
  override fd_fdstat_set_flags(_flags: number): number {
    return 0; // no fd flag changes anything for a directory
  }
  override fd_sync(): number {
    return 0;
  }
  override fd_close(): number {
    return 0;
  }
  /** Not a preopen (the preopen subclasses answer with their name). */
  override fd_prestat_get(): { ret: number; prestat: wasi.Prestat | null } {
    return { ret: wasi.ERRNO_BADF, prestat: null };
  }
}
