// crvm.checkpoint(pid, fd, flags, ckptid_out): checkpoint(2) for guests, with
// the rules of the Linux-CR seed. The call checks, then suspends so that the
// caller is unwound at it; the VM calls `take`, which writes the image into
// memory; the caller resumes in the call and streams the image to its fd
// (blocking on a full pipe like fd_write), then stores the checkpoint id.
import type { FreezerGroup } from "../freezer/freezer.ts";
import { concatBytes } from "../bytes.ts";
import type { Task } from "../sched/task.ts";
import type { GuestCheckpointer, Vm } from "../sched/vm.ts";
import type { Hashing } from "../snapshot/mod.ts";
import type { SyscallContext } from "../wasi/context.ts";
import { type CrvmFd, ERRNO_WOULDBLOCK, wasi } from "../wasi/fd.ts";
import { dumpVm, subtreeOf } from "./dump.ts";

/** flags bit 0: the image holds `pid` and its descendants (else `pid` must be the init task: the whole VM). */
export const CHECKPOINT_SUBTREE = 1;

const EBADF = 8, EBUSY = 10, EINVAL = 28, EIO = 29, EPERM = 63, ESRCH = 71;

/** The call's saved state: the id of the image being streamed, or 0 in a task restored from its own image. */
type CallState = { ckpt: number };

interface Request {
  root: number | undefined;
  group: FreezerGroup | null;
  fd: number;
}

interface Outgoing {
  chunks: Uint8Array[];
  /** Bytes of `chunks[0]` already written. */
  offset: number;
  done: () => void;
}

/**
 * The checkpointer of one VM (`vm.checkpointer`).
 *
 * @example
 * vm.checkpointer = new GuestCheckpoints(vm, await Hashing.create(), "node 20.19.0");
 */
export class GuestCheckpoints implements GuestCheckpointer {
  readonly #requests = new Map<Task, Request>();
  readonly #outgoing = new Map<Task, Outgoing>();

  constructor(private readonly vm: Vm, private readonly hashing: Hashing, private readonly runtime: string) {}

  call(task: Task, ctx: SyscallContext, pid: number, fd: number, flags: number, idOut: number): number {
    const st = ctx.resumed() as CallState | undefined;
    if (st === undefined) {
      const req = this.#check(task, pid, fd, flags);
      if (typeof req === "number") return req;
      this.#requests.set(task, req);
      return ctx.suspend({ checkpoint: true }, { ckpt: -1 });
    }
    if (st.ckpt === 0) {
      // Resumed from this image: like fork() in the child.
      ctx.view().setBigUint64(idOut, 0n, true);
      return 0;
    }
    return this.#stream(task, ctx, fd, st.ckpt, idOut);
  }

  /** The seed's rules, in the order a caller can fix them; nothing is written on any failure. */
  #check(task: Task, pid: number, fd: number, flags: number): Request | number {
    const vm = this.vm;
    if ((flags & ~CHECKPOINT_SUBTREE) !== 0) return EINVAL;
    const target = vm.tasks.get(pid);
    if (!target || target.status === "exited") return ESRCH;
    const subtree = (flags & CHECKPOINT_SUBTREE) !== 0;
    if (!subtree && pid !== vm.initPid) return EINVAL;
    if (!vm.inSubtree(pid, task.pid)) return EPERM;
    if (!writable(task.fds.get(fd))) return EBADF;
    const tasks = subtree ? subtreeOf(vm, pid).tasks : [...vm.tasks.values()].filter((t) => t.status !== "exited");
    let group: FreezerGroup | null = null;
    for (const t of tasks) {
      if (t === task) continue;
      const g = vm.freezer.groupOf(t.pid);
      if (group !== null && g !== group) return EBUSY;
      group = g;
      if (!vm.freezer.isFrozen(t.pid) || t.frames === null || vm.freezer.state(g) !== "FROZEN") return EBUSY;
    }
    return { root: subtree ? pid : undefined, group, fd };
  }

  take(task: Task): void {
    const req = this.#requests.get(task)!;
    this.#requests.delete(task);
    const vm = this.vm;
    const chunks: Uint8Array[] = [];
    const group = req.group ?? vm.freezer.root;
    const inImage = req.root === undefined || req.root === task.pid;
    const done = req.group ? vm.freezer.beginCheckpoint(req.group) : () => {};
    // The image records the next id, so ids keep increasing in a VM restored from it.
    const id = vm.nextCheckpointId++;
    try {
      dumpVm(vm, this.hashing, (c) => chunks.push(c.slice()), {
        runtime: this.runtime,
        scope: {
          ...(req.root !== undefined ? { root: req.root } : {}),
          group: group.path,
          imageFile: task.fds.get(req.fd),
          ...(inImage ? { caller: { pid: task.pid, pending: { call: task.pending!.call, wait: { yield: true }, state: { ckpt: 0 } } } } : {}),
        },
      });
    } catch {
      done();
      return this.#resume(task, { ckpt: -EIO });
    }
    this.#outgoing.set(task, { chunks, offset: 0, done });
    this.#resume(task, { ckpt: id });
  }

  #resume(task: Task, state: CallState): void {
    task.pending = { call: task.pending!.call, wait: {}, state };
    task.status = "ready";
  }

  /** The rest of an image this call was writing when the whole VM was checkpointed (kept in that image). */
  #restored(task: Task): Outgoing | undefined {
    const bytes = this.vm.unsent.get(task.pid);
    if (!bytes) return undefined;
    this.vm.unsent.delete(task.pid);
    const out = { chunks: [bytes], offset: 0, done: () => {} };
    this.#outgoing.set(task, out);
    return out;
  }

  unsent(task: Task): Uint8Array | null {
    const out = this.#outgoing.get(task);
    if (!out) return this.vm.unsent.get(task.pid) ?? null;
    return concatBytes(out.chunks.map((c, i) => (i === 0 ? c.subarray(out.offset) : c)));
  }

  /** Writes what is left of the image; suspends while the fd cannot take more. */
  #stream(task: Task, ctx: SyscallContext, fd: number, id: number, idOut: number): number {
    if (id < 0) return -id;
    const out = this.#outgoing.get(task) ?? this.#restored(task);
    if (!out) return EIO;
    const finish = (errno: number) => {
      this.#outgoing.delete(task);
      out.done();
      if (errno === 0) ctx.view().setBigUint64(idOut, BigInt(id), true);
      return errno;
    };
    const file = task.fds.get(fd);
    if (!file) return finish(EBADF);
    while (out.chunks.length > 0) {
      const chunk = out.chunks[0]!;
      const r = file.fd_write(chunk.subarray(out.offset));
      if (r.ret === ERRNO_WOULDBLOCK || r.ret === wasi.ERRNO_AGAIN) return ctx.suspend({ fds: [{ fd, what: "write" }] }, { ckpt: id });
      if (r.ret !== 0) return finish(r.ret);
      out.offset += r.nwritten;
      if (out.offset === chunk.length) {
        out.chunks.shift();
        out.offset = 0;
      }
    }
    return finish(0);
  }
}

/** An open fd the image can be written to: not a directory, opened for writing. */
function writable(file: CrvmFd | undefined): boolean {
  const st = file?.fd_fdstat_get();
  if (!st || st.ret !== 0 || !st.fdstat) return false;
  return st.fdstat.fs_filetype !== wasi.FILETYPE_DIRECTORY && (st.fdstat.fs_rights_base & BigInt(wasi.RIGHTS_FD_WRITE)) !== 0n;
}
