// The WASIX process calls (`wasix_32v1`, docs/wasix-abi.md): fork, join, ids,
// signals, pipes and fd duplication, with the names, signatures and struct
// layouts of wasix-libc's api_wasix.h, on top of crvm's tasks.
import type { CallState, SyscallContext } from "../wasi/context.ts";
import { wasi } from "../wasi/fd.ts";
import { Pipe, PipeReadFd, PipeWriteFd } from "../wasi/pipe.ts";
import type { Task } from "./task.ts";

/** What the process calls need from the VM: its process table. */
export interface ProcessTable {
  task(pid: number): Task | undefined;
  children(pid: number): Task[];
  /** Whether one more task fits under --max-tasks. */
  canSpawn(): boolean;
  /** Removes an exited child from the table (after its status was read). */
  reap(task: Task): void;
  /** Delivers signal `sig` to `target` with its default action; an errno. */
  signal(target: Task, sig: number): number;
}

const OPTION_SOME = 1;
const JOIN_NON_BLOCKING = 1;
const STATUS_NOTHING = 0, STATUS_EXIT_NORMAL = 1, STATUS_EXIT_SIGNAL = 2;

type Fn = (...args: never[]) => number | void;

/** Builds the `wasix_32v1` imports for one task. */
export function processCalls(task: Task, procs: ProcessTable, ctx: SyscallContext): Record<string, Fn> {
  const dv = () => ctx.view();
  const writeStatus = (ptr: number, child: Task | null) => {
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
  return {
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
