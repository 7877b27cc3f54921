// The WASIX process calls (`wasix_32v1`, docs/wasix-abi.md): fork, join, ids,
// signals, pipes and fd duplication, with the names, signatures and struct
// layouts of wasix-libc's api_wasix.h, on top of crvm's tasks.
import type { CallState, SyscallContext } from "../wasi/context.ts";
import { wasi } from "../wasi/fd.ts";
import type { FdTable } from "../wasi/fd_table.ts";
import { openGuestPath, readGuestFile } from "../wasi/guest_files.ts";
import { Pipe, PipeReadFd, PipeWriteFd } from "../wasi/pipe.ts";
import type { Task } from "./task.ts";

/** A task that has exited and was not joined yet: only its status is left. */
export interface Zombie {
  readonly pid: number;
  ppid: number;
  readonly status: "exited";
  readonly exitCode: number;
  readonly exitSignal: number | null;
}

/** What the process calls need from the VM: its process table. */
export interface ProcessTable {
  task(pid: number): Task | undefined;
  /** Live children and zombies of `pid`. */
  children(pid: number): (Task | Zombie)[];
  /** Whether one more task fits under --max-tasks. */
  canSpawn(): boolean;
  /** Removes a zombie from the table (after its status was read). */
  reap(zombie: Task | Zombie): void;
  /** Delivers signal `sig` to `target` with its default action; an errno. */
  signal(target: Task, sig: number): number;
  /** Starts loading a new image for `task` (proc_exec); the task resumes in it, or in its call with an errno. */
  execImage(task: Task, image: NewImage): void;
  /** Starts loading a module for a new child of `parent` (proc_spawn); the parent resumes with its pid or an errno. */
  spawnChild(parent: Task, image: NewImage & { fds: FdTable }): void;
}

/** A module to run, as exec and spawn found it. */
export interface NewImage {
  name: string;
  bytes: Uint8Array;
  args: string[];
  env: string[];
}

const SPAWN_CLOSE = 0, SPAWN_DUP2 = 1, SPAWN_OPEN = 2;
const FD_OP_SIZE = 56;

const OPTION_SOME = 1;
const JOIN_NON_BLOCKING = 1;
const STATUS_NOTHING = 0, STATUS_EXIT_NORMAL = 1, STATUS_EXIT_SIGNAL = 2;

type Fn = (...args: never[]) => number | void;

/** Builds the `wasix_32v1` imports for one task. */
export function processCalls(task: Task, procs: ProcessTable, ctx: SyscallContext): Record<string, Fn> {
  const dv = () => ctx.view();
  const writeStatus = (ptr: number, child: Task | Zombie | null) => {
    const v = dv();
    for (let i = 0; i < 6; i++) v.setUint8(ptr + i, 0);
    if (child === null) return v.setUint8(ptr, STATUS_NOTHING);
    if (child.exitSignal !== null) {
      v.setUint8(ptr, STATUS_EXIT_SIGNAL);
      v.setUint16(ptr + 2, child.exitCode ?? 0, true);
      v.setUint8(ptr + 4, child.exitSignal);
    } else {
      v.setUint8(ptr, STATUS_EXIT_NORMAL);
      v.setUint16(ptr + 2, child.exitCode ?? 0, true);
    }
  };
  const utf8 = new TextDecoder();
  const str = (ptr: number, len: number) => utf8.decode(ctx.bytes().subarray(ptr, ptr + len));
  const cstr = (ptr: number) => {
    const b = ctx.bytes();
    let end = ptr;
    while (end < b.length && b[end] !== 0) end++;
    return utf8.decode(b.subarray(ptr, end));
  };
  const strings = (ptr: number, n: number) => Array.from({ length: n }, (_, i) => cstr(dv().getUint32(ptr + 4 * i, true)));
  /** The program's bytes: `name` as a guest path, or searched for in `path` (":"-separated) when asked to. */
  const findProgram = (name: string, search: boolean, path: string) => {
    if (!search || name.includes("/")) return readGuestFile(ctx.fds, name);
    for (const dir of path.split(":").filter(Boolean)) {
      const r = readGuestFile(ctx.fds, `${dir}/${name}`);
      if (r.ret === 0) return r;
    }
    return { ret: wasi.ERRNO_NOENT, data: null };
  };
  /** Applies posix_spawn file actions (close, dup2, open) to the child's fd table, in order; an errno. */
  const applyFdOps = (fds: FdTable, ptr: number, n: number): number => {
    for (let i = 0; i < n; i++) {
      const v = dv(), p = ptr + i * FD_OP_SIZE;
      const cmd = v.getUint8(p), fd = v.getInt32(p + 4, true);
      if (cmd === SPAWN_CLOSE) {
        if (fds.close(fd) !== 0) return wasi.ERRNO_BADF;
      } else if (cmd === SPAWN_DUP2) {
        const src = fds.get(v.getInt32(p + 8, true));
        if (!src) return wasi.ERRNO_BADF;
        fds.add(src, fd);
      } else if (cmd === SPAWN_OPEN) {
        const path = str(v.getUint32(p + 12, true), v.getUint32(p + 16, true));
        const opened = openGuestPath(fds, path, v.getUint32(p + 20, true), v.getUint16(p + 24, true),
          v.getBigUint64(p + 32, true), v.getBigUint64(p + 40, true), v.getUint16(p + 48, true));
        if (opened.ret !== 0 || !opened.fd) return opened.ret;
        fds.add(opened.fd, fd);
      } else return wasi.ERRNO_NOTSUP;
    }
    return 0;
  };
  const resumedErrno = () => (ctx.resumed() as { errno?: number; pid?: number } | undefined);

  return {
    proc_exec4(nPtr: number, nLen: number, argv: number, argc: number, envp: number, envc: number, search: number, pPtr: number, pLen: number) {
      const r = resumedErrno();
      if (r !== undefined) return r.errno ?? wasi.ERRNO_NOEXEC;
      const name = str(nPtr, nLen);
      const found = findProgram(name, search !== 0, str(pPtr, pLen));
      if (found.ret !== 0 || !found.data) return found.ret;
      const args = argc > 0 ? strings(argv, argc) : [name];
      const env = envp === 0 ? [...task.env] : strings(envp, envc);
      procs.execImage(task, { name, bytes: found.data, args, env });
      return ctx.suspend({ exec: true }, null);
    },
    proc_spawn3(
      nPtr: number, nLen: number, argv: number, argc: number, envp: number, envc: number,
      ops: number, nOps: number, _sigs: number, _nSigs: number, search: number, pPtr: number, pLen: number, pidPtr: number,
    ) {
      const r = resumedErrno();
      if (r !== undefined) {
        if (r.pid !== undefined) dv().setInt32(pidPtr, r.pid, true);
        return r.errno ?? 0;
      }
      if (!procs.canSpawn()) return wasi.ERRNO_AGAIN;
      const name = str(nPtr, nLen);
      const found = findProgram(name, search !== 0, str(pPtr, pLen));
      if (found.ret !== 0 || !found.data) return found.ret;
      const fds = ctx.fds.clone();
      const err = applyFdOps(fds, ops, nOps);
      if (err !== 0) {
        fds.closeAll();
        return err;
      }
      const args = argc > 0 ? strings(argv, argc) : [name];
      const env = envp === 0 ? [...task.env] : strings(envp, envc);
      procs.spawnChild(task, { name, bytes: found.data, args, env, fds });
      return ctx.suspend({ exec: true }, null);
    },
    proc_fork(_copyMemory: number, pidPtr: number) {
      const resumed = ctx.resumed() as { pid: number } | undefined;
      if (resumed !== undefined) {
        // Both the parent and the child arrive here: the child sees 0, the parent the child's pid.
        dv().setInt32(pidPtr, resumed.pid, true);
        return 0;
      }
      if (!procs.canSpawn()) return wasi.ERRNO_AGAIN;
      return ctx.suspend({ fork: true }, null);
    },
    proc_join(optPtr: number, flags: number, statusPtr: number) {
      const v = dv();
      const want = v.getUint8(optPtr) === OPTION_SOME ? v.getInt32(optPtr + 4, true) : -1;
      const kids = procs.children(task.pid).filter((c) => want < 0 || c.pid === want);
      if (kids.length === 0) {
        writeStatus(statusPtr, null);
        return wasi.ERRNO_CHILD;
      }
      const done = kids.find((c) => c.status === "exited");
      if (done) {
        v.setUint8(optPtr, OPTION_SOME);
        v.setInt32(optPtr + 4, done.pid, true);
        writeStatus(statusPtr, done);
        procs.reap(done);
        return 0;
      }
      if ((flags & JOIN_NON_BLOCKING) !== 0) {
        writeStatus(statusPtr, null);
        return 0;
      }
      return ctx.suspend({ join: want }, null);
    },
    proc_id(pidPtr: number) {
      dv().setInt32(pidPtr, task.pid, true);
      return 0;
    },
    proc_parent(pid: number, ptr: number) {
      const t = procs.task(pid);
      if (!t) return wasi.ERRNO_SRCH;
      dv().setInt32(ptr, t.ppid, true);
      return 0;
    },
    proc_signal(pid: number, sig: number) {
      const t = procs.task(pid);
      if (!t || t.status === "exited") return wasi.ERRNO_SRCH;
      return procs.signal(t, sig);
    },
    proc_exit2: (code: number) => ctx.exit(code),
    thread_id(tidPtr: number) {
      dv().setInt32(tidPtr, 1, true);
      return 0;
    },
    sched_yield() {
      if (ctx.resumed() !== undefined || !ctx.shouldYield()) return 0;
      return ctx.suspend({ yield: true }, true as CallState);
    },
    fd_pipe(fd0Ptr: number, fd1Ptr: number) {
      const p = new Pipe();
      const r = ctx.fds.add(new PipeReadFd(p));
      const w = ctx.fds.add(new PipeWriteFd(p));
      dv().setUint32(fd0Ptr, r, true);
      dv().setUint32(fd1Ptr, w, true);
      return 0;
    },
    fd_dup(fd: number, outPtr: number) {
      const obj = ctx.fds.get(fd);
      if (!obj) return wasi.ERRNO_BADF;
      dv().setUint32(outPtr, ctx.fds.add(obj), true);
      return 0;
    },
    fd_dup2(fd: number, min: number, _cloexec: number, outPtr: number) {
      const obj = ctx.fds.get(fd);
      if (!obj) return wasi.ERRNO_BADF;
      dv().setUint32(outPtr, ctx.fds.add(obj, undefined, Math.max(0, min)), true);
      return 0;
    },
  };
}
