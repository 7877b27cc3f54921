// The guest's standard streams, attached to the host's by name ("stdin",
// "stdout", "stderr") so a restore re-attaches them to the new process.
// Output is passed through as bytes, unbuffered; input read from the host
// but not yet consumed by the guest is part of the fd's state.
import type { HostStdio } from "../host/mod.ts";
import { errnoOf } from "./errno.ts";
import { CrvmFd, CrvmFilestat, ERRNO_WOULDBLOCK, wasi } from "./fd.ts";

const NO_SEEK_RIGHTS = ~(BigInt(wasi.RIGHTS_FD_SEEK) | BigInt(wasi.RIGHTS_FD_TELL));

function stdioFdstat(terminal: boolean, rights: number): wasi.Fdstat {
  const st = new wasi.Fdstat(wasi.FILETYPE_CHARACTER_DEVICE, 0);
  // wasi-libc's isatty() is "character device without seek/tell rights":
  // mirror the host stream so a guest buffers its output as it would natively.
  const all = BigInt(rights) | BigInt(wasi.RIGHTS_FD_SEEK) | BigInt(wasi.RIGHTS_FD_TELL) |
    BigInt(wasi.RIGHTS_FD_FILESTAT_GET) | BigInt(wasi.RIGHTS_POLL_FD_READWRITE);
  st.fs_rights_base = terminal ? all & NO_SEEK_RIGHTS : all;
  st.fs_rights_inherited = 0n;
  return st;
}

/** stdout or stderr of the host process. */
export class StdoutFd extends CrvmFd {
  readonly kind = "stdout";
  constructor(readonly stream: 1 | 2, private readonly io: HostStdio) {
    super();
  }
  get name(): "stdout" | "stderr" {
    return this.stream === 1 ? "stdout" : "stderr";
  }
  override fd_write(data: Uint8Array): { ret: number; nwritten: number } {
    try {
      this.io.write(this.stream, data);
    } catch (e) {
      // A closed pipe (EPIPE) or a full disk is the guest's error to handle, not crvm's.
      return { ret: errnoOf(e), nwritten: 0 };
    }
    return { ret: 0, nwritten: data.byteLength };
  }
  override fd_fdstat_get() {
    return { ret: 0, fdstat: stdioFdstat(this.io.isTerminal(this.stream), wasi.RIGHTS_FD_WRITE) };
  }
  override fd_filestat_get() {
    return { ret: 0, filestat: new CrvmFilestat(0n, wasi.FILETYPE_CHARACTER_DEVICE, 0n) };
  }
  override fd_fdstat_set_flags(_flags: number): number {
    return 0;
  }
}

/** stdin of the host process; reads that find no data wait (the task yields). */
export class StdinFd extends CrvmFd {
  readonly kind = "stdin";
  /** Bytes read from the host and not yet consumed by the guest. */
  buffered: Uint8Array = new Uint8Array(0);
  eof = false;
  #reading: Promise<void> | null = null;
  constructor(private readonly io: HostStdio) {
    super();
  }
  override fd_read(size: number): { ret: number; data: Uint8Array } {
    if (this.buffered.length > 0) {
      const data = this.buffered.slice(0, size);
      this.buffered = this.buffered.subarray(data.length);
      return { ret: 0, data };
    }
    if (this.eof) return { ret: 0, data: new Uint8Array(0) };
    return { ret: ERRNO_WOULDBLOCK, data: new Uint8Array(0) };
  }
  override readiness() {
    return { read: this.buffered.length > 0 || this.eof, write: false };
  }
  override whenReady(): Promise<void> {
    if (this.readiness().read) return Promise.resolve();
    this.#reading ??= this.io.read(65536).then((chunk) => {
      this.#reading = null;
      if (chunk === null) this.eof = true;
      else if (chunk.length > 0) {
        const merged = new Uint8Array(this.buffered.length + chunk.length);
        merged.set(this.buffered);
        merged.set(chunk, this.buffered.length);
        this.buffered = merged;
      }
    });
    return this.#reading;
  }
  override fd_fdstat_get() {
    return { ret: 0, fdstat: stdioFdstat(this.io.isTerminal(0), wasi.RIGHTS_FD_READ) };
  }
  override fd_filestat_get() {
    return { ret: 0, filestat: new CrvmFilestat(0n, wasi.FILETYPE_CHARACTER_DEVICE, 0n) };
  }
  override fd_fdstat_set_flags(_flags: number): number {
    return 0;
  }
}
