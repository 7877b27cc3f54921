// The freezer alone, with a fake owner: the group tree and its errnos,
// membership, effective freezing, the state machine, and records/load.
import { describe, expect, it } from "vitest";
import { Freezer, FreezerError } from "./freezer.ts";

const EEXIST = 20, ENOENT = 44, EINVAL = 28, EBUSY = 10, EPERM = 63;

function setup() {
  const stopped = new Set<number>();
  let changes = 0;
  const freezer = new Freezer({ isStopped: (pid) => stopped.has(pid), changed: () => void changes++ });
  return { freezer, stopped, changes: () => changes };
}

function errnoOf(f: () => unknown): number | null {
  try {
    f();
    return null;
  } catch (e) {
    if (e instanceof FreezerError) return e.errno;
    throw e;
  }
}

/** Lets promise callbacks run. */
const tick = () => new Promise<void>((r) => setTimeout(r, 0));

describe("freezer groups", () => {
  it("creates nested groups and finds them by path, a trailing slash ignored", () => {
    const { freezer } = setup();
    const a = freezer.create("/a");
    const b = freezer.create("/a/b");
    expect(freezer.get("/a")).toBe(a);
    expect(freezer.get("/a/b/")).toBe(b);
    expect(freezer.get("/")).toBe(freezer.root);
    expect(b.path).toBe("/a/b");
    expect(b.parent).toBe(a);
    expect(a.contains(b) && !b.contains(a)).toBe(true);
    expect([...freezer.root.subtree()].map((g) => g.path)).toEqual(["/", "/a", "/a/b"]);
    expect(freezer.get("/nope")).toBeUndefined();
    expect(errnoOf(() => freezer.group("/nope"))).toBe(ENOENT);
  });

  it("refuses what mkdir refuses: an existing name, a missing parent, a bad name", () => {
    const { freezer } = setup();
    freezer.create("/a");
    expect(errnoOf(() => freezer.create("/a"))).toBe(EEXIST);
    expect(errnoOf(() => freezer.create("/"))).toBe(EEXIST);
    expect(errnoOf(() => freezer.create("/x/y"))).toBe(ENOENT);
    for (const bad of ["/cgroup.x", "/a b", "/" + "n".repeat(65), "/a/é"]) expect(errnoOf(() => freezer.create(bad)), bad).toBe(EINVAL);
    expect(freezer.create("/a/ok_1.2:3@x+y-z").path).toBe("/a/ok_1.2:3@x+y-z");
  });

  it("removes only empty groups: not with tasks, children or a checkpoint reading it, never the root", () => {
    const { freezer } = setup();
    const a = freezer.create("/a");
    freezer.create("/a/b");
    expect(errnoOf(() => freezer.remove("/a"))).toBe(EBUSY);
    freezer.remove("/a/b");
    freezer.attach(5, a);
    expect(errnoOf(() => freezer.remove("/a"))).toBe(EBUSY);
    freezer.detach(5);
    const done = freezer.beginCheckpoint(a);
    expect(errnoOf(() => freezer.remove("/a"))).toBe(EBUSY);
    done();
    freezer.remove("/a");
    expect(freezer.get("/a")).toBeUndefined();
    expect(errnoOf(() => freezer.remove("/a"))).toBe(ENOENT);
    expect(errnoOf(() => freezer.remove("/"))).toBe(EPERM);
  });
});

describe("membership", () => {
  it("puts each task in one group (the root until attached) and lists members ascending", () => {
    const { freezer, changes } = setup();
    const a = freezer.create("/a");
    const b = freezer.create("/a/b");
    expect(freezer.groupOf(7)).toBe(freezer.root);
    for (const pid of [9, 3, 7]) freezer.attach(pid, a);
    expect(changes()).toBe(3);
    freezer.attach(9, b);
    expect(freezer.members(a)).toEqual([3, 7]);
    expect(freezer.members(b)).toEqual([9]);
    expect(freezer.groupOf(9)).toBe(b);
    expect(freezer.populated(a) && freezer.populated(b)).toBe(true);
    freezer.detach(9);
    expect(freezer.populated(b)).toBe(false);
    expect(freezer.groupOf(9)).toBe(freezer.root);
  });
});

describe("freezing", () => {
  it("freezes a group and everything below it; a child's own setting stays", () => {
    const { freezer } = setup();
    const a = freezer.create("/a");
    const b = freezer.create("/a/b");
    freezer.attach(1, freezer.root);
    freezer.attach(2, b);
    void freezer.freeze(a);
    expect(a.frozen && !b.frozen).toBe(true);
    expect(b.effectivelyFrozen).toBe(true);
    expect(freezer.isFrozen(2)).toBe(true);
    expect(freezer.isFrozen(1)).toBe(false);
  });

  it("goes THAWED → FREEZING → FROZEN as tasks stop; the freeze resolves at FROZEN", async () => {
    const { freezer, stopped } = setup();
    const a = freezer.create("/a");
    freezer.attach(2, a);
    freezer.attach(3, a);
    expect(freezer.state(a)).toBe("THAWED");
    let frozen = false;
    void freezer.freeze(a).then(() => (frozen = true));
    expect(freezer.state(a)).toBe("FREEZING");
    stopped.add(2);
    freezer.settle();
    await tick();
    expect(frozen).toBe(false);
    stopped.add(3);
    expect(freezer.state(a)).toBe("FROZEN");
    freezer.settle();
    await tick();
    expect(frozen).toBe(true);
  });

  it("an empty group is FROZEN at once; a parent's freeze is seen in the child's state", async () => {
    const { freezer, stopped } = setup();
    const a = freezer.create("/a");
    const b = freezer.create("/a/b");
    let done = false;
    void freezer.freeze(a).then(() => (done = true));
    await tick();
    expect(done).toBe(true);
    freezer.attach(4, b);
    expect(freezer.state(b)).toBe("FREEZING");
    stopped.add(4);
    expect(freezer.state(b)).toBe("FROZEN");
  });

  it("thaws at once when no checkpoint reads the group, and tells the owner", async () => {
    const { freezer, changes } = setup();
    const a = freezer.create("/a");
    void freezer.freeze(a);
    const before = changes();
    let thawed = false;
    void freezer.thaw(a).then(() => (thawed = true));
    expect(a.frozen).toBe(false); // synchronously
    expect(changes()).toBe(before + 1);
    await tick();
    expect(thawed).toBe(true);
  });

  it("is CHECKPOINTING while a checkpoint reads it (or a group below); a thaw waits for the end", async () => {
    const { freezer, stopped } = setup();
    const a = freezer.create("/a");
    const b = freezer.create("/a/b");
    freezer.attach(2, b);
    stopped.add(2);
    void freezer.freeze(a);
    const done = freezer.beginCheckpoint(b);
    expect(freezer.state(b)).toBe("CHECKPOINTING");
    expect(freezer.state(a)).toBe("CHECKPOINTING");
    expect(freezer.state(freezer.root)).toBe("CHECKPOINTING");
    expect(freezer.thawBlocked(a)).toBe(true);
    let thawed = false, ended = false;
    void freezer.thaw(a).then(() => (thawed = true));
    void freezer.checkpointDone().then(() => (ended = true));
    freezer.settle();
    await tick();
    expect(thawed || ended || !a.frozen).toBe(false);
    done();
    done(); // a second call changes nothing
    expect(b.checkpointing).toBe(0);
    await tick();
    expect(thawed && ended && !a.frozen).toBe(true);
    expect(freezer.state(a)).toBe("THAWED");
  });
});

describe("records and load", () => {
  it("records the root first and parents before children, and load rebuilds the same tree", () => {
    const { freezer } = setup();
    const a = freezer.create("/a");
    freezer.create("/a/b");
    freezer.create("/c");
    a.frozen = true;
    freezer.root.frozen = true;
    const recs = freezer.records();
    expect(recs).toEqual([
      { path: "/", frozen: true },
      { path: "/a", frozen: true },
      { path: "/a/b", frozen: false },
      { path: "/c", frozen: false },
    ]);
    const other = setup().freezer;
    other.load(recs);
    expect(other.records()).toEqual(recs);
    expect(other.get("/a/b")!.effectivelyFrozen).toBe(true);
  });

  it("refuses records whose parent comes later (a FreezerError, ENOENT)", () => {
    const { freezer } = setup();
    expect(errnoOf(() => freezer.load([{ path: "/", frozen: false }, { path: "/a/b", frozen: false }]))).toBe(ENOENT);
  });
});
