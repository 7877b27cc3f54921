// One named container of the daemon: a Machine (its own pid space and
// freezer tree), the loop that runs it, and its log.
import type { Machine, TaskInfo } from "../api/machine.ts";
import type { Host } from "../host/mod.ts";
import type { ParentRef } from "../snapshot/mod.ts";
import { ApiError } from "./errors.ts";
import { LogBuffer } from "./logs.ts";
import type { ContainerDef, Latest } from "./state_dir.ts";

export type ContainerStatus = "running" | "frozen" | "exited" | "checkpointed" | "migrating";

/** The image the next periodic checkpoint is incremental against. */
export interface ImageBase {
  latest: Latest;
  ref: ParentRef;
  pages: ReadonlySet<string>;
  modules: ReadonlySet<string>;
}

const enc = new TextEncoder();

/** A host whose stdout and stderr go to `log` and whose stdin is empty. */
export function containerHost(base: Host, log: LogBuffer): Host {
  return {
    ...base,
    stdio: { write: (_fd, data) => log.append(data), read: () => Promise.resolve(null), isTerminal: () => false },
  };
}

export class Container {
  machine: Machine | null = null;
  base: ImageBase | null = null;
  /** Checkpoints taken of it (API, periodic, migration). */
  checkpoints = 0;
  #wake: (() => void) | null = null;
  #loop: Promise<void> | null = null;
  #detached = false;
  #lock: { reason: string; key: symbol } | null = null;

  constructor(public def: ContainerDef, readonly log: LogBuffer, private readonly onExit: (c: Container) => void) {}

  get name(): string {
    return this.def.name;
  }

  get status(): ContainerStatus {
    if (this.def.state !== "running") return this.def.state;
    if (this.#lock) return "migrating";
    return this.machine?.vm.freezing ? "frozen" : "running";
  }

  /** Starts (or, after a restore, continues) running the machine. */
  start(machine: Machine): void {
    this.machine = machine;
    this.#detached = false;
    this.#loop = this.#run(machine);
  }

  async #run(m: Machine): Promise<void> {
    for (;;) {
      const out = await m.run();
      if (this.#detached) return;
      if (out.kind === "exited") {
        if (out.trap !== null) this.log.append(enc.encode(`crvm: guest trapped: ${out.trap}\n`));
        this.def = { ...this.def, state: "exited", exitCode: out.code };
        this.log.close();
        this.machine = null;
        this.onExit(this);
        return;
      }
      // Every task is frozen: wait for a thaw (or the end).
      await new Promise<void>((r) => (this.#wake = r));
      this.#wake = null;
      if (this.#detached) return;
    }
  }

  /** Lets the loop look again after a thaw or a kill. */
  kick(): void {
    this.#wake?.();
  }

  /**
   * Reserves the running container for one operation of many steps (a
   * migration, on either side): until `unlock`, every other freeze, thaw,
   * kill, checkpoint or removal gets a 409 with `reason`; the holder passes
   * the returned key to those calls.
   */
  lock(reason: string): symbol {
    this.#live();
    const key = Symbol(reason);
    this.#lock = { reason, key };
    return key;
  }

  unlock(key: symbol): void {
    if (this.#lock?.key === key) this.#lock = null;
  }

  get locked(): boolean {
    return this.#lock !== null;
  }

  async freeze(group = "/", key?: symbol): Promise<void> {
    await this.#live(key).freeze(group);
  }

  async thaw(group = "/", key?: symbol): Promise<void> {
    await this.#live(key).thaw(group);
    this.kick();
  }

  /** Ends every task with a signal; resolves when the loop has seen the exit. */
  async kill(signal = 9, key?: symbol): Promise<void> {
    const m = this.#live(key);
    m.vm.terminate(signal);
    this.kick();
    await this.#loop;
  }

  /**
   * Stops running it without ending its tasks (after a checkpoint that stops
   * it, or once it runs elsewhere): the machine is dropped, as if frozen forever.
   */
  async detach(state: "checkpointed" | "exited", key?: symbol): Promise<void> {
    const m = this.#live(key);
    this.#detached = true;
    m.vm.requestFreeze();
    this.kick();
    await this.#loop;
    this.machine = null;
    this.def = { ...this.def, state };
    this.log.close();
  }

  tasks(): TaskInfo[] {
    return this.machine?.tasks() ?? [];
  }

  #live(key?: symbol): Machine {
    if (this.#lock && this.#lock.key !== key) throw new ApiError(409, this.#lock.reason);
    if (!this.machine) throw new ApiError(409, `container "${this.name}" is not running (${this.status})`);
    return this.machine;
  }
}
