// One guest task: an instance of an instrumented module, its WASI state, and
// the Asyncify driver that suspends it at yield points.
import { GuestError } from "../errors.ts";
import type { InstrumentedModule } from "../instrument/mod.ts";
import type { VirtualClock } from "../wasi/clock.ts";
import type { CallState, SyscallContext, Wait } from "../wasi/context.ts";
import type { FdTable } from "../wasi/fd_table.ts";
import { preview1 } from "../wasi/preview1.ts";
import { AsyncifyDriver, type AsyncifyExports, AsyncifyState } from "./asyncify.ts";
import { processCalls, type ProcessTable } from "./process_calls.ts";

/** Fuel given per time slice (loop iterations / function entries between fuel yields). */
export const FUEL_SLICE = 1_000_000;
const FUEL_GLOBAL = "crvm_g:__crvm_fuel";
const ENOSYS = 52;
/** Exit status of a task that trapped (as a process killed by SIGABRT). */
export const TRAP_EXIT = 134;

/** What the task needs from the VM that runs it. */
export interface TaskOwner {
  readonly clock: VirtualClock;
  /** Checked at every yield point: should this task stop here for a freeze? */
  freezeWanted(task: Task): boolean;
  /** Checked at fuel yields: has this task used up its time slice while others wait? */
  shouldPreempt(task: Task): boolean;
  /** Checked at fuel yields: should the task stop for a moment so the event loop gets a turn? */
  turnDue(): boolean;
  /** `crvm.checkpoint(pid, fd, flags, ckptid_out)`. */
  checkpoint(task: Task, ctx: SyscallContext, pid: number, fd: number, flags: number, idOut: number): number;
  /** Checked by sched_yield: is there another task to give the CPU to? */
  othersWaiting(task: Task): boolean;
  randomFill(buf: Uint8Array): void;
  /** The buffer Asyncify borrows guest memory into, shared by the VM's tasks. */
  readonly scratch: { saved: Uint8Array };
  /** --max-memory in pages, for a memory the module imports (defined ones are capped when compiled). */
  readonly maxMemoryPages?: number;
  /** The process table, for the process calls. */
  readonly processes: ProcessTable;
}

/** Why a task is not running: the call it is suspended in, what that call waits for, and its saved state. */
export interface Pending {
  /** Import the task is suspended in, e.g. "wasi_snapshot_preview1.poll_oneoff". */
  call: string;
  wait: Wait & { freeze?: boolean };
  state: CallState | undefined;
}

export type TaskStatus = "ready" | "suspended" | "exited";

export interface TaskSpec {
  pid: number;
  /** Parent pid (0 for the VM's first task). */
  ppid?: number;
  /**
   * Instantiate over a pooled, already-touched memory (restore's MemoryPool):
   * `compiled` is a variant of the module that imports its memory. The task
   * keeps `spec.compiled` for the forks it makes later.
   */
  pooled?: { compiled: WebAssembly.Module; import: { module: string; name: string }; memory: WebAssembly.Memory };
  module: InstrumentedModule;
  compiled: WebAssembly.Module;
  args: string[];
  env: string[];
  fds: FdTable;
}

class ProcExit {
  constructor(readonly code: number, readonly signal: number | null = null) {}
}

function isStackOverflow(e: unknown): boolean {
  return e instanceof RangeError && /call stack|stack size|recursion/i.test(e.message);
}

/**
 * A guest task. `run()` runs it synchronously until it exits or suspends at
 * a yield point; `pending` then says why, and `frames` holds its unwound stack.
 */
export class Task {
  readonly pid: number;
  /** Parent pid; orphans are re-parented to pid 1. */
  ppid: number;
  readonly module: InstrumentedModule;
  readonly compiled: WebAssembly.Module;
  readonly args: string[];
  readonly env: string[];
  readonly fds: FdTable;
  status: TaskStatus = "ready";
  exitCode: number | null = null;
  /** The signal that ended the task, if one did. */
  exitSignal: number | null = null;
  /** Stopped by SIGSTOP: not scheduled until SIGCONT. */
  stopped = false;
  /** Set when the task trapped: the engine's message. */
  trap: string | null = null;
  pending: Pending | null = null;
  /** The unwound call stack while suspended (null before the first run). */
  frames: Uint8Array | null = null;
  /** Yield points passed since this task was started or restored. */
  yields = 0;
  /** Fuel yields since the scheduler last picked this task (its time slice, counted in fuel). */
  sliceFuel = 0;
  /** Stopped mid-slice for an event-loop turn: the scheduler continues its slice next. */
  interrupted = false;
  readonly instance: WebAssembly.Instance;
  readonly memory: WebAssembly.Memory;
  readonly #asyncify: AsyncifyDriver;
  #resumeState: CallState | undefined;
  #call = "";

  constructor(private readonly owner: TaskOwner, spec: TaskSpec) {
    this.pid = spec.pid;
    this.ppid = spec.ppid ?? 0;
    this.module = spec.module;
    this.compiled = spec.compiled;
    this.args = spec.args;
    this.env = spec.env;
    this.fds = spec.fds;
    const imports: WebAssembly.Imports = {};
    let memory: WebAssembly.Memory | null = null;
    const m = spec.module.memory;
    if (spec.pooled) {
      memory = spec.pooled.memory;
      (imports[spec.pooled.import.module] ??= {})[spec.pooled.import.name] = memory;
    } else if (m.import) {
      const cap = owner.maxMemoryPages;
      const maximum = m.maximumPages === null ? cap : cap === undefined ? m.maximumPages : Math.min(cap, m.maximumPages);
      memory = new WebAssembly.Memory({ initial: m.initialPages, ...(maximum !== undefined ? { maximum } : {}) });
      (imports[m.import.module] ??= {})[m.import.name] = memory;
    }
    const ctx = this.#syscallContext();
    const wasi = preview1(ctx);
    const wasix = processCalls(this, owner.processes, ctx);
    const crvm: Record<string, (...a: never[]) => unknown> = {
      yield: (tag: number) => this.#fuelYield(tag),
      checkpoint: (pid: number, fd: number, flags: number, idOut: number) => owner.checkpoint(this, ctx, pid, fd, flags, idOut),
    };
    for (const imp of spec.module.imports) {
      const table = (imports[imp.module] ??= {}) as Record<string, unknown>;
      const key = `${imp.module}.${imp.name}`;
      const impl = imp.module === "wasi_snapshot_preview1" ? wasi[imp.name]
        : imp.module === "wasix_32v1" ? wasix[imp.name] ?? (imp.name === "proc_exit" ? wasi.proc_exit : undefined)
        : imp.module === "crvm" ? crvm[imp.name]
        : undefined;
      const f = impl ?? this.#stub(imp.results[0]);
      table[imp.name] = imp.module === "wasi_snapshot_preview1" || imp.module === "crvm" || imp.module === "wasix_32v1"
        ? this.#yieldPoint(key, f as (...a: unknown[]) => unknown)
        : f;
    }
    this.instance = new WebAssembly.Instance(spec.pooled?.compiled ?? spec.compiled, imports);
    const ex = this.instance.exports;
    this.memory = memory ?? (ex[m.exportName ?? "memory"] as WebAssembly.Memory);
    this.#asyncify = new AsyncifyDriver(ex as unknown as AsyncifyExports, () => this.memory, owner.scratch);
    this.setFuel(FUEL_SLICE);
  }

  /** A missing call: ENOSYS for an errno-returning function, a zero otherwise. */
  #stub(result: string | undefined): (...a: unknown[]) => unknown {
    if (result === "i32") return () => ENOSYS;
    if (result === "i64") return () => BigInt(ENOSYS);
    return () => (result === undefined ? undefined : 0);
  }

  /** Every async import goes through here: rewind arrival, freeze check, then the call. */
  #yieldPoint(call: string, f: (...a: unknown[]) => unknown): (...a: unknown[]) => unknown {
    return (...a) => {
      if (this.#asyncify.state === AsyncifyState.Rewinding) {
        this.#asyncify.finishRewind();
        this.#resumeState = this.pending?.state;
        this.pending = null;
      } else {
        this.#resumeState = undefined;
        this.yields++;
        if (this.owner.freezeWanted(this)) return this.#suspend(call, { freeze: true }, undefined);
      }
      this.#call = call;
      return f(...a);
    };
  }

  #suspend(call: string, wait: Pending["wait"], state: CallState | undefined): number {
    this.pending = { call, wait, state };
    this.#asyncify.startUnwind();
    return 0;
  }

  #fuelYield(_tag: number): void {
    // A trampolined loop re-runs its check after the yield: refill to at least 1.
    this.setFuel(FUEL_SLICE);
    if (this.#resumeState !== undefined) return;
    this.sliceFuel++;
    if (this.owner.shouldPreempt(this)) this.#suspend(this.#call, { yield: true }, true);
    else if (this.owner.turnDue()) {
      this.interrupted = true;
      this.#suspend(this.#call, { yield: true }, true);
    }
  }

  setFuel(n: number): void {
    const g = this.instance.exports[FUEL_GLOBAL] as WebAssembly.Global | undefined;
    if (g) g.value = n;
  }

  #syscallContext(): SyscallContext {
    const task = this;
    return {
      view: () => new DataView(task.memory.buffer),
      bytes: () => new Uint8Array(task.memory.buffer),
      fds: task.fds,
      args: task.args,
      env: task.env,
      clock: task.owner.clock,
      suspend: (wait, state) => task.#suspend(task.#call, wait, state),
      resumed: () => task.#resumeState,
      shouldYield: () => task.owner.othersWaiting(task),
      exit(code: number): never {
        throw new ProcExit(code);
      },
      randomFill: (buf) => task.owner.randomFill(buf),
    };
  }

  /** Runs until the task exits or suspends. Synchronous: no other JS runs meanwhile. */
  run(): TaskStatus {
    if (this.status === "exited") return this.status;
    if (this.frames !== null) {
      this.#asyncify.startRewind(this.frames);
      this.frames = null;
    }
    try {
      (this.instance.exports._start as () => void)();
    } catch (e) {
      if (e instanceof ProcExit) return this.#exit(e.code, e.signal);
      if (this.#asyncify.state === AsyncifyState.Unwinding) {
        throw new GuestError(`Task ${this.pid} could not be suspended: its call stack is larger than the unwind buffer (${e instanceof Error ? e.message : e})`);
      }
      if (isStackOverflow(e)) {
        this.trap = "call stack exhausted (run with a larger stack: see README, Limitations)";
        return this.#exit(TRAP_EXIT);
      }
      if (e instanceof WebAssembly.RuntimeError) {
        this.trap = e.message;
        return this.#exit(TRAP_EXIT);
      }
      throw e;
    }
    if (this.#asyncify.state === AsyncifyState.Unwinding) {
      this.frames = this.#asyncify.finishUnwind();
      this.status = "suspended";
      return this.status;
    }
    return this.#exit(0);
  }

  #exit(code: number, signal: number | null = null): TaskStatus {
    this.exitCode = code;
    this.exitSignal = signal;
    this.status = "exited";
    this.pending = null;
    this.frames = null;
    this.fds.closeAll();
    return this.status;
  }

  /**
   * Ends a task that is not running (a signal from another task, or its VM
   * ending): it becomes a zombie with that signal.
   */
  kill(signal: number): void {
    if (this.status !== "exited") this.#exit(128 + signal, signal);
  }

  /** Ends the calling task itself by a signal (from inside one of its calls). */
  killSelf(signal: number): never {
    throw new ProcExit(128 + signal, signal);
  }

  /** Mutable globals by export name (for checkpoints). */
  globals(): Map<string, WebAssembly.Global> {
    const out = new Map<string, WebAssembly.Global>();
    for (const name of this.module.globals) out.set(name, this.instance.exports[name] as WebAssembly.Global);
    return out;
  }
}
