/** Which JavaScript runtime crvm runs on. */
export interface RuntimeInfo {
  name: "node" | "deno" | "bun";
  version: string;
}

/** Result of a stat call on the host filesystem. Times are nanoseconds since the epoch. */
export interface HostStat {
  type: "file" | "dir" | "symlink" | "char" | "block" | "fifo" | "socket" | "unknown";
  size: bigint;
  ino: bigint;
  dev: bigint;
  nlink: bigint;
  atimeNs: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

/** One directory entry. */
export interface HostDirent {
  name: string;
  type: HostStat["type"];
}

/**
 * A failed host filesystem call. `code` is the POSIX error name (`ENOENT`,
 * `EEXIST`, `ENOTDIR`, ...), which the WASI layer maps to a WASI errno.
 */
export class HostFsError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = "HostFsError";
  }
}

/**
 * Synchronous POSIX-like access to the host filesystem. Paths are absolute
 * host paths. Every method throws `HostFsError` on failure. Symlinks are not
 * followed by `lstat`, `readlink`, `unlink`; callers that need sandboxing
 * resolve paths themselves (see `src/wasi/`).
 */
export interface HostFs {
  /** flags: POSIX open flags as names, e.g. { read: true, write: true, create: true, truncate: true, exclusive: true, append: true, directory: true, noFollow: true } */
  open(path: string, flags: HostOpenFlags, mode?: number): number;
  close(hfd: number): void;
  /** Reads into buf; position null = current position. Returns bytes read (0 = EOF). */
  read(hfd: number, buf: Uint8Array, position: bigint | null): number;
  /** Writes buf; position null = current position (or end with append). Returns bytes written. */
  write(hfd: number, buf: Uint8Array, position: bigint | null): number;
  fstat(hfd: number): HostStat;
  ftruncate(hfd: number, size: bigint): void;
  fsync(hfd: number): void;
  futimes(hfd: number, atimeNs: bigint, mtimeNs: bigint): void;
  stat(path: string): HostStat;
  lstat(path: string): HostStat;
  readdir(path: string): HostDirent[];
  mkdir(path: string): void;
  rmdir(path: string): void;
  unlink(path: string): void;
  rename(from: string, to: string): void;
  link(from: string, to: string): void;
  symlink(target: string, path: string): void;
  readlink(path: string): string;
  utimes(path: string, atimeNs: bigint, mtimeNs: bigint, followSymlinks: boolean): void;
  realpath(path: string): string;
  /** Whole-file helpers for crvm itself (snapshots, caches, modules). */
  readFile(path: string): Uint8Array;
  /** Writes via a temporary file in the same directory and a rename: readers see the old or the new file, never a part. */
  writeFileAtomic(path: string, chunks: Iterable<Uint8Array> | Uint8Array, mode?: number): void;
  mkdirp(path: string): void;
  exists(path: string): boolean;
}

export interface HostOpenFlags {
  read?: boolean;
  write?: boolean;
  create?: boolean;
  truncate?: boolean;
  exclusive?: boolean;
  append?: boolean;
  directory?: boolean;
  noFollow?: boolean;
}

/** The process's standard streams. Writes are synchronous and complete. */
export interface HostStdio {
  write(fd: 1 | 2, data: Uint8Array): void;
  /** Next chunk of stdin (at most max bytes), or null at end of input. */
  read(max: number): Promise<Uint8Array | null>;
  isTerminal(fd: 0 | 1 | 2): boolean;
}

/** Everything the core gets from the runtime. */
export interface Host {
  runtime: RuntimeInfo;
  fs: HostFs;
  stdio: HostStdio;
  env(name: string): string | undefined;
  homeDir(): string | undefined;
  /** Absolute path of a host path (relative ones are taken from the current directory, or from `base`). */
  resolvePath(path: string, base?: string): string;
  /** `to` relative to the directory `fromDir`. */
  relativePath(fromDir: string, to: string): string;
  dirname(path: string): string;
  /** A full garbage collection where the runtime offers one (Bun; Node/Deno with --expose-gc); for benchmarks. */
  collectGarbage(): void;
  /** A short description of the machine for benchmark records. */
  machine(): { cpu: string; cores: number; memoryBytes: number; os: string };
  /** This process's id (for messages such as "send SIGCONT to …"). */
  pid(): number;
  /** Calls `fn` each time this process receives `signal` (the process stays alive meanwhile); returns the function that stops listening. */
  onSignal(signal: "SIGCONT" | "SIGINT" | "SIGTERM", fn: () => void): () => void;
}
