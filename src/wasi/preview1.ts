// WASI preview1 calls, decoded from guest memory and dispatched to the fd
// objects of the task's fd table. Struct codecs and constants come from
// browser_wasi_shim; the dispatch is ours because crvm needs POSIX fd
// numbering, shared open files, and calls that block by yielding.
import type { CallState, SyscallContext, Wait } from "./context.ts";
import { CrvmFd, ERRNO_WOULDBLOCK, wasi } from "./fd.ts";

const E = wasi;
const utf8 = new TextDecoder("utf-8");
const enc = new TextEncoder();
const LOOKUP_SYMLINK_FOLLOW = 1;

type Fn = (...args: never[]) => number | void;

function iovecs(view: DataView, ptr: number, len: number): { buf: number; len: number }[] {
  const out = [];
  for (let i = 0; i < len; i++) out.push({ buf: view.getUint32(ptr + 8 * i, true), len: view.getUint32(ptr + 8 * i + 4, true) });
  return out;
}

/** Builds the `wasi_snapshot_preview1` import functions for one task. */
export function preview1(ctx: SyscallContext): Record<string, Fn> {
  const fd = (n: number): CrvmFd | undefined => ctx.fds.get(n);
  const str = (ptr: number, len: number) => utf8.decode(ctx.bytes().subarray(ptr, ptr + len));
  const u32 = (ptr: number, v: number) => ctx.view().setUint32(ptr, v, true);
  const u64 = (ptr: number, v: bigint) => ctx.view().setBigUint64(ptr, v, true);

  function strings(list: readonly string[], ptrs: number, buf: number): number {
    const bytes = ctx.bytes();
    for (const s of list) {
      u32(ptrs, buf);
      ptrs += 4;
      const b = enc.encode(s);
      bytes.set(b, buf);
      bytes[buf + b.length] = 0;
      buf += b.length + 1;
    }
    return 0;
  }
  function sizes(list: readonly string[], countPtr: number, sizePtr: number): number {
    u32(countPtr, list.length);
    u32(sizePtr, list.reduce((n, s) => n + enc.encode(s).length + 1, 0));
    return 0;
  }
  function withFd(n: number, f: (o: CrvmFd) => number): number {
    const o = fd(n);
    return o === undefined ? E.ERRNO_BADF : f(o);
  }
  // Reads into iovecs; suspends when nothing is available yet and the fd would block.
  function readv(n: number, iovsPtr: number, iovsLen: number, nreadPtr: number, offset: bigint | null): number {
    const o = fd(n);
    if (o === undefined) return E.ERRNO_BADF;
    let total = 0;
    for (const iov of iovecs(ctx.view(), iovsPtr, iovsLen)) {
      const r = offset === null ? o.fd_read(iov.len) : o.fd_pread(iov.len, offset + BigInt(total));
      if (r.ret === ERRNO_WOULDBLOCK) {
        if (total > 0) break;
        return ctx.suspend({ fds: [{ fd: n, what: "read" }] }, null);
      }
      if (r.ret !== 0) return r.ret;
      ctx.bytes().set(r.data, iov.buf);
      total += r.data.length;
      if (r.data.length < iov.len) break;
    }
    u32(nreadPtr, total);
    return 0;
  }
  function writev(n: number, iovsPtr: number, iovsLen: number, nwrittenPtr: number, offset: bigint | null): number {
    const o = fd(n);
    if (o === undefined) return E.ERRNO_BADF;
    let total = 0;
    const bytes = ctx.bytes();
    for (const iov of iovecs(ctx.view(), iovsPtr, iovsLen)) {
      const data = bytes.subarray(iov.buf, iov.buf + iov.len);
      const r = offset === null ? o.fd_write(data) : o.fd_pwrite(data, offset + BigInt(total));
      if (r.ret === ERRNO_WOULDBLOCK) {
        if (total > 0) break;
        return ctx.suspend({ fds: [{ fd: n, what: "write" }] }, null);
      }
      if (r.ret !== 0) return r.ret;
      total += r.nwritten;
      if (r.nwritten < iov.len) break;
    }
    u32(nwrittenPtr, total);
    return 0;
  }

  return {
    args_get: (argv: number, buf: number) => strings(ctx.args, argv, buf),
    args_sizes_get: (c: number, s: number) => sizes(ctx.args, c, s),
    environ_get: (envp: number, buf: number) => strings(ctx.env, envp, buf),
    environ_sizes_get: (c: number, s: number) => sizes(ctx.env, c, s),
    clock_res_get(id: number, resPtr: number) {
      if (id !== E.CLOCKID_REALTIME && id !== E.CLOCKID_MONOTONIC) return E.ERRNO_INVAL;
      u64(resPtr, 1000n);
      return 0;
    },
    clock_time_get(id: number, _precision: bigint, timePtr: number) {
      if (id === E.CLOCKID_REALTIME) u64(timePtr, ctx.clock.realtimeNs());
      else if (id === E.CLOCKID_MONOTONIC || id === E.CLOCKID_PROCESS_CPUTIME_ID || id === E.CLOCKID_THREAD_CPUTIME_ID) {
        u64(timePtr, ctx.clock.monotonicNs());
      } else return E.ERRNO_INVAL;
      return 0;
    },
    fd_advise: (n: number) => withFd(n, () => 0),
    fd_allocate: (n: number, off: bigint, len: bigint) => withFd(n, (o) => o.fd_allocate(off, len)),
    fd_close: (n: number) => ctx.fds.close(n),
    fd_datasync: (n: number) => withFd(n, (o) => o.fd_sync()),
    fd_fdstat_get: (n: number, ptr: number) =>
      withFd(n, (o) => {
        const { ret, fdstat } = o.fd_fdstat_get();
        if (fdstat) fdstat.write_bytes(ctx.view(), ptr);
        return ret;
      }),
    fd_fdstat_set_flags: (n: number, flags: number) => withFd(n, (o) => o.fd_fdstat_set_flags(flags)),
    fd_fdstat_set_rights: (n: number) => withFd(n, () => 0),
    fd_filestat_get: (n: number, ptr: number) =>
      withFd(n, (o) => {
        const { ret, filestat } = o.fd_filestat_get();
        if (filestat) filestat.write_bytes(ctx.view(), ptr);
        return ret;
      }),
    fd_filestat_set_size: (n: number, size: bigint) => withFd(n, (o) => o.fd_filestat_set_size(size)),
    fd_filestat_set_times: (n: number, a: bigint, m: bigint, fl: number) =>
      withFd(n, (o) => o.fd_filestat_set_times(a, m, fl)),
    fd_pread: (n: number, iovs: number, len: number, off: bigint, out: number) => readv(n, iovs, len, out, off),
    fd_pwrite: (n: number, iovs: number, len: number, off: bigint, out: number) => writev(n, iovs, len, out, off),
    fd_read: (n: number, iovs: number, len: number, out: number) => readv(n, iovs, len, out, null),
    fd_write: (n: number, iovs: number, len: number, out: number) => writev(n, iovs, len, out, null),
    fd_prestat_get: (n: number, ptr: number) =>
      withFd(n, (o) => {
        const { ret, prestat } = o.fd_prestat_get();
        if (prestat) prestat.write_bytes(ctx.view(), ptr);
        return ret;
      }),
    fd_prestat_dir_name: (n: number, ptr: number, len: number) =>
      withFd(n, (o) => {
        const { ret, prestat } = o.fd_prestat_get();
        if (!prestat) return ret;
        const name = prestat.inner.pr_name;
        ctx.bytes().set(name.subarray(0, len), ptr);
        return name.byteLength > len ? E.ERRNO_NAMETOOLONG : 0;
      }),
    fd_readdir(n: number, buf: number, bufLen: number, cookie: bigint, usedPtr: number) {
      const o = fd(n);
      if (o === undefined) return E.ERRNO_BADF;
      const bytes = ctx.bytes();
      let used = 0;
      for (;;) {
        const { ret, dirent } = o.fd_readdir_single(cookie);
        if (ret !== 0) return ret;
        if (dirent === null) break;
        // Entries are written whole or truncated at the end of the buffer (WASI: bufused == buf_len means "more").
        const entry = new Uint8Array(dirent.head_length() + dirent.name_length());
        dirent.write_head_bytes(new DataView(entry.buffer), 0);
        entry.set(dirent.dir_name, dirent.head_length());
        const take = Math.min(entry.length, bufLen - used);
        bytes.set(entry.subarray(0, take), buf + used);
        used += take;
        if (used === bufLen) break;
        cookie = dirent.d_next;
      }
      u32(usedPtr, used);
      return 0;
    },
    fd_renumber: (from: number, to: number) => (fd(to) === undefined ? E.ERRNO_BADF : ctx.fds.renumber(from, to)),
    fd_seek: (n: number, off: bigint, whence: number, outPtr: number) =>
      withFd(n, (o) => {
        const r = o.fd_seek(off, whence);
        if (r.ret === 0) u64(outPtr, r.offset);
        return r.ret;
      }),
    fd_sync: (n: number) => withFd(n, (o) => o.fd_sync()),
    fd_tell: (n: number, outPtr: number) =>
      withFd(n, (o) => {
        const r = o.fd_tell();
        if (r.ret === 0) u64(outPtr, r.offset);
        return r.ret;
      }),
    path_create_directory: (n: number, p: number, l: number) => withFd(n, (o) => o.path_create_directory(str(p, l))),
    path_filestat_get: (n: number, flags: number, p: number, l: number, out: number) =>
      withFd(n, (o) => {
        const { ret, filestat } = o.path_filestat_get(flags, str(p, l));
        if (filestat && ret === 0) filestat.write_bytes(ctx.view(), out);
        return ret;
      }),
    path_filestat_set_times: (n: number, fl: number, p: number, l: number, a: bigint, m: bigint, fst: number) =>
      withFd(n, (o) => o.path_filestat_set_times(fl, str(p, l), a, m, fst)),
    path_link(oldFd: number, oldFlags: number, op: number, ol: number, newFd: number, np: number, nl: number) {
      const a = fd(oldFd), b = fd(newFd);
      if (!a || !b) return E.ERRNO_BADF;
      return a.path_link_to(str(op, ol), (oldFlags & LOOKUP_SYMLINK_FOLLOW) !== 0, b, str(np, nl));
    },
    path_open(n: number, dirflags: number, p: number, l: number, oflags: number, rb: bigint, ri: bigint, fdflags: number, outPtr: number) {
      const o = fd(n);
      if (o === undefined) return E.ERRNO_BADF;
      const { ret, fd_obj } = o.path_open(dirflags, str(p, l), oflags, rb, ri, fdflags);
      if (ret !== 0 || fd_obj === null) return ret || E.ERRNO_IO;
      u32(outPtr, ctx.fds.add(fd_obj as CrvmFd));
      return 0;
    },
    path_readlink(n: number, p: number, l: number, buf: number, bufLen: number, outPtr: number) {
      const o = fd(n);
      if (o === undefined) return E.ERRNO_BADF;
      const { ret, data } = o.path_readlink(str(p, l));
      if (ret !== 0 || data === null) return ret;
      const b = enc.encode(data).subarray(0, bufLen);
      ctx.bytes().set(b, buf);
      u32(outPtr, b.length);
      return 0;
    },
    path_remove_directory: (n: number, p: number, l: number) => withFd(n, (o) => o.path_remove_directory(str(p, l))),
    path_rename(oldFd: number, op: number, ol: number, newFd: number, np: number, nl: number) {
      const a = fd(oldFd), b = fd(newFd);
      if (!a || !b) return E.ERRNO_BADF;
      return a.path_rename_to(str(op, ol), b, str(np, nl));
    },
    path_symlink: (op: number, ol: number, n: number, np: number, nl: number) =>
      withFd(n, (o) => o.path_symlink(str(op, ol), str(np, nl))),
    path_unlink_file: (n: number, p: number, l: number) => withFd(n, (o) => o.path_unlink_file(str(p, l))),
    poll_oneoff: (inPtr: number, outPtr: number, nsubs: number, neventsPtr: number) =>
      pollOneoff(ctx, inPtr, outPtr, nsubs, neventsPtr),
    proc_exit: (code: number) => ctx.exit(code),
    proc_raise: () => E.ERRNO_NOSYS,
    sched_yield() {
      if (ctx.resumed() !== undefined || !ctx.shouldYield()) return 0;
      return ctx.suspend({ yield: true }, true);
    },
    random_get(buf: number, len: number) {
      ctx.randomFill(ctx.bytes().subarray(buf, buf + len));
      return 0;
    },
    sock_accept: () => E.ERRNO_NOTSUP,
    sock_recv: () => E.ERRNO_NOTSUP,
    sock_send: () => E.ERRNO_NOTSUP,
    sock_shutdown: () => E.ERRNO_NOTSUP,
  };
}

const SUB_SIZE = 48;
const EVENT_SIZE = 32;

/**
 * poll_oneoff: clock and fd subscriptions together. Relative clock timeouts
 * become absolute virtual deadlines on the first call and are kept in the
 * call state, so a sleep resumed after a checkpoint waits only for the time
 * that was left.
 */
function pollOneoff(ctx: SyscallContext, inPtr: number, outPtr: number, nsubs: number, neventsPtr: number): number {
  if (nsubs === 0) return E.ERRNO_INVAL;
  const view = ctx.view();
  const saved = ctx.resumed() as string[] | undefined;
  const now = ctx.clock.monotonicNs();
  const deadlines: (bigint | null)[] = [];
  const events: { userdata: bigint; error: number; type: number; nbytes: bigint }[] = [];
  const waitFds: NonNullable<Wait["fds"]> = [];
  for (let i = 0; i < nsubs; i++) {
    const p = inPtr + i * SUB_SIZE;
    const userdata = view.getBigUint64(p, true);
    const type = view.getUint8(p + 8);
    if (type === E.EVENTTYPE_CLOCK) {
      const clockId = view.getUint32(p + 16, true);
      const timeout = view.getBigUint64(p + 24, true);
      const abs = (view.getUint16(p + 40, true) & E.SUBCLOCKFLAGS_SUBSCRIPTION_CLOCK_ABSTIME) !== 0;
      let deadline: bigint;
      const kept = Array.isArray(saved) ? saved[i] : undefined;
      if (typeof kept === "string" && /^\d{1,30}$/.test(kept)) deadline = BigInt(kept);
      else if (clockId === E.CLOCKID_REALTIME) deadline = now + ((abs ? timeout - ctx.clock.realtimeNs() : timeout));
      else if (clockId === E.CLOCKID_MONOTONIC) deadline = abs ? timeout : now + timeout;
      else {
        events.push({ userdata, error: E.ERRNO_INVAL, type, nbytes: 0n });
        deadlines.push(null);
        continue;
      }
      deadlines.push(deadline);
      if (deadline <= now) events.push({ userdata, error: 0, type, nbytes: 0n });
    } else if (type === E.EVENTTYPE_FD_READ || type === E.EVENTTYPE_FD_WRITE) {
      deadlines.push(null);
      const n = view.getUint32(p + 16, true);
      const o = ctx.fds.get(n);
      const what = type === E.EVENTTYPE_FD_READ ? "read" : "write";
      if (o === undefined) events.push({ userdata, error: E.ERRNO_BADF, type, nbytes: 0n });
      else if (o.readiness()[what]) events.push({ userdata, error: 0, type, nbytes: 1n });
      else waitFds.push({ fd: n, what });
    } else {
      deadlines.push(null);
      events.push({ userdata, error: E.ERRNO_INVAL, type, nbytes: 0n });
    }
  }
  if (events.length === 0) {
    const pending = deadlines.filter((d): d is bigint => d !== null);
    const wait: Wait = { fds: waitFds };
    if (pending.length > 0) wait.untilNs = pending.reduce((a, b) => (a < b ? a : b));
    const state: CallState = deadlines.map((d) => (d === null ? "" : d.toString()));
    return ctx.suspend(wait, state);
  }
  const out = ctx.view();
  events.forEach((ev, i) => {
    const p = outPtr + i * EVENT_SIZE;
    for (let k = 0; k < EVENT_SIZE; k += 4) out.setUint32(p + k, 0, true);
    out.setBigUint64(p, ev.userdata, true);
    out.setUint16(p + 8, ev.error, true);
    out.setUint8(p + 10, ev.type);
    if (ev.type !== E.EVENTTYPE_CLOCK) out.setBigUint64(p + 16, ev.nbytes, true);
  });
  out.setUint32(neventsPtr, events.length, true);
  return 0;
}
