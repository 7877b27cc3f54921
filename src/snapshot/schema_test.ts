// The cross-record rules of schema.ts, one case each: a valid VM record,
// changed in one place, must be refused with a message naming the rule.
import { describe, expect, it } from "vitest";
import { LIMITS } from "./format.ts";
import { checkVm, jsonProblem, parseMeta, parseModuleInfo } from "./schema.ts";
import type { FileRecord, InodeRecord, TaskRecord, VmRecord } from "./types.ts";

const PAGE_A = "a".repeat(32);
const PAGE_B = "b".repeat(32);
const times: [string, string, string] = ["1", "2", "3"];

/** A small VM with one of everything: two tasks, host and in-memory files, a directory tree. */
function validVm(): VmRecord {
  const inodes: InodeRecord[] = [
    { id: 0, type: "dir", ino: "1", entries: [["sub", 1, "2"], ["f.txt", 2, "3"], ["ln", 3, "4"]], nextCookie: "5", parent: null, removed: false, times },
    { id: 1, type: "dir", ino: "2", entries: [], nextCookie: "2", parent: 0, removed: false, times },
    { id: 2, type: "file", ino: "3", data: 1, size: 5, nlink: 1, times },
    { id: 3, type: "symlink", ino: "4", target: "f.txt", nlink: 1, times },
    { id: 4, type: "file", ino: "5", data: null, size: 0, nlink: 0, times },
  ];
  const files: FileRecord[] = [
    { id: 0, kind: "stdin", buffered: 2, eof: false },
    { id: 1, kind: "stdout" },
    { id: 2, kind: "stderr" },
    { id: 3, kind: "hostpreopen", guestPath: "/data", hostPath: "/srv/data" },
    { id: 4, kind: "hostfile", preopen: 3, rel: "log.txt", pos: "10", append: false, readable: true, writable: true, fdflags: 0, size: "10", mtimeNs: "99" },
    { id: 5, kind: "hostdir", preopen: 3, rel: "sub" },
    { id: 6, kind: "mempreopen", name: "/tmp", inode: 0 },
    { id: 7, kind: "memdir", inode: 1, root: 0 },
    { id: 8, kind: "memfile", inode: 2, pos: "5", append: false, readable: true, writable: false, fdflags: 0 },
    { id: 9, kind: "piperead", pipe: 0, nonblock: false },
    { id: 10, kind: "pipewrite", pipe: 0, nonblock: true },
  ];
  const task = (pid: number, ppid: number, frames: number): TaskRecord => ({
    pid,
    ppid,
    moduleId: 0,
    args: ["m.wasm"],
    env: [],
    memory: { pages: 4, map: [[0, PAGE_A], [3, PAGE_B]] },
    globals: [["crvm_g:__stack_pointer", { type: "num", value: "65536" }], ["crvm_g:big", { type: "i64", value: "-9223372036854775808" }]],
    frames,
    pending: { call: "wasi_snapshot_preview1.poll_oneoff", untilNs: "500", state: ["500"] },
    fds: [[0, 0], [1, 1], [2, 2], [3, 3], [4, 4], [5, 5], [6, 6], [7, 7], [8, 8], [9, 9], [10, 10]],
  });
  return {
    nextPid: 4,
    nextIno: "6",
    inodes,
    files,
    tasks: [task(1, 0, 0), task(2, 1, 3)],
    pipes: [{ id: 0, data: 4, capacity: 16 }],
    zombies: [{ pid: 3, ppid: 2, code: 0, signal: null }],
    maxTasks: 64,
  };
}

const ctx = () => ({ modules: new Set([0]), blobs: new Map([[0, 40], [1, 5], [2, 7], [3, 40], [4, 16]]), pageKnown: (id: string) => id === PAGE_A || id === PAGE_B });

function refused(change: (vm: VmRecord) => void, c = ctx()): string {
  const vm = validVm();
  change(vm);
  const r = checkVm(JSON.parse(JSON.stringify(vm)), c);
  if (r.ok) throw new Error("accepted");
  return r.error;
}

const inode = <T extends InodeRecord["type"]>(vm: VmRecord, i: number, _type: T) => vm.inodes[i] as Extract<InodeRecord, { type: T }>;
const file = <K extends FileRecord["kind"]>(vm: VmRecord, i: number, _kind: K) => vm.files[i] as Extract<FileRecord, { kind: K }>;

describe("checkVm", () => {
  it("accepts the valid VM as it is", () => {
    const r = checkVm(validVm(), ctx());
    expect(r.ok && r.value).toEqual(validVm());
  });

  describe("in-memory inodes", () => {
    it.each<[string, (vm: VmRecord) => void, string | RegExp]>([
      ["ids out of order", (vm) => void (vm.inodes[1]!.id = 7), "inode 1 has id 7"],
      ["file data in a missing blob", (vm) => void (inode(vm, 2, "file").data = 9), "inode 2 refers to missing blob 9"],
      ["a size that is not its blob's", (vm) => void (inode(vm, 2, "file").size = 6), "inode 2 has size 6 but its data holds 5 bytes"],
      ["a size without data", (vm) => void (inode(vm, 4, "file").size = 1), "inode 4 has size 1 but its data holds 0 bytes"],
      ["an empty entry name", (vm) => void (inode(vm, 0, "dir").entries[1]![0] = ""), 'inode 0 has an entry named ""'],
      ["an entry named .", (vm) => void (inode(vm, 0, "dir").entries[1]![0] = "."), 'inode 0 has an entry named "."'],
      ["an entry named ..", (vm) => void (inode(vm, 0, "dir").entries[1]![0] = ".."), 'inode 0 has an entry named ".."'],
      ["an entry name with a slash", (vm) => void (inode(vm, 0, "dir").entries[1]![0] = "a/b"), 'inode 0 has an entry named "a/b"'],
      ["two entries of one name", (vm) => void (inode(vm, 0, "dir").entries[2]![0] = "f.txt"), 'inode 0 has two entries named "f.txt"'],
      ["an entry naming a missing inode", (vm) => void (inode(vm, 0, "dir").entries[1]![1] = 5), "inode 0 refers to missing inode 5"],
      ["a directory linked twice", (vm) => void inode(vm, 0, "dir").entries.push(["again", 1, "9"]), "directory 1 is linked twice"],
      ["a directory linked to itself", (vm) => void inode(vm, 1, "dir").entries.push(["me", 1, "9"]), "directory 1 is linked twice"],
      ["a directory linked from another than its parent", (vm) => {
        inode(vm, 0, "dir").entries.shift();
        inode(vm, 1, "dir").entries.push(["root", 0, "2"]);
      }, "directory 0 is linked from directory 1 but its parent is null"],
      ["a missing parent", (vm) => {
        inode(vm, 0, "dir").entries.shift();
        inode(vm, 1, "dir").parent = 5;
      }, "inode 1 has a missing parent"],
      ["a parent that is a file", (vm) => {
        inode(vm, 0, "dir").entries.shift();
        inode(vm, 1, "dir").parent = 2;
      }, "inode 1 has a parent 2 that is not a directory"],
      ["parents in a loop", (vm) => {
        inode(vm, 0, "dir").entries.shift();
        inode(vm, 0, "dir").parent = 1;
      }, "directory 0: parent links form a cycle"],
      ["a directory that is its own parent", (vm) => {
        inode(vm, 0, "dir").entries.shift();
        inode(vm, 1, "dir").parent = 1;
      }, "directory 1: parent links form a cycle"],
    ])("refuses %s", (_, change, message) => {
      expect(refused(change)).toContain(message);
    });
  });

  describe("open files", () => {
    it.each<[string, (vm: VmRecord) => void, string]>([
      ["ids out of order", (vm) => void (vm.files[2]!.id = 1), "file 2 has id 1"],
      ["a memfile on a missing inode", (vm) => void (file(vm, 8, "memfile").inode = 5), "file 8 refers to missing inode 5"],
      ["a memfile on a directory", (vm) => void (file(vm, 8, "memfile").inode = 1), "file 8 refers to inode 1, which is not a file"],
      ["a memfile on a symlink", (vm) => void (file(vm, 8, "memfile").inode = 3), "file 8 refers to inode 3, which is not a file"],
      ["a mempreopen on a file", (vm) => void (file(vm, 6, "mempreopen").inode = 2), "file 6 refers to inode 2, which is not a directory"],
      ["a memdir on a file", (vm) => void (file(vm, 7, "memdir").inode = 4), "file 7 refers to inode 4, which is not a directory"],
      ["a memdir whose root is missing", (vm) => void (file(vm, 7, "memdir").root = 9), "file 7 refers to missing inode 9"],
      ["a memdir whose root is a file", (vm) => void (file(vm, 7, "memdir").root = 2), "file 7 refers to inode 2, which is not a directory"],
      ["a host file whose preopen is stdout", (vm) => void (file(vm, 4, "hostfile").preopen = 1), "file 4 refers to 1, which is not a host preopen"],
      ["a host dir whose preopen is missing", (vm) => void (file(vm, 5, "hostdir").preopen = 50), "file 5 refers to 50, which is not a host preopen"],
      ["stdin bytes in a missing blob", (vm) => void (file(vm, 0, "stdin").buffered = 9), "file 0 refers to missing blob 9"],
      ["a pipe end on a missing pipe", (vm) => void (file(vm, 9, "piperead").pipe = 1), "file 9 refers to missing pipe 1"],
    ])("refuses %s", (_, change, message) => {
      expect(refused(change)).toContain(message);
    });
  });

  describe("pipes", () => {
    it.each<[string, (vm: VmRecord) => void, string]>([
      ["ids out of order", (vm) => void (vm.pipes![0]!.id = 1), "pipe 0 has id 1"],
      ["bytes in a missing blob", (vm) => void (vm.pipes![0]!.data = 9), "pipe 0 refers to missing blob 9"],
      ["more bytes than its capacity", (vm) => void (vm.pipes![0]!.capacity = 15), "pipe 0 holds 16 bytes, more than its capacity 15"],
    ])("refuse %s", (_, change, message) => {
      expect(refused(change)).toContain(message);
    });
  });

  describe("tasks", () => {
    it.each<[string, (vm: VmRecord) => void, string]>([
      ["a pid twice", (vm) => void (vm.tasks[1]!.pid = 1), "pid 1 appears twice"],
      ["a pid not below nextPid", (vm) => void (vm.nextPid = 2), "task 2: pid is not below nextPid 2"],
      ["a missing module", (vm) => void (vm.tasks[0]!.moduleId = 4), "task 1 refers to missing module 4"],
      ["a missing stack blob", (vm) => void (vm.tasks[1]!.frames = 8), "task 2 refers to missing stack blob 8"],
      ["a page beyond the memory", (vm) => void vm.tasks[0]!.memory.map.push([4, PAGE_A]), "task 1: page 4 lies outside its memory of 4 pages"],
      ["page indices out of order", (vm) => void vm.tasks[0]!.memory.map.reverse(), "task 1: page indices are not increasing at 0"],
      ["a page index twice", (vm) => void vm.tasks[0]!.memory.map.push([3, PAGE_A]), "task 1: page indices are not increasing at 3"],
      ["a missing page", (vm) => void (vm.tasks[0]!.memory.map[1]![1] = "c".repeat(32)), `task 1: page 3 refers to missing page ${"c".repeat(32)}`],
      ["an fd twice", (vm) => void vm.tasks[0]!.fds.push([3, 4]), "task 1: fd 3 appears twice"],
      ["an fd on a missing file", (vm) => void vm.tasks[1]!.fds.push([20, 11]), "task 2: fd 20 refers to missing file 11"],
      ["a global twice", (vm) => void vm.tasks[0]!.globals.push(["crvm_g:big", { type: "i64", value: "1" }]), "task 1: global crvm_g:big appears twice"],
      ["a parent not in the image", (vm) => void (vm.tasks[1]!.ppid = 7), "task 2: parent 7 is not in the image"],
      ["a task that is its own parent", (vm) => void (vm.tasks[0]!.ppid = 1), "task 1: parent links form a cycle"],
      ["parents in a loop", (vm) => void (vm.tasks[0]!.ppid = 2), "task 1: parent links form a cycle"],
      ["a zombie with a task's pid", (vm) => void (vm.zombies![0]!.pid = 2), "pid 2 appears twice"],
      ["a zombie not below nextPid", (vm) => void (vm.nextPid = 3), "zombie 3: pid is not below nextPid 3"],
      ["a zombie whose parent is not in the image", (vm) => void (vm.zombies![0]!.ppid = 7), "task 3: parent 7 is not in the image"],
      ["a task whose parent is a zombie that is its child", (vm) => void (vm.tasks[1]!.ppid = 3), "task 2: parent links form a cycle"],
    ])("refuses %s", (_, change, message) => {
      expect(refused(change)).toContain(message);
    });

    it("accepts a task whose parent has exited (a zombie)", () => {
      const vm = validVm();
      vm.zombies!.push({ pid: 4, ppid: 1, code: 1, signal: 9 });
      vm.nextPid = 6;
      vm.tasks.push({ ...vm.tasks[1]!, pid: 5, ppid: 4 });
      expect(checkVm(vm, ctx()).ok).toBe(true);
    });

    it("takes a page it does not hold from the parent chain only if pageKnown says so", () => {
      const vm = validVm();
      vm.tasks[0]!.memory.map[0]![1] = "c".repeat(32);
      expect(checkVm(vm, { ...ctx(), pageKnown: () => true }).ok).toBe(true);
    });

    it("checks 100,000 tasks in one chain of parents in linear time, and finds a loop at its end", () => {
      // A quadratic walk (the first version) took 8.5 minutes here; the test timeout is the bound.
      const n = LIMITS.tasks;
      const tasks = Array.from({ length: n }, (_, i): TaskRecord => ({
        pid: i + 1, ppid: i, moduleId: 0, args: [], env: [], memory: { pages: 0, map: [] }, globals: [], frames: 0, pending: { call: "c" }, fds: [],
      }));
      const vm: VmRecord = { ...validVm(), nextPid: n + 1, tasks, zombies: [] };
      expect(checkVm(vm, ctx()).ok).toBe(true);
      tasks[0]!.ppid = n;
      expect(checkVm(vm, ctx())).toEqual({ ok: false, error: "task 1: parent links form a cycle" });
    }, 30_000);
  });

  describe("shapes", () => {
    it.each<[string, (vm: VmRecord) => void, string]>([
      ["no tasks", (vm) => void (vm.tasks = []), "tasks: Too small"],
      ["an unknown key", (vm) => void ((vm as unknown as Record<string, unknown>).extra = 1), 'Unrecognized key: "extra"'],
      ["a negative file offset", (vm) => void (file(vm, 8, "memfile").pos = "-1"), "files.8.pos"],
      ["a file offset of 2^64", (vm) => void (file(vm, 4, "hostfile").pos = "18446744073709551616"), "files.4.pos: must be below 2^64"],
      ["a negative inode number", (vm) => void (vm.inodes[0]!.ino = "-1"), "inodes.0.ino"],
      ["a number global that is not a number", (vm) => void (vm.tasks[0]!.globals[0]![1].value = "abc"), "tasks.0.globals.0.1.value"],
      ["a number global in hex", (vm) => void (vm.tasks[0]!.globals[0]![1].value = "0x10"), "tasks.0.globals.0.1.value"],
      ["an i64 global out of range", (vm) => void (vm.tasks[0]!.globals[1]![1].value = "9223372036854775808"), "must be a signed 64-bit integer"],
      ["an i64 global with a fraction", (vm) => void (vm.tasks[0]!.globals[1]![1] = { type: "i64", value: "1.5" }), "tasks.0.globals.1.1.value"],
      ["a page index that is not an integer", (vm) => void (vm.tasks[0]!.memory.map[0]![0] = 0.5), "tasks.0.memory.map.0.0"],
      ["more pages than wasm32 has", (vm) => void (vm.tasks[0]!.memory.pages = LIMITS.memoryPages + 1), "tasks.0.memory.pages"],
      ["a pid of 0", (vm) => void (vm.tasks[0]!.pid = 0), "tasks.0.pid"],
    ])("refuses %s", (_, change, message) => {
      expect(refused(change)).toContain(message);
    });

    it("accepts every form String() gives a number global", () => {
      for (const value of ["0", "-0", "NaN", "Infinity", "-Infinity", "1.5", "-2.25", "1e+21", "5e-324", "1.7976931348623157e+308"]) {
        const vm = validVm();
        vm.tasks[0]!.globals[0]![1].value = value;
        expect(checkVm(vm, ctx()).ok, value).toBe(true);
      }
    });

    it("refuses nesting deeper than LIMITS.jsonDepth without overflowing the stack (zod's z.json() recurses)", () => {
      const vm = validVm();
      vm.tasks[0]!.pending.state = JSON.parse("[".repeat(100_000) + "]".repeat(100_000));
      expect(checkVm(vm, ctx())).toEqual({ ok: false, error: `nested deeper than ${LIMITS.jsonDepth} levels` });
    });

    it('refuses a key named "__proto__", which a copying validator would drop', () => {
      const vm = validVm();
      vm.tasks[0]!.pending.state = JSON.parse('{"__proto__": {"x": 1}}');
      expect(checkVm(vm, ctx())).toEqual({ ok: false, error: 'a key named "__proto__"' });
    });
  });
});

describe("jsonProblem, parseMeta, parseModuleInfo", () => {
  it("counts depth in containers: LIMITS.jsonDepth levels pass, one more does not", () => {
    const nest = (n: number) => JSON.parse("[".repeat(n) + "]".repeat(n));
    expect(jsonProblem(nest(LIMITS.jsonDepth))).toBeNull();
    expect(jsonProblem(nest(LIMITS.jsonDepth + 1))).toContain("nested deeper");
    expect(jsonProblem("x".repeat(100))).toBeNull();
  });

  it("guards META and MODULE headers the same way", () => {
    const deep = JSON.parse("[".repeat(50_000) + "]".repeat(50_000));
    expect(parseMeta(deep)).toEqual({ ok: false, error: `nested deeper than ${LIMITS.jsonDepth} levels` });
    expect(parseModuleInfo(deep)).toEqual({ ok: false, error: `nested deeper than ${LIMITS.jsonDepth} levels` });
    expect(parseMeta(JSON.parse('{"__proto__": 1}'))).toEqual({ ok: false, error: 'a key named "__proto__"' });
  });

  it("refuses a parent reference without a path", () => {
    const meta = { crvmVersion: "0.1.0", createdAt: "now", runtime: "node 20", monotonicNs: "1", id: "0".repeat(32), parent: { id: "1".repeat(32), digest: "2".repeat(32), path: "" } };
    const r = parseMeta(meta);
    expect(r.ok ? "" : r.error).toContain("parent.path");
  });
});

describe("checkVm: cgroupfs files", () => {
  /** The valid VM with one of each cgroupfs file kind (a stale directory fd among them). */
  function withCgroups(): VmRecord {
    const vm = validVm();
    vm.files.push(
      { id: 11, kind: "cgrouppreopen" },
      { id: 12, kind: "cgroupdir", group: "/a" },
      { id: 13, kind: "cgroupfile", group: "/a", name: "cgroup.procs", pos: "2", readable: true, writable: true, fdflags: 0, content: 1 },
      { id: 14, kind: "cgroupdir", group: null },
    );
    vm.groups = [{ path: "/", frozen: false }, { path: "/a", frozen: true }];
    return vm;
  }
  const cgfile = (vm: VmRecord) => vm.files[13] as Extract<FileRecord, { kind: "cgroupfile" }>;

  it("accepts them", () => {
    const r = checkVm(withCgroups(), ctx());
    expect(r.ok && r.value).toEqual(withCgroups());
  });

  it.each<[string, (vm: VmRecord) => void, string | RegExp]>([
    ["a relative group path", (vm) => void ((vm.files[12] as { group: string }).group = "a"), /files\.12\.group.*not a group path/],
    ["a group path through ..", (vm) => void (cgfile(vm).group = "/a/.."), /not a group path/],
    ["an unknown file name", (vm) => void ((cgfile(vm) as { name: string }).name = "cgroup.stat"), /files\.13\.name/],
    ["a signed offset", (vm) => void (cgfile(vm).pos = "-1"), /files\.13\.pos/],
    ["a key more", (vm) => void ((vm.files[11] as Record<string, unknown>).name = "/sys/fs/cgroup"), /Unrecognized key/],
    ["content in a missing blob", (vm) => void (cgfile(vm).content = 9), "file 13 refers to missing blob 9"],
    ["cgroup.freeze of the root group", (vm) => Object.assign(cgfile(vm), { group: "/", name: "cgroup.freeze" }), "file 13: the root group has no cgroup.freeze"],
  ])("refuses %s", (_what, change, message) => {
    const vm = withCgroups();
    change(vm);
    const r = checkVm(JSON.parse(JSON.stringify(vm)), ctx());
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(message);
  });
});
