import type { VirtualClock } from "./clock.ts";
import type { FdTable } from "./fd_table.ts";

/** What a blocked call waits for: a virtual-clock deadline and/or fds becoming ready. */
export interface Wait {
  untilNs?: bigint;
  fds?: { fd: number; what: "read" | "write" }[];
  /** Just give up the CPU (sched_yield, a preempted time slice). */
  yield?: boolean;
  /** proc_fork: the scheduler makes the child once the stack is unwound. */
  fork?: boolean;
  /** proc_join: a child (this pid, or any with -1) has exited. */
  join?: number;
  /** proc_exec/proc_spawn: a module is being loaded; the VM wakes the task when it is. */
  exec?: boolean;
  /** crvm.checkpoint: the VM takes the image once the caller is unwound. */
  checkpoint?: boolean;
}

/** JSON-compatible state a blocking call keeps across a suspend (and a checkpoint). */
export type CallState = string | number | boolean | null | CallState[] | { [k: string]: CallState };

/**
 * What the WASI calls need from the task that makes them. The task supplies
 * it; the calls never see the scheduler, the instance or Asyncify.
 */
export interface SyscallContext {
  /** Views over the current guest memory (re-created after memory.grow). */
  view(): DataView;
  bytes(): Uint8Array;
  readonly fds: FdTable;
  readonly args: readonly string[];
  readonly env: readonly string[];
  readonly clock: VirtualClock;
  /**
   * Resumable-call shape (STYLE.md): a call that cannot complete now calls
   * `suspend(wait, state)` and returns its result. The task unwinds, waits,
   * and calls the same import again with the same arguments; that second
   * call finds `state` in `resumed()` and completes.
   */
  suspend(wait: Wait, state: CallState): number;
  resumed(): CallState | undefined;
  /** Whether sched_yield should really give up the CPU now. */
  shouldYield(): boolean;
  /** Ends the task (proc_exit). */
  exit(code: number): never;
  randomFill(buf: Uint8Array): void;
}
