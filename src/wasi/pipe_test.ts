import { describe, expect, it } from "vitest";
import { ERRNO_WOULDBLOCK, wasi } from "./fd.ts";
import { FdTable } from "./fd_table.ts";
import { Pipe, PIPE_CAPACITY, PipeReadFd, PipeWriteFd } from "./pipe.ts";

const bytes = (n: number, v = 1) => new Uint8Array(n).fill(v);

describe("pipes", () => {
  it("pass bytes in order", () => {
    const p = new Pipe();
    const r = new PipeReadFd(p), w = new PipeWriteFd(p);
    w.fd_write(new Uint8Array([1, 2, 3]));
    w.fd_write(new Uint8Array([4]));
    expect([...r.fd_read(2).data]).toEqual([1, 2]);
    expect([...r.fd_read(10).data]).toEqual([3, 4]);
  });

  it("make a reader wait while empty and a writer while full", async () => {
    const p = new Pipe();
    const r = new PipeReadFd(p), w = new PipeWriteFd(p);
    expect(r.fd_read(1).ret).toBe(ERRNO_WOULDBLOCK);
    let woke = false;
    const waiting = r.whenReady().then(() => (woke = true));
    expect(woke).toBe(false);
    expect(w.fd_write(bytes(PIPE_CAPACITY + 10)).nwritten).toBe(PIPE_CAPACITY);
    await waiting;
    expect(woke).toBe(true);
    expect(w.fd_write(bytes(1)).ret).toBe(ERRNO_WOULDBLOCK);
    expect(w.readiness().write).toBe(false);
    r.fd_read(100);
    expect(w.readiness().write).toBe(true);
  });

  it("give EOF when every write end is closed, even through shared fds", () => {
    const p = new Pipe();
    const t = new FdTable();
    const r = t.add(new PipeReadFd(p));
    const w = new PipeWriteFd(p);
    t.add(w);
    t.add(w, 9);
    t.close(1);
    expect(t.get(r)!.fd_read(1).ret).toBe(ERRNO_WOULDBLOCK);
    t.close(9);
    expect(t.get(r)!.fd_read(1)).toEqual({ ret: 0, data: new Uint8Array(0) });
  });

  it("give EPIPE when no reader is left", () => {
    const p = new Pipe();
    const r = new PipeReadFd(p), w = new PipeWriteFd(p);
    r.fd_close();
    expect(w.fd_write(bytes(1)).ret).toBe(wasi.ERRNO_PIPE);
  });

  it("answer EAGAIN instead of waiting when non-blocking", () => {
    const p = new Pipe();
    const r = new PipeReadFd(p);
    new PipeWriteFd(p);
    r.fd_fdstat_set_flags(wasi.FDFLAGS_NONBLOCK);
    expect(r.fd_read(1).ret).toBe(wasi.ERRNO_AGAIN);
  });
});
