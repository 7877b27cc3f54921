// A VM: its tasks, its clock and inode numbering, and the scheduler loop that
// runs ready tasks and waits (without busy-waiting) for blocked ones.
import { Freezer } from "../freezer/freezer.ts";
import type { Host } from "../host/mod.ts";
import type { InstrumentedModule } from "../instrument/mod.ts";
import { VirtualClock } from "../wasi/clock.ts";
import { FsContext } from "../wasi/fd.ts";
import type { SyscallContext } from "../wasi/context.ts";
import type { FdTable } from "../wasi/fd_table.ts";
import type { NewImage, ProcessTable, Zombie } from "./process_calls.ts";
import { Task, type TaskOwner, type TaskStatus } from "./task.ts";

/** Instruments (or finds in the cache) and compiles a module, for exec and spawn. */
export type ModuleLoader = (bytes: Uint8Array, name: string) => Promise<{ module: InstrumentedModule; compiled: WebAssembly.Module }>;

const ENOEXEC = 45, EAGAIN = 6, ENOSYS = 52;

/** How `run()` ended: pid 1 (the init task) exited, or every live task is frozen. */
export type RunOutcome = { kind: "exited"; code: number; trap: string | null } | { kind: "frozen" };

/**
 * `crvm.checkpoint`, supplied by whoever can write images
 * (`src/checkpoint/guest_call.ts`); without one the call fails with ENOSYS.
 */
export interface GuestCheckpointer {
  /** The call itself, in the resumable shape: checks, asks for the dump, streams the image, stores the id. */
  call(task: Task, ctx: SyscallContext, pid: number, fd: number, flags: number, idOut: number): number;
  /** Takes the image; the VM calls it once the caller is unwound at the call. */
  take(task: Task): void;
  /** The image bytes `task`'s pending call has still to write (a checkpoint of the VM keeps them), or null. */
  unsent(task: Task): Uint8Array | null;
}

/** When the VM should freeze by itself (`crvm run --checkpoint-after`). */
export interface FreezePolicy {
  /** Freeze at the first yield point at least this many host milliseconds from now. */
  afterMs?: number;
  /** Freeze at this yield point (counted over all tasks since the VM started or was restored); for tests. */
  afterYields?: number;
}

/** How long the VM may run before the event loop gets a turn (timers, stdin, the server). */
const SLICE_MS = 20;
/**
 * A task's time slice, in fuel yields (each FUEL_SLICE checks). Counting fuel
 * instead of milliseconds makes the interleaving of compute-bound tasks
 * deterministic: the same run switches tasks at the same points.
 */
const SLICE_FUEL = 4;

/** Default for --max-memory: 1 GiB per task, in 64 KiB pages. */
export const DEFAULT_MAX_MEMORY_PAGES = 16384;

/** Default for --max-tasks: tasks (zombies included) one VM may hold. */
export const DEFAULT_MAX_TASKS = 1024;

const SIG = { HUP: 1, INT: 2, QUIT: 3, KILL: 9, TERM: 15, CHLD: 17, CONT: 18, STOP: 19, TSTP: 20, URG: 23, WINCH: 28 } as const;
/** Signals whose default action is to do nothing (0 only checks that the task exists). */
const IGNORED = new Set<number>([0, SIG.CHLD, SIG.URG, SIG.WINCH]);

/**
 * A VM runs a tree of tasks on one scheduler: pids, zombies, limits, freezing.
 *
 * @example
 * const vm = new Vm(host);
 * vm.spawn(mod, compiled, { args: ["hello"], env: [], fds });
 * const out = await vm.run();   // { kind: "exited", code: 0 }
 */
export class Vm implements TaskOwner, ProcessTable {
  readonly clock: VirtualClock;
  readonly fsContext = new FsContext();
  readonly tasks = new Map<number, Task>();
  nextPid = 1;
  /** The task whose exit ends the VM: pid 1, or the root of a restored subtree. */
  initPid = 1;
  /** Freezer groups; the root group's own flag is the VM-wide freeze (CLI, API). */
  readonly freezer = new Freezer({ isStopped: (pid) => this.#isStopped(pid), changed: () => this.#wake?.() });
  /** Writes images for `crvm.checkpoint`. */
  checkpointer: GuestCheckpointer | null = null;
  /** The id the next checkpoint taken by a guest gets (positive, increasing). */
  nextCheckpointId = 1;
  /** Image bytes restored tasks' checkpoint calls have still to write, by pid (the checkpointer takes them). */
  readonly unsent = new Map<number, Uint8Array>();
  #turnAt = Infinity;
  /** The pid the scheduler ran last: the next round starts after it, also across `run()` calls. */
  #last = 0;
  #freezeAtMs = Infinity;
  #freezeAtYield = Infinity;
  #yields = 0;
  #wake: (() => void) | null = null;
  #current: Task | null = null;
  /** Exited tasks not joined yet (pid 1 stays in `tasks`: the VM ends with it). */
  readonly zombies = new Map<number, Zombie>();
  readonly scratch = { saved: new Uint8Array(0) };
  maxTasks = DEFAULT_MAX_TASKS;
  /** --max-memory in 64 KiB pages (a task's memory cannot grow past it); undefined: wasm's own 4 GiB. */
  maxMemoryPages: number | undefined = undefined;
  /** How exec and spawn get modules; without one they fail with ENOSYS. */
  loader: ModuleLoader | null = null;
  /** Modules being loaded for exec/spawn: the tasks wait, and a freeze waits for them. */
  readonly #loads = new Set<Promise<void>>();

  constructor(readonly host: Host, monotonicStartNs = 0n) {
    this.clock = new VirtualClock(() => performance.now(), monotonicStartNs);
  }

  spawn(module: InstrumentedModule, compiled: WebAssembly.Module, opts: { args: string[]; env: string[]; fds: FdTable }): Task {
    const task = new Task(this, { pid: this.nextPid++, module, compiled, ...opts });
    this.tasks.set(task.pid, task);
    this.freezer.attach(task.pid, this.freezer.root);
    return task;
  }

  /** Adds an already-built task (restore). */
  adopt(task: Task): void {
    this.tasks.set(task.pid, task);
    if (task.pid >= this.nextPid) this.nextPid = task.pid + 1;
  }

  /** Asks every task to stop at its next yield point; `run()` then resolves with `frozen`. */
  requestFreeze(policy: FreezePolicy = {}): void {
    if (policy.afterMs === undefined && policy.afterYields === undefined) this.freezer.root.frozen = true;
    if (policy.afterMs !== undefined) this.#freezeAtMs = performance.now() + policy.afterMs;
    if (policy.afterYields !== undefined) this.#freezeAtYield = this.#yields + policy.afterYields;
    this.#wake?.();
  }

  /** Ends the VM-wide freeze (groups the guests froze stay frozen); the next `run()` resumes the tasks. */
  thaw(): void {
    this.freezer.root.frozen = false;
    this.#freezeAtMs = Infinity;
    this.#freezeAtYield = Infinity;
    this.#wake?.();
  }

  /** Yield points passed by all tasks since the VM was created or restored. */
  get yieldCount(): number {
    return this.#yields;
  }

  /** Whether the VM-wide freeze is on. */
  get freezing(): boolean {
    return this.freezer.root.frozen;
  }

  freezeWanted(task: Task): boolean {
    this.#yields++;
    if (this.#yields >= this.#freezeAtYield) this.#policyFreeze();
    else this.#timedFreeze();
    return this.freezer.isFrozen(task.pid);
  }

  /** A freeze policy is one-shot: once due it freezes the VM and is gone (a later thaw does not refreeze). */
  #policyFreeze(): void {
    this.freezer.root.frozen = true;
    this.#freezeAtMs = Infinity;
    this.#freezeAtYield = Infinity;
  }

  #timedFreeze(): void {
    if (performance.now() >= this.#freezeAtMs) this.#policyFreeze();
  }

  turnDue(): boolean {
    return performance.now() >= this.#turnAt;
  }

  checkpoint(task: Task, ctx: SyscallContext, pid: number, fd: number, flags: number, idOut: number): number {
    return this.checkpointer ? this.checkpointer.call(task, ctx, pid, fd, flags, idOut) : ENOSYS;
  }

  /** The pid of the task making the current call (none between time slices). */
  currentPid(): number | null {
    return this.#current?.pid ?? null;
  }

  /** Whether `pid` is `ancestor` or one of its descendants (live tasks). */
  inSubtree(pid: number, ancestor: number): boolean {
    for (let p = pid, n = 0; p !== 0 && n <= this.tasks.size; n++) {
      if (p === ancestor) return true;
      p = this.tasks.get(p)?.ppid ?? 0;
    }
    return false;
  }

  /** Stopped at a yield point: not running now, and started (a task that never ran has no stack to save yet). */
  #isStopped(pid: number): boolean {
    const t = this.tasks.get(pid);
    return !t || t.status === "exited" || (t !== this.#current && t.frames !== null);
  }

  /** May run now: ready, not stopped by a signal, and not frozen (a new task runs to its first yield point). */
  #runnable(t: Task): boolean {
    return t.status === "ready" && !t.stopped && (t.frames === null || !this.freezer.isFrozen(t.pid));
  }

  shouldPreempt(task: Task): boolean {
    return task.sliceFuel >= SLICE_FUEL && this.#hasOtherWork();
  }

  othersWaiting(_task: Task): boolean {
    return this.#hasOtherWork();
  }

  #hasOtherWork(): boolean {
    // With no other live task, a slice never needs to end (a blocked one may be woken meanwhile).
    for (const t of this.tasks.values()) {
      if (t !== this.#current && t.status !== "exited" && !t.stopped && !this.freezer.isFrozen(t.pid)) return true;
    }
    return false;
  }

  get processes(): ProcessTable {
    return this;
  }

  task(pid: number): Task | undefined {
    return this.tasks.get(pid);
  }

  children(pid: number): (Task | Zombie)[] {
    const out: (Task | Zombie)[] = [];
    for (const t of this.tasks.values()) if (t.ppid === pid) out.push(t);
    for (const z of this.zombies.values()) if (z.ppid === pid) out.push(z);
    return out;
  }

  canSpawn(): boolean {
    return this.tasks.size + this.zombies.size < this.maxTasks;
  }

  reap(zombie: Task | Zombie): void {
    this.zombies.delete(zombie.pid);
  }

  /** Default actions only (WASIX has no handlers): terminate, stop, continue, or ignore. */
  signal(target: Task, sig: number): number {
    if (sig < 0 || sig > 64) return 28; // EINVAL
    if (IGNORED.has(sig)) return 0;
    if (sig === SIG.STOP || sig === SIG.TSTP) target.stopped = true;
    else if (sig === SIG.CONT) target.stopped = false;
    else if (target === this.#current) target.killSelf(sig);
    else {
      target.kill(sig);
      this.#settle();
    }
    return 0;
  }

  /** Ends every task with `sig` (from outside a time slice): `run()` then returns "exited" (128 + sig). */
  terminate(sig: number = SIG.KILL): void {
    const init = this.tasks.get(this.initPid);
    if (init && init.status !== "exited") {
      init.kill(sig);
      this.#settle();
    }
    this.#wake?.();
  }

  /** After tasks exit: they become zombies, orphans go to pid 1; when pid 1 is gone, every other task ends. */
  #settle(): void {
    const init = this.tasks.get(this.initPid);
    for (const t of [...this.tasks.values()]) {
      if (t.status !== "exited" || t === init) continue;
      this.tasks.delete(t.pid);
      this.freezer.detach(t.pid);
      this.zombies.set(t.pid, { pid: t.pid, ppid: t.ppid, status: "exited", exitCode: t.exitCode ?? 0, exitSignal: t.exitSignal });
      for (const c of this.children(t.pid)) c.ppid = this.initPid;
    }
    if (init?.status === "exited") for (const o of this.tasks.values()) if (o !== init) o.kill(SIG.KILL);
  }

  /** Loads a module in the background; `done` or `failed(errno)` runs later, never before the caller suspended. */
  #load(image: NewImage, done: (m: Awaited<ReturnType<ModuleLoader>>) => void, failed: (errno: number) => void): void {
    const loader = this.loader;
    const p: Promise<void> = (loader ? loader(image.bytes, image.name) : Promise.reject(new Error("no module loader")))
      .then(done)
      .catch(() => failed(loader ? ENOEXEC : ENOSYS))
      .finally(() => this.#loads.delete(p));
    this.#loads.add(p);
  }

  execImage(task: Task, image: NewImage): void {
    this.#load(image, (m) => {
      // Same pid, parent and fd table; a fresh instance of the new module.
      const next = new Task(this, { pid: task.pid, ppid: task.ppid, module: m.module, compiled: m.compiled, args: image.args, env: image.env, fds: task.fds });
      next.stopped = task.stopped;
      this.tasks.set(task.pid, next);
    }, (errno) => this.#resume(task, { errno }));
  }

  spawnChild(parent: Task, image: NewImage & { fds: FdTable }): void {
    this.#load(image, (m) => {
      if (!this.canSpawn()) {
        image.fds.closeAll();
        return this.#resume(parent, { errno: EAGAIN });
      }
      const child = new Task(this, { pid: this.nextPid++, ppid: parent.pid, module: m.module, compiled: m.compiled, args: image.args, env: image.env, fds: image.fds });
      this.tasks.set(child.pid, child);
      this.freezer.attach(child.pid, this.freezer.groupOf(parent.pid));
      this.#resume(parent, { pid: child.pid, errno: 0 });
    }, (errno) => {
      image.fds.closeAll();
      this.#resume(parent, { errno });
    });
  }

  /** Lets a task continue in the call it is suspended in, with that call's result. */
  #resume(task: Task, state: Record<string, number>): void {
    if (task.status === "exited" || !task.pending) return;
    task.pending = { call: task.pending.call, wait: {}, state };
    task.status = "ready";
  }

  /** Completes proc_fork: the parent is unwound at the call; the child is a copy of it, resumed at the same call. */
  #fork(parent: Task): void {
    const child = new Task(this, {
      pid: this.nextPid++,
      ppid: parent.pid,
      module: parent.module,
      compiled: parent.compiled,
      args: parent.args,
      env: parent.env,
      fds: parent.fds.clone(),
    });
    const src = new Uint8Array(parent.memory.buffer);
    const grow = (src.length - child.memory.buffer.byteLength) / 65536;
    if (grow > 0) child.memory.grow(grow);
    new Uint8Array(child.memory.buffer).set(src);
    const theirs = child.globals();
    for (const [name, g] of parent.globals()) theirs.get(name)!.value = g.value;
    child.frames = parent.frames!.slice();
    child.pending = { call: parent.pending!.call, wait: {}, state: { pid: 0 } };
    child.status = "ready";
    parent.pending = { call: parent.pending!.call, wait: {}, state: { pid: child.pid } };
    parent.status = "ready";
    this.tasks.set(child.pid, child);
    this.freezer.attach(child.pid, this.freezer.groupOf(parent.pid));
  }

  randomFill(buf: Uint8Array): void {
    for (let i = 0; i < buf.length; i += 65536) crypto.getRandomValues(buf.subarray(i, i + 65536) as Uint8Array<ArrayBuffer>);
  }

  /**
   * Runs until the init task exits or every live task is frozen (by the
   * VM-wide freeze or by their groups). Tasks in frozen groups stay where
   * they stopped while the others run.
   */
  async run(): Promise<RunOutcome> {
    const init = this.tasks.get(this.initPid);
    if (!init) throw new Error(`VM has no init task (pid ${this.initPid})`);
    this.#turnAt = performance.now() + SLICE_MS;
    try {
      for (;;) {
        if (init.status === "exited") return { kind: "exited", code: init.exitCode ?? 0, trap: init.trap };
        this.#wakeSatisfied();
        this.freezer.settle();
        const ready = this.#rotate([...this.tasks.values()].filter((t) => this.#runnable(t)));
        if (ready.length === 0) {
          if (this.#loads.size === 0 && [...this.tasks.values()].every((t) => t.status === "exited" || this.freezer.isFrozen(t.pid))) {
            return { kind: "frozen" };
          }
          await this.#waitForWork();
          continue;
        }
        // Round robin: each ready task runs until it blocks, exits or its slice ends.
        for (let i = 0; i < ready.length; i++) {
          const t = ready[i]!;
          if (!this.#runnable(t)) continue;
          // A slice cut short to give the event loop a turn goes on with its fuel count: the interleaving stays deterministic.
          if (!t.interrupted) t.sliceFuel = 0;
          t.interrupted = false;
          this.#step(t);
          if ((init.status as TaskStatus) === "exited") break;
          // Give the event loop a turn now and then (timers, stdin, a freeze request, a server), even when tasks never block.
          if (this.turnDue()) {
            this.freezer.settle();
            await new Promise((r) => setTimeout(r, 0));
            this.#timedFreeze();
            this.#turnAt = performance.now() + SLICE_MS;
            if (t.interrupted && this.#runnable(t)) i--;
          }
        }
      }
    } finally {
      this.#turnAt = Infinity;
    }
  }

  /** The round-robin order: the tasks after the one that ran last, then the others. */
  #rotate(ready: Task[]): Task[] {
    const i = ready.findIndex((t) => t.pid > this.#last);
    return i <= 0 ? ready : [...ready.slice(i), ...ready.slice(0, i)];
  }

  /** Runs one task until it suspends, then does what its suspension asks of the VM. */
  #step(t: Task): void {
    // A task that never ran, in a frozen group, stops at its first fuel check instead of running a whole quantum.
    if (t.frames === null && this.freezer.isFrozen(t.pid)) t.setFuel(0);
    this.#last = t.pid;
    this.#current = t;
    const status: TaskStatus = t.run();
    this.#current = null;
    const w = t.pending?.wait;
    if (status === "exited") this.#settle();
    else if (w?.fork) this.#fork(t);
    else if (w?.checkpoint) this.checkpointer!.take(t);
    else if (w?.yield) t.status = "ready";
    this.freezer.settle();
  }

  /** Marks ready every suspended task whose wait is over now (a deadline passed, an fd became ready, its freeze ended). */
  #wakeSatisfied(): void {
    let now: bigint | null = null;
    for (const t of this.tasks.values()) {
      const w = t.status === "suspended" ? t.pending?.wait : undefined;
      if (!w || w.exec || t.stopped || this.freezer.isFrozen(t.pid)) continue;
      let over = !!w.yield || !!w.freeze;
      if (!over && w.join !== undefined) {
        const kids = this.children(t.pid).filter((c) => w.join! < 0 || c.pid === w.join);
        over = kids.length === 0 || kids.some((c) => c.status === "exited");
      }
      if (!over && w.untilNs !== undefined) over = w.untilNs <= (now ??= this.clock.monotonicNs());
      if (!over && w.fds) over = w.fds.some((f) => t.fds.get(f.fd)?.readiness()[f.what] ?? true);
      if (over) t.status = "ready";
    }
  }

  /** Sleeps until some suspended task's wait may be over, a freeze is requested or a group is thawed. */
  async #waitForWork(): Promise<void> {
    const waiting = [...this.tasks.values()].filter((t) => t.status === "suspended" && !this.freezer.isFrozen(t.pid));
    const timers: ReturnType<typeof setTimeout>[] = [];
    const wakers: Promise<void>[] = [new Promise<void>((r) => (this.#wake = r)), ...this.#loads];
    let earliest = Infinity;
    for (const t of waiting) {
      const w = t.pending!.wait;
      if (w.untilNs !== undefined) earliest = Math.min(earliest, this.clock.msUntil(w.untilNs));
      for (const f of w.fds ?? []) {
        const obj = t.fds.get(f.fd);
        wakers.push(obj ? obj.whenReady(f.what) : Promise.resolve());
      }
    }
    if (this.#freezeAtMs !== Infinity) earliest = Math.min(earliest, Math.max(0, this.#freezeAtMs - performance.now()));
    if (earliest !== Infinity) wakers.push(new Promise((r) => timers.push(setTimeout(r, Math.ceil(earliest)))));
    await Promise.race(wakers);
    for (const tm of timers) clearTimeout(tm);
    this.#wake = null;
    this.#timedFreeze();
    this.#turnAt = performance.now() + SLICE_MS;
    // The next round marks ready exactly the tasks whose wait is over.
  }
}
