// Standard streams: synchronous, complete writes (bytes, not lines) and
// asynchronous reads of stdin that never block the event loop.
import * as fs from "node:fs";
import process from "node:process";
import * as tty from "node:tty";
import { HostFsError, type HostStdio } from "./types.ts";

function writeAll(fd: number, data: Uint8Array): void {
  let off = 0;
  while (off < data.length) {
    try {
      off += fs.writeSync(fd, data, off, data.length - off);
    } catch (e) {
      // A non-blocking pipe that is full: wait for it briefly and retry.
      const code = (e as { code?: unknown }).code;
      if (typeof code === "string" && code !== "EAGAIN") throw new HostFsError(code, `write to fd ${fd}: ${code}`);
      if (code !== "EAGAIN") throw e;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
    }
  }
}

export function nodeStdio(): HostStdio {
  // stdin is read as a stream (it may be a non-blocking pipe, a file or a
  // terminal); it is only touched once the guest first reads it.
  let ended = false;
  const read = (): Promise<Uint8Array | null> =>
    new Promise((resolve, reject) => {
      const s = process.stdin;
      const done = (v: Uint8Array | null) => {
        s.off("readable", attempt);
        s.off("end", onEnd);
        s.off("error", reject);
        resolve(v);
      };
      const onEnd = () => {
        ended = true;
        done(null);
      };
      function attempt() {
        const chunk = s.read() as Buffer | null;
        if (chunk !== null) done(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length));
        else if (ended || s.readableEnded) onEnd();
      }
      if (ended) return resolve(null);
      s.on("readable", attempt);
      s.on("end", onEnd);
      s.on("error", reject);
      attempt();
    });
  return {
    write: (fd, data) => writeAll(fd, data),
    read: () => read(),
    isTerminal: (fd) => tty.isatty(fd),
  };
}
