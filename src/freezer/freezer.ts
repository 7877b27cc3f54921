// Freezer groups, modelled on the cgroup v2 freezer: a tree of groups per VM,
// each task in exactly one group, a group effectively frozen when it or any
// ancestor is. The freezer only keeps the tree, the membership and the
// states; the VM asks it, at every yield point and every scheduling choice,
// whether a task may run.
import { CrvmError } from "../errors.ts";

export type GroupState = "THAWED" | "FREEZING" | "FROZEN" | "CHECKPOINTING";

const ENOENT = 44, EEXIST = 20, EBUSY = 10, EINVAL = 28, EPERM = 63;

/** A freezer operation that cannot be done; `errno` is what a guest's file call returns for it. */
export class FreezerError extends CrvmError {
  override name = "FreezerError";
  constructor(readonly errno: number, message: string) {
    super(message);
  }
}

/** One group. Its path is "/" for the root, else "/a/b". */
export class FreezerGroup {
  readonly children = new Map<string, FreezerGroup>();
  /** Its own freeze setting (`cgroup.freeze`). */
  frozen = false;
  /** Checkpoints reading this group now (a thaw waits for them). */
  checkpointing = 0;
  constructor(readonly path: string, readonly parent: FreezerGroup | null) {}

  /** Frozen by itself or by an ancestor. */
  get effectivelyFrozen(): boolean {
    for (let g: FreezerGroup | null = this; g; g = g.parent) if (g.frozen) return true;
    return false;
  }

  /** This group and every group below it. */
  *subtree(): Generator<FreezerGroup> {
    yield this;
    for (const c of this.children.values()) yield* c.subtree();
  }

  contains(other: FreezerGroup): boolean {
    for (let g: FreezerGroup | null = other; g; g = g.parent) if (g === this) return true;
    return false;
  }
}

/** What the freezer needs from its VM. */
export interface FreezerOwner {
  /** Whether task `pid` is stopped at a yield point now (not running, not yet started). */
  isStopped(pid: number): boolean;
  /** Called whenever a group is thawed, so a waiting scheduler looks again. */
  changed(): void;
}

/** A group's tree and flags as a checkpoint records them. */
export interface GroupRecord {
  path: string;
  frozen: boolean;
}

/**
 * The freezer of one VM.
 *
 * @example
 * const g = vm.freezer.create("/workers");
 * vm.freezer.attach(2, g);
 * await vm.freezer.freeze(g);     // FROZEN: task 2 is stopped at a yield point
 * await vm.freezer.thaw(g);
 */
export class Freezer {
  readonly root = new FreezerGroup("/", null);
  readonly #member = new Map<number, FreezerGroup>();
  #frozenWaiters: { group: FreezerGroup; resolve: () => void }[] = [];
  #thawWaiters: { group: FreezerGroup; resolve: () => void }[] = [];
  #checkpointWaiters: (() => void)[] = [];

  constructor(private readonly owner: FreezerOwner) {}

  /** The group at `path` ("/", "/a", "/a/b"; a trailing slash is ignored), or undefined. */
  get(path: string): FreezerGroup | undefined {
    let g = this.root;
    for (const name of splitPath(path)) {
      const c = g.children.get(name);
      if (!c) return undefined;
      g = c;
    }
    return g;
  }

  /** The group at `path`, or a FreezerError (ENOENT) naming it. */
  group(path: string): FreezerGroup {
    const g = this.get(path);
    if (!g) throw new FreezerError(ENOENT, `no freezer group "${path}"`);
    return g;
  }

  /** Creates a group (mkdir): its parent must exist, the name must be new. */
  create(path: string): FreezerGroup {
    const names = splitPath(path);
    if (names.length === 0) throw new FreezerError(EEXIST, `freezer group "/" exists`);
    const name = names.pop()!;
    if (!/^[A-Za-z0-9_.:@+-]{1,64}$/.test(name) || name.startsWith("cgroup.") || name === "." || name === "..") {
      throw new FreezerError(EINVAL, `bad freezer group name "${name}"`);
    }
    const parent = this.group("/" + names.join("/"));
    if (parent.children.has(name)) throw new FreezerError(EEXIST, `freezer group "${path}" exists`);
    const g = new FreezerGroup(joinPath(parent.path, name), parent);
    parent.children.set(name, g);
    return g;
  }

  /** Removes an empty group (rmdir): no tasks and no child groups, else EBUSY. */
  remove(path: string): void {
    const g = this.group(path);
    if (g === this.root) throw new FreezerError(EPERM, `the root freezer group cannot be removed`);
    if (g.children.size > 0 || this.members(g).length > 0) throw new FreezerError(EBUSY, `freezer group "${path}" is not empty`);
    if (g.checkpointing > 0) throw new FreezerError(EBUSY, `freezer group "${path}" is being checkpointed`);
    g.parent!.children.delete(g.path.slice(g.path.lastIndexOf("/") + 1));
  }

  /** Moves (or first places) task `pid` into `group`. */
  attach(pid: number, group: FreezerGroup): void {
    this.#member.set(pid, group);
    this.owner.changed();
  }

  /** A task gone for good (exited): it leaves its group. */
  detach(pid: number): void {
    this.#member.delete(pid);
  }

  groupOf(pid: number): FreezerGroup {
    return this.#member.get(pid) ?? this.root;
  }

  /** Pids directly in `group`, ascending. */
  members(group: FreezerGroup): number[] {
    const out: number[] = [];
    for (const [pid, g] of this.#member) if (g === group) out.push(pid);
    return out.sort((a, b) => a - b);
  }

  /** Whether any task is in `group` or below it. */
  populated(group: FreezerGroup): boolean {
    for (const g of this.#member.values()) if (group.contains(g)) return true;
    return false;
  }

  /** Whether task `pid` may not run: its group is effectively frozen. */
  isFrozen(pid: number): boolean {
    return this.groupOf(pid).effectivelyFrozen;
  }

  state(group: FreezerGroup): GroupState {
    for (const g of group.subtree()) if (g.checkpointing > 0) return "CHECKPOINTING";
    if (!group.effectivelyFrozen) return "THAWED";
    for (const [pid, g] of this.#member) if (group.contains(g) && !this.owner.isStopped(pid)) return "FREEZING";
    return "FROZEN";
  }

  /** FREEZING, then FROZEN once no task of the group (or below) is running: the promise resolves then. */
  freeze(group: FreezerGroup): Promise<void> {
    group.frozen = true;
    // A thaw still waiting for a checkpoint is overtaken by this freeze.
    for (const w of this.#thawWaiters) if (w.group === group) w.resolve();
    this.#thawWaiters = this.#thawWaiters.filter((w) => w.group !== group);
    return new Promise((resolve) => {
      this.#frozenWaiters.push({ group, resolve });
      this.settle();
    });
  }

  /** Lets the group's tasks continue where they stopped; waits while a checkpoint reads the group. */
  thaw(group: FreezerGroup): Promise<void> {
    return new Promise((resolve) => {
      this.#thawWaiters.push({ group, resolve });
      this.settle();
    });
  }

  /** Whether a thaw of `group` would have to wait for a checkpoint now. */
  thawBlocked(group: FreezerGroup): boolean {
    return this.state(group) === "CHECKPOINTING";
  }

  /** Marks `group` as read by a checkpoint until the returned function is called. */
  beginCheckpoint(group: FreezerGroup): () => void {
    group.checkpointing++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      group.checkpointing--;
      const waiters = this.#checkpointWaiters;
      this.#checkpointWaiters = [];
      for (const w of waiters) w();
      this.settle();
      this.owner.changed();
    };
  }

  /** Resolves when the next checkpoint ends (for a guest's thaw that has to wait). */
  checkpointDone(): Promise<void> {
    return new Promise((resolve) => this.#checkpointWaiters.push(resolve));
  }

  /** Resolves the freezes and thaws that can complete now (the VM calls this after each time slice). */
  settle(): void {
    const frozen = this.#frozenWaiters;
    this.#frozenWaiters = [];
    for (const w of frozen) {
      if (!w.group.frozen || this.state(w.group) !== "FREEZING") w.resolve();
      else this.#frozenWaiters.push(w);
    }
    const thaws = this.#thawWaiters;
    this.#thawWaiters = [];
    let thawed = false;
    for (const w of thaws) {
      if (this.thawBlocked(w.group)) {
        this.#thawWaiters.push(w);
        continue;
      }
      w.group.frozen = false;
      thawed = true;
      w.resolve();
    }
    if (thawed) this.owner.changed();
  }

  /** Every group, the root first and parents before children, for a checkpoint. */
  records(): GroupRecord[] {
    const out: GroupRecord[] = [{ path: "/", frozen: this.root.frozen }];
    for (const g of this.root.subtree()) if (g !== this.root) out.push({ path: g.path, frozen: g.frozen });
    return out;
  }

  /** Rebuilds the groups of a checkpoint (parents before children) in an empty freezer. */
  load(records: GroupRecord[]): void {
    for (const r of records) {
      const g = r.path === "/" ? this.root : this.create(r.path);
      g.frozen = r.frozen;
    }
  }
}

function splitPath(path: string): string[] {
  return path.split("/").filter((s) => s !== "");
}

function joinPath(parent: string, name: string): string {
  return parent === "/" ? `/${name}` : `${parent}/${name}`;
}
