// The inodes of crvm's in-memory filesystem. Every piece of state is a public
// field holding plain data (bigints, numbers, Uint8Arrays, Maps, references to
// other inodes), so `src/checkpoint/` can dump and restore a tree by walking
// it: no closures, no statics, no hidden counters.
import { CrvmFilestat, wasi, type FsContext } from "./fd.ts";

/** What the in-memory fs needs from its VM: the inode counter and a clock (never `Date` directly, so time can be virtual). */
export interface FsEnv {
  ctx: FsContext;
  /** Wall-clock time in nanoseconds since the epoch. */
  now: () => bigint;
}

/** Largest in-memory file: what one Uint8Array can hold on every runtime crvm supports. */
export const MEM_FILE_MAX = 2 ** 32;
/** Below this capacity a growing file doubles its buffer; above it grows by half (limits waste on huge files). */
const DOUBLING_LIMIT = 64 * 1024 * 1024;

function issue(env: FsEnv, ino: bigint | undefined): bigint {
  if (ino === undefined) return env.ctx.issueIno();
  env.ctx.reserveIno(ino);
  return ino;
}

/**
 * A regular file. `data` has spare capacity: bytes `[0, size)` are the
 * contents and bytes past `size` are always zero, so growing a file (a write
 * past the end, a truncate up) never has to clear memory. A checkpoint saves
 * `data.subarray(0, size)`.
 *
 * @example
 * const f = new MemFile(env, new TextEncoder().encode("hello")); // takes ownership of the bytes
 * f.size; // 5
 */
export class MemFile {
  ino: bigint;
  data: Uint8Array;
  size: number;
  /** Directory entries naming this file; 0 once unlinked (it lives on while an fd holds it). */
  nlink = 0;
  atimNs: bigint;
  mtimNs: bigint;
  ctimNs: bigint;

  /** `data` is taken as is (not copied); `ino` is for restore (it is reserved in `env.ctx`). */
  constructor(env: FsEnv, data: Uint8Array = new Uint8Array(0), ino?: bigint) {
    this.ino = issue(env, ino);
    this.data = data;
    this.size = data.length;
    this.atimNs = this.mtimNs = this.ctimNs = env.now();
  }

  /**
   * Make room for `needed` bytes. Capacity at least doubles (up to 64 MiB,
   * then grows by half), so n extending writes cost O(n) copying in total,
   * not O(n²) as in browser_wasi_shim. Returns an errno: EFBIG past
   * MEM_FILE_MAX, ENOSPC if the runtime cannot allocate the buffer.
   */
  reserve(needed: number): number {
    if (needed <= this.data.length) return wasi.ERRNO_SUCCESS;
    if (needed > MEM_FILE_MAX) return wasi.ERRNO_FBIG;
    const cap = this.data.length;
    const grown = cap < DOUBLING_LIMIT ? cap * 2 : cap + Math.floor(cap / 2);
    const newCap = Math.min(MEM_FILE_MAX, Math.max(needed, grown, 64));
    let next: Uint8Array;
    try {
      next = new Uint8Array(newCap);
    } catch (e) {
      // Out of memory for one buffer is "the device is full" to the guest, not a crash of the VM.
      if (e instanceof RangeError) return wasi.ERRNO_NOSPC;
      throw e;
    }
    next.set(this.data.subarray(0, this.size));
    this.data = next;
    return wasi.ERRNO_SUCCESS;
  }

  /** Truncate or extend to `size` bytes (new bytes read as zero). */
  resize(size: number): number {
    if (size > this.size) {
      const ret = this.reserve(size);
      if (ret !== 0) return ret;
    } else if (size < this.size) {
      if (size < this.data.length / 4 && this.data.length > 4096) {
        // Give most of a shrunk file's memory back rather than keep its peak forever.
        this.data = this.data.slice(0, size);
      } else {
        this.data.fill(0, size, this.size); // keep the "zero past size" invariant
      }
    }
    this.size = size;
    return wasi.ERRNO_SUCCESS;
  }
}

/**
 * A symbolic link. `target` is what the guest wrote; it is resolved at
 * lookup time, relative to the directory that holds the link.
 *
 * @example
 * dir.add("latest", new MemSymlink(env, "releases/v2"));
 */
export class MemSymlink {
  ino: bigint;
  target: string;
  nlink = 0;
  atimNs: bigint;
  mtimNs: bigint;
  ctimNs: bigint;

  constructor(env: FsEnv, target: string, ino?: bigint) {
    this.ino = issue(env, ino);
    this.target = target;
    this.atimNs = this.mtimNs = this.ctimNs = env.now();
  }
}

/**
 * A directory. `entries` keeps insertion order and `cookies` gives each entry
 * the readdir cookie it got when it was added (from `nextCookie`, which only
 * grows), so a readdir that continues from a cookie neither skips nor repeats
 * entries when others are removed meanwhile. Use `add`/`remove` to keep the
 * two maps, `nlink` and `parent` consistent.
 *
 * @example
 * const root = new MemDir(env);
 * root.add("etc", new MemDir(env));
 * root.add("motd", new MemFile(env, bytes));
 */
export class MemDir {
  ino: bigint;
  entries = new Map<string, MemInode>();
  cookies = new Map<string, bigint>();
  /** Cookie of the next added entry; 0 and 1 are taken by `.` and `..`. */
  nextCookie = 2n;
  /** null for a root and for a removed directory. */
  parent: MemDir | null;
  /** Set by rmdir (or a rename over it): nothing can be created in it any more. */
  removed = false;
  atimNs: bigint;
  mtimNs: bigint;
  ctimNs: bigint;

  constructor(env: FsEnv, parent: MemDir | null = null, ino?: bigint) {
    this.ino = issue(env, ino);
    this.parent = parent;
    this.atimNs = this.mtimNs = this.ctimNs = env.now();
  }

  /** Link `node` as `name` (which must be free): appends it, counts the link, adopts a directory. */
  add(name: string, node: MemInode): void {
    this.entries.set(name, node);
    this.cookies.set(name, this.nextCookie++);
    if (node instanceof MemDir) node.parent = this;
    else node.nlink++;
  }

  /** Unlink `name`; returns the inode it named. A directory keeps its `parent` (callers decide). */
  remove(name: string): MemInode | undefined {
    const node = this.entries.get(name);
    if (node === undefined) return undefined;
    this.entries.delete(name);
    this.cookies.delete(name);
    if (!(node instanceof MemDir)) node.nlink--;
    return node;
  }

  /** POSIX link count of a directory: its entry in the parent, its `.`, and each subdirectory's `..`. */
  linkCount(): number {
    if (this.removed) return 0;
    let n = 2;
    for (const e of this.entries.values()) if (e instanceof MemDir) n++;
    return n;
  }
}

/** Any inode of the in-memory fs. */
export type MemInode = MemFile | MemDir | MemSymlink;

/** WASI file type of an inode, e.g. `memFiletype(new MemDir(env)) === wasi.FILETYPE_DIRECTORY`. */
export function memFiletype(node: MemInode): number {
  if (node instanceof MemFile) return wasi.FILETYPE_REGULAR_FILE;
  if (node instanceof MemDir) return wasi.FILETYPE_DIRECTORY;
  return wasi.FILETYPE_SYMBOLIC_LINK;
}

const encoder = new TextEncoder();

/**
 * The WASI stat of an inode (device 0 for the whole in-memory fs).
 *
 * @example
 * memStat(file).size // BigInt(file.size)
 */
export function memStat(node: MemInode): CrvmFilestat {
  let size = 0n;
  if (node instanceof MemFile) size = BigInt(node.size);
  else if (node instanceof MemSymlink) size = BigInt(encoder.encode(node.target).length); // POSIX: a link's size is its target's length
  const st = new CrvmFilestat(node.ino, memFiletype(node), size);
  st.nlink = BigInt(node instanceof MemDir ? node.linkCount() : node.nlink);
  st.atim = node.atimNs;
  st.mtim = node.mtimNs;
  st.ctim = node.ctimNs;
  return st;
}
