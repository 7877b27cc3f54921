// Pipes, as on Linux: a bounded buffer (64 KiB); a reader blocks while it is
// empty, a writer while it is full; EOF once every write end is closed; EPIPE
// when no read end is left. Blocking is the fd saying ERRNO_WOULDBLOCK: the
// calling task suspends until `whenReady` resolves (no busy-waiting).
import { CrvmFd, CrvmFilestat, ERRNO_WOULDBLOCK, wasi } from "./fd.ts";

/** Linux's default pipe capacity. */
export const PIPE_CAPACITY = 65536;

/**
 * The shared buffer of a pipe. All state is in plain fields (the bytes in
 * order, the open ends) so a checkpoint can store it; waiters are transient.
 *
 * @example
 * const p = new Pipe();
 * const r = new PipeReadFd(p), w = new PipeWriteFd(p);
 */
export class Pipe {
  /** Bytes written and not yet read, oldest first. */
  data = new Uint8Array(0);
  readers = 0;
  writers = 0;
  #waiters: (() => void)[] = [];

  constructor(readonly capacity = PIPE_CAPACITY) {}

  /** Wakes every task waiting on this pipe (they re-check their condition). */
  notify(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }
  changed(): Promise<void> {
    return new Promise((r) => this.#waiters.push(r));
  }
}

/** What both ends of a pipe share: the pipe, O_NONBLOCK, and no seeking. */
abstract class PipeEnd extends CrvmFd {
  nonblock = false;
  constructor(readonly pipe: Pipe) {
    super();
  }
  protected fdstat(rights: number) {
    const st = new wasi.Fdstat(wasi.FILETYPE_UNKNOWN, this.nonblock ? wasi.FDFLAGS_NONBLOCK : 0);
    st.fs_rights_base = BigInt(rights | wasi.RIGHTS_POLL_FD_READWRITE | wasi.RIGHTS_FD_FILESTAT_GET);
    return { ret: 0, fdstat: st };
  }
  override fd_fdstat_set_flags(flags: number): number {
    this.nonblock = (flags & wasi.FDFLAGS_NONBLOCK) !== 0;
    return 0;
  }
  override fd_filestat_get() {
    return { ret: 0, filestat: new CrvmFilestat(0n, wasi.FILETYPE_UNKNOWN, BigInt(this.pipe.data.length)) };
  }
  override fd_seek() {
    return { ret: wasi.ERRNO_SPIPE, offset: 0n };
  }
  override fd_tell() {
    return { ret: wasi.ERRNO_SPIPE, offset: 0n };
  }
}

/** The read end of a pipe. */
export class PipeReadFd extends PipeEnd {
  readonly kind = "piperead";
  constructor(pipe: Pipe) {
    super(pipe);
    pipe.readers++;
  }
  override fd_read(size: number): { ret: number; data: Uint8Array } {
    const p = this.pipe;
    if (p.data.length === 0) {
      if (p.writers === 0) return { ret: 0, data: new Uint8Array(0) };
      return { ret: this.nonblock ? wasi.ERRNO_AGAIN : ERRNO_WOULDBLOCK, data: new Uint8Array(0) };
    }
    const data = p.data.slice(0, size);
    p.data = p.data.subarray(data.length);
    p.notify();
    return { ret: 0, data };
  }
  override readiness() {
    return { read: this.pipe.data.length > 0 || this.pipe.writers === 0, write: false };
  }
  override whenReady(): Promise<void> {
    return this.readiness().read ? Promise.resolve() : this.pipe.changed();
  }
  override fd_close(): number {
    this.pipe.readers--;
    this.pipe.notify();
    return 0;
  }
  override fd_fdstat_get() {
    return this.fdstat(wasi.RIGHTS_FD_READ);
  }
}

/** The write end of a pipe. */
export class PipeWriteFd extends PipeEnd {
  readonly kind = "pipewrite";
  constructor(pipe: Pipe) {
    super(pipe);
    pipe.writers++;
  }
  override fd_write(data: Uint8Array): { ret: number; nwritten: number } {
    const p = this.pipe;
    if (p.readers === 0) return { ret: wasi.ERRNO_PIPE, nwritten: 0 };
    const room = p.capacity - p.data.length;
    if (room === 0) return { ret: this.nonblock ? wasi.ERRNO_AGAIN : ERRNO_WOULDBLOCK, nwritten: 0 };
    const n = Math.min(room, data.length);
    const merged = new Uint8Array(p.data.length + n);
    merged.set(p.data);
    merged.set(data.subarray(0, n), p.data.length);
    p.data = merged;
    p.notify();
    return { ret: 0, nwritten: n };
  }
  override readiness() {
    return { read: false, write: this.pipe.data.length < this.pipe.capacity || this.pipe.readers === 0 };
  }
  override whenReady(): Promise<void> {
    return this.readiness().write ? Promise.resolve() : this.pipe.changed();
  }
  override fd_close(): number {
    this.pipe.writers--;
    this.pipe.notify();
    return 0;
  }
  override fd_fdstat_get() {
    return this.fdstat(wasi.RIGHTS_FD_WRITE);
  }
}
