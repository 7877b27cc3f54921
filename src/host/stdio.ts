// Standard streams: synchronous, complete writes (bytes, not lines) and
// asynchronous reads of stdin that never block the event loop.
import * as fs from "node:fs";
import * as tty from "node:tty";
import type { HostStdio } from "./types.ts";

function writeAll(fd: number, data: Uint8Array): void {
  let off = 0;
  while (off < data.length) {
    try {
      off += fs.writeSync(fd, data, off, data.length - off);
    } catch (e) {
      // A non-blocking pipe that is full: wait for it briefly and retry.
      if ((e as { code?: string }).code !== "EAGAIN") throw e;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
    }
  }
}

export function nodeStdio(): HostStdio {
  return {
    write: (fd, data) => writeAll(fd, data),
    read: (max) =>
      new Promise((resolve, reject) => {
        const buf = new Uint8Array(max);
        fs.read(0, buf, 0, max, null, (err, n) => {
          if (err) {
            if ((err as { code?: string }).code === "EAGAIN") return resolve(new Uint8Array(0));
            if ((err as { code?: string }).code === "EOF") return resolve(null);
            return reject(err);
          }
          resolve(n === 0 ? null : buf.subarray(0, n));
        });
      }),
    isTerminal: (fd) => tty.isatty(fd),
  };
}
