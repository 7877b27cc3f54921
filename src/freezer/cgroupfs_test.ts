// The cgroup filesystem driven through its fds, as preview1 would: a fake
// VM (a real Freezer, a task tree by hand), and one real Vm.
import { describe, expect, it } from "vitest";
import { FdDumper, restoreFiles } from "../checkpoint/fds.ts";
import { createHost } from "../host/mod.ts";
import { instrumentModule, watToWasm } from "../instrument/mod.ts";
import { Vm } from "../sched/vm.ts";
import type { SnapshotImage, VmRecord } from "../snapshot/mod.ts";
import type { SyscallContext, Wait } from "../wasi/context.ts";
import { ERRNO_WOULDBLOCK, FsContext, wasi, type CrvmFd } from "../wasi/fd.ts";
import { FdTable } from "../wasi/fd_table.ts";
import { preview1 } from "../wasi/preview1.ts";
import { CGROUPFS_PATH, CgroupDirFd, CgroupFileFd, type CgroupHost, CgroupPreopenFd } from "./cgroupfs.ts";
import { Freezer } from "./freezer.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const R = BigInt(wasi.RIGHTS_FD_READ);
const W = BigInt(wasi.RIGHTS_FD_WRITE);
const RW = R | W;
const { OFLAGS_CREAT: CREAT, OFLAGS_EXCL: EXCL, OFLAGS_TRUNC: TRUNC, OFLAGS_DIRECTORY: DIRECTORY } = wasi;

/** A VM as the cgroup fs sees it: a real freezer, tasks and parents set by hand, a settable current task. */
function fakeVm() {
  const stopped = new Set<number>();
  const freezer = new Freezer({ isStopped: (pid) => stopped.has(pid), changed: () => {} });
  const parents = new Map<number, number>();
  const tasks = new Map<number, { status: string }>();
  let current: number | null = null;
  const host: CgroupHost = {
    freezer,
    tasks,
    currentPid: () => current,
    inSubtree: (pid, ancestor) => {
      for (let p: number | undefined = pid; p; p = parents.get(p)) if (p === ancestor) return true;
      return false;
    },
  };
  const spawn = (pid: number, ppid: number) => {
    tasks.set(pid, { status: "ready" });
    parents.set(pid, ppid);
    freezer.attach(pid, freezer.root);
  };
  return { host, freezer, stopped, tasks, spawn, as: (pid: number | null) => void (current = pid), root: new CgroupPreopenFd(host) };
}

function open(dir: CrvmFd, path: string, oflags = 0, rights = RW) {
  return dir.path_open(0, path, oflags, rights, 0n, 0);
}
function file(dir: CrvmFd, path: string, rights = RW): CgroupFileFd {
  const r = open(dir, path, 0, rights);
  expect(r.ret).toBe(0);
  return r.fd_obj as CgroupFileFd;
}
function subdir(dir: CrvmFd, path: string): CgroupDirFd {
  const r = open(dir, path, DIRECTORY, 0n);
  expect(r.ret).toBe(0);
  return r.fd_obj as CgroupDirFd;
}
function readAll(fd: CrvmFd, chunk = 1 << 16): string {
  let out = "";
  for (;;) {
    const r = fd.fd_read(chunk);
    expect(r.ret).toBe(0);
    if (r.data.length === 0) return out;
    out += dec.decode(r.data);
  }
}
const read = (dir: CrvmFd, path: string) => readAll(file(dir, path, R));
const write = (fd: CrvmFd, s: string) => fd.fd_write(enc.encode(s)).ret;
function names(dir: CrvmFd): string[] {
  const out: string[] = [];
  for (let c = 0n; ;) {
    const { ret, dirent } = dir.fd_readdir_single(c);
    expect(ret).toBe(0);
    if (dirent === null) return out;
    out.push(dec.decode(dirent.dir_name));
    c = dirent.d_next;
  }
}

describe("cgroupfs directories", () => {
  it("is a preopen at /sys/fs/cgroup on a real Vm; the root group has only cgroup.procs", () => {
    const vm = new Vm(createHost());
    const root = new CgroupPreopenFd(vm);
    expect(root.kind).toBe("cgrouppreopen");
    expect(new TextDecoder().decode(root.fd_prestat_get().prestat!.inner.pr_name)).toBe(CGROUPFS_PATH);
    expect(names(root)).toEqual([".", "..", "cgroup.procs"]);
    expect(root.fd_fdstat_get().fdstat!.fs_filetype).toBe(wasi.FILETYPE_DIRECTORY);
    expect(root.path_create_directory("jobs")).toBe(0);
    expect(vm.freezer.get("/jobs")).toBeDefined();
    expect(read(root, "cgroup.procs")).toBe("");
  });

  it("mkdir and rmdir create and remove groups, with the errnos of Linux", () => {
    const { root, freezer, spawn } = fakeVm();
    expect(root.path_create_directory("a")).toBe(0);
    expect(root.path_create_directory("a/b")).toBe(0);
    expect(freezer.get("/a/b")?.path).toBe("/a/b");
    expect(root.path_create_directory("a")).toBe(wasi.ERRNO_EXIST);
    expect(root.path_create_directory("a/cgroup.freeze")).toBe(wasi.ERRNO_EXIST);
    expect(root.path_create_directory(".")).toBe(wasi.ERRNO_EXIST);
    expect(root.path_create_directory("x/y")).toBe(wasi.ERRNO_NOENT);
    expect(root.path_create_directory("cgroup.mine")).toBe(wasi.ERRNO_INVAL);
    expect(root.path_create_directory("bad name")).toBe(wasi.ERRNO_INVAL);
    expect(root.path_create_directory("a/cgroup.procs/x")).toBe(wasi.ERRNO_NOTDIR);
    expect(root.path_create_directory("../x")).toBe(wasi.ERRNO_NOTCAPABLE);
    expect(root.path_create_directory("/x")).toBe(wasi.ERRNO_NOTCAPABLE);
    expect(root.path_remove_directory("a")).toBe(wasi.ERRNO_BUSY); // a child group
    expect(root.path_remove_directory("a/b/")).toBe(0);
    spawn(2, 1);
    freezer.attach(2, freezer.get("/a")!);
    expect(root.path_remove_directory("a")).toBe(wasi.ERRNO_BUSY); // a task
    expect(root.path_remove_directory("a/cgroup.procs")).toBe(wasi.ERRNO_NOTDIR);
    expect(root.path_remove_directory("nope")).toBe(wasi.ERRNO_NOENT);
    expect(root.path_remove_directory(".")).toBe(wasi.ERRNO_INVAL);
    freezer.attach(2, freezer.root);
    const a = subdir(root, "a");
    expect(a.path_remove_directory("..")).toBe(wasi.ERRNO_INVAL);
    expect(root.path_remove_directory("a")).toBe(0);
    expect(freezer.get("/a")).toBeUndefined();
    expect(root.path_unlink_file("cgroup.procs")).toBe(wasi.ERRNO_PERM);
    expect(root.path_unlink_file("nope")).toBe(wasi.ERRNO_NOENT);
  });

  it("lists ., .., its three files and its child groups, each once, with cookies that survive changes", () => {
    const { root } = fakeVm();
    root.path_create_directory("g");
    for (const n of ["w1", "w2", "w3", "w4"]) root.path_create_directory(`g/${n}`);
    const g = subdir(root, "g");
    const all = names(g);
    expect(all.slice(0, 2)).toEqual([".", ".."]);
    expect([...all].sort()).toEqual([".", "..", "cgroup.events", "cgroup.freeze", "cgroup.procs", "w1", "w2", "w3", "w4"]);
    expect(names(g)).toEqual(all); // same order every time
    // Read three entries, then remove one already seen and add one: the others still come exactly once.
    let c = 0n;
    const seen: string[] = [];
    for (let i = 0; i < 3; i++) {
      const d = g.fd_readdir_single(c).dirent!;
      seen.push(dec.decode(d.dir_name));
      c = d.d_next;
    }
    const gone = seen.find((n) => n.startsWith("w"));
    if (gone) root.path_remove_directory(`g/${gone}`);
    root.path_create_directory("g/w5");
    // A new fd continues from the same cookie: cookies are positions, not per-fd state.
    const again = subdir(root, "g");
    for (;;) {
      const d = again.fd_readdir_single(c).dirent;
      if (d === null) break;
      seen.push(dec.decode(d.dir_name));
      c = d.d_next;
    }
    for (const n of all.filter((n) => n !== gone)) expect(seen.filter((s) => s === n), n).toHaveLength(1);
  });

  it("path_open walks group paths and answers like Linux", () => {
    const { root } = fakeVm();
    root.path_create_directory("a");
    root.path_create_directory("a/b");
    expect(open(root, "a/b/cgroup.freeze").ret).toBe(0);
    expect(open(root, "a/./b/../b/cgroup.events", 0, R).ret).toBe(0);
    expect(open(root, "nope").ret).toBe(wasi.ERRNO_NOENT);
    expect(open(root, "cgroup.freeze").ret).toBe(wasi.ERRNO_NOENT); // not on the root group
    expect(open(root, "a/new.txt", CREAT).ret).toBe(wasi.ERRNO_ACCES);
    expect(open(root, "a/cgroup.freeze", CREAT | TRUNC, W).ret).toBe(0); // echo 1 > cgroup.freeze
    expect(open(root, "a/cgroup.freeze", CREAT | EXCL).ret).toBe(wasi.ERRNO_EXIST);
    expect(open(root, "a/cgroup.freeze", DIRECTORY).ret).toBe(wasi.ERRNO_NOTDIR);
    expect(open(root, "a/cgroup.freeze/").ret).toBe(wasi.ERRNO_NOTDIR);
    expect(open(root, "a", 0, W).ret).toBe(wasi.ERRNO_ISDIR);
    expect(open(root, "a", CREAT | DIRECTORY, 0n).ret).toBe(wasi.ERRNO_INVAL);
    expect(open(root, "a/cgroup.events", 0, W).ret).toBe(wasi.ERRNO_ACCES);
    expect(open(root, "..", 0, R).ret).toBe(wasi.ERRNO_NOTCAPABLE);
    const b = subdir(root, "a/b");
    expect(b.group?.path).toBe("/a/b");
    expect((subdir(b, "../..") as CgroupDirFd).group?.path).toBe("/");
    expect(open(b, "../../..", 0, R).ret).toBe(wasi.ERRNO_NOTCAPABLE);
    const st = root.path_filestat_get(0, "a");
    expect(st.ret === 0 && st.filestat!.filetype).toBe(wasi.FILETYPE_DIRECTORY);
    const fst = root.path_filestat_get(0, "a/cgroup.procs");
    expect(fst.ret === 0 && [fst.filestat!.filetype, fst.filestat!.size]).toEqual([wasi.FILETYPE_REGULAR_FILE, 0n]);
    expect(root.path_filestat_get(0, "a/zzz").ret).toBe(wasi.ERRNO_NOENT);
    const events = file(root, "a/cgroup.events", R);
    const rights = events.fd_fdstat_get().fdstat!.fs_rights_base;
    expect([rights & R, rights & W]).toEqual([R, 0n]);
    const freeze = file(root, "a/cgroup.freeze");
    expect(freeze.fd_fdstat_get().fdstat!.fs_rights_base & RW).toBe(RW);
    expect(root.fd_fdstat_get().fdstat!.fs_rights_inherited & RW).toBe(RW); // wasi-libc masks an open's rights with these
  });
});

describe("cgroupfs files", () => {
  it("cgroup.procs lists member pids ascending, in small reads too, and seq_file semantics hold", () => {
    const { root, freezer, spawn } = fakeVm();
    root.path_create_directory("a");
    const a = freezer.get("/a")!;
    for (const pid of [12, 3, 7]) {
      spawn(pid, 1);
      freezer.attach(pid, a);
    }
    expect(read(root, "a/cgroup.procs")).toBe("3\n7\n12\n");
    expect(readAll(file(root, "a/cgroup.procs", R), 1)).toBe("3\n7\n12\n");
    const fd = file(root, "a/cgroup.procs", R);
    expect(dec.decode(fd.fd_read(2).data)).toBe("3\n");
    freezer.attach(3, freezer.root); // the text being read does not change under the reader
    expect(readAll(fd)).toBe("7\n12\n");
    expect(fd.fd_read(10).data.length).toBe(0); // EOF
    expect(fd.fd_seek(0n, wasi.WHENCE_SET)).toEqual({ ret: 0, offset: 0n });
    expect(readAll(fd)).toBe("7\n12\n"); // back at 0: generated again
    expect(fd.fd_seek(0n, wasi.WHENCE_END).ret).toBe(wasi.ERRNO_INVAL);
    expect(fd.fd_seek(-1n, wasi.WHENCE_SET).ret).toBe(wasi.ERRNO_INVAL);
    expect(dec.decode(fd.fd_pread(3, 2n).data)).toBe("12\n");
    expect(read(root, "cgroup.procs")).toBe("3\n"); // the root group holds pid 3 now
  });

  it("cgroup.procs moves a task of the writer's subtree; EPERM, ESRCH, EINVAL otherwise", () => {
    const { root, freezer, spawn, tasks, as } = fakeVm();
    spawn(1, 0);
    spawn(2, 1);
    spawn(3, 2);
    spawn(4, 1);
    root.path_create_directory("a");
    const procs = file(root, "a/cgroup.procs");
    as(2);
    expect(write(procs, "3\n")).toBe(0);
    expect(freezer.groupOf(3).path).toBe("/a");
    expect(write(procs, " 2 ")).toBe(0); // itself
    expect(write(procs, "4")).toBe(wasi.ERRNO_PERM); // a sibling
    expect(write(procs, "1")).toBe(wasi.ERRNO_PERM); // its parent
    expect(write(procs, "99")).toBe(wasi.ERRNO_SRCH);
    tasks.get(3)!.status = "exited";
    freezer.detach(3); // as the VM does
    expect(write(procs, "3")).toBe(wasi.ERRNO_SRCH);
    for (const junk of ["x", "-1", "2 3", "1.0", "0x2"]) expect(write(procs, junk), junk).toBe(wasi.ERRNO_INVAL);
    expect(write(procs, "\n")).toBe(0); // a writev's trailing newline may come alone: no value, no error
    as(4);
    expect(write(file(root, "cgroup.procs"), "0")).toBe(0); // 0: the writer itself
    expect(freezer.groupOf(4)).toBe(freezer.root);
    as(null); // the host may move anyone
    expect(write(procs, "1")).toBe(0);
    expect(freezer.members(freezer.get("/a")!)).toEqual([1, 2]);
    expect(read(root, "a/cgroup.procs")).toBe("1\n2\n");
    expect(write(file(root, "a/cgroup.procs", R), "4")).toBe(wasi.ERRNO_BADF);
  });

  it("cgroup.freeze freezes and thaws; cgroup.events follows populated and frozen", () => {
    const { root, freezer, spawn, stopped } = fakeVm();
    spawn(2, 1);
    root.path_create_directory("a");
    const a = freezer.get("/a")!;
    const freeze = file(root, "a/cgroup.freeze");
    expect(read(root, "a/cgroup.events")).toBe("populated 0\nfrozen 0\n");
    freezer.attach(2, a);
    expect(read(root, "a/cgroup.events")).toBe("populated 1\nfrozen 0\n");
    expect(readAll(freeze)).toBe("0\n");
    expect(write(freeze, "1\n")).toBe(0);
    expect(a.frozen).toBe(true);
    expect(freezer.state(a)).toBe("FREEZING"); // task 2 still running
    expect(read(root, "a/cgroup.events")).toBe("populated 1\nfrozen 0\n");
    stopped.add(2);
    expect(read(root, "a/cgroup.events")).toBe("populated 1\nfrozen 1\n");
    expect(read(root, "a/cgroup.freeze")).toBe("1\n");
    expect(write(freeze, "2")).toBe(wasi.ERRNO_INVAL);
    expect(write(freeze, "yes")).toBe(wasi.ERRNO_INVAL);
    expect(freeze.fd_pwrite(enc.encode("0"), 0n).ret).toBe(0);
    expect(a.frozen).toBe(false);
    expect(read(root, "a/cgroup.events")).toBe("populated 1\nfrozen 0\n");
    expect(freeze.fd_filestat_set_size(0n)).toBe(0); // O_TRUNC / ftruncate: accepted, nothing to cut
  });

  it("a thaw during a checkpoint blocks (WOULDBLOCK, not writable) until the checkpoint ends", async () => {
    const { root, freezer, spawn, stopped } = fakeVm();
    spawn(2, 1);
    stopped.add(2);
    root.path_create_directory("a");
    const a = freezer.get("/a")!;
    freezer.attach(2, a);
    const freeze = file(root, "a/cgroup.freeze");
    expect(write(freeze, "1")).toBe(0);
    const done = freezer.beginCheckpoint(a);
    expect(read(root, "a/cgroup.events")).toBe("populated 1\nfrozen 1\n"); // CHECKPOINTING counts as frozen
    expect(write(freeze, "0")).toBe(ERRNO_WOULDBLOCK);
    expect(a.frozen).toBe(true);
    expect(freeze.readiness()).toEqual({ read: true, write: false });
    expect(file(root, "a/cgroup.procs").readiness().write).toBe(true);
    let ready = false;
    void freeze.whenReady("write").then(() => (ready = true));
    await new Promise((r) => setTimeout(r, 0));
    expect(ready).toBe(false);
    done();
    await new Promise((r) => setTimeout(r, 0));
    expect(ready).toBe(true);
    expect(freeze.readiness().write).toBe(true);
    expect(write(freeze, "0")).toBe(0); // preview1 retries the write
    expect(a.frozen).toBe(false);
  });

  it("fds of a removed group fail (file ENODEV, directory ENOENT), even when the name is made again", () => {
    const { root } = fakeVm();
    root.path_create_directory("a");
    const dir = subdir(root, "a");
    const freeze = file(root, "a/cgroup.freeze");
    expect(root.path_remove_directory("a")).toBe(0);
    root.path_create_directory("a");
    expect(freeze.fd_read(10).ret).toBe(wasi.ERRNO_NODEV);
    expect(write(freeze, "1")).toBe(wasi.ERRNO_NODEV);
    expect(freeze.fd_filestat_get().ret).toBe(wasi.ERRNO_NODEV);
    expect(freeze.readiness()).toEqual({ read: true, write: true });
    expect(dir.fd_readdir_single(0n).ret).toBe(wasi.ERRNO_NOENT);
    expect(open(dir, "cgroup.freeze").ret).toBe(wasi.ERRNO_NOENT);
    expect(dir.path_create_directory("x")).toBe(wasi.ERRNO_NOENT);
    expect(dir.fd_filestat_get().ret).toBe(wasi.ERRNO_NOENT);
    expect(freeze.fd_close()).toBe(0);
    expect(read(root, "a/cgroup.freeze")).toBe("0\n"); // the new group is fine
  });
});

describe("cgroupfs checkpoint and restore", () => {
  /** Dumps `fds` as checkpoint/fds.ts does, into a VM record and blobs. */
  function dump(host: CgroupHost, fds: CrvmFd[]) {
    const blobs = new Map<number, Uint8Array>();
    const d = new FdDumper((b) => (blobs.set(blobs.size, b.slice()), blobs.size - 1), createHost());
    const ids = fds.map((f) => d.fileId(f));
    const rec = { files: d.files, inodes: [], pipes: [], groups: host.freezer.records() } as unknown as VmRecord;
    return { rec, ids, image: { blobs } as unknown as SnapshotImage };
  }
  function restore(dumped: ReturnType<typeof dump>) {
    const vm = fakeVm();
    const files = restoreFiles(dumped.rec, dumped.image, { host: createHost(), fsContext: new FsContext(), dirs: new Map(), what: "test", now: () => 0n, cgroups: vm.host });
    // As restore.ts does: the groups come after the files.
    vm.freezer.load(dumped.rec.groups!);
    return { vm, fds: dumped.ids.map((id) => files.get(id)!) };
  }

  it("dumps by fields and restores against the restored VM; a reader half way goes on with its text", () => {
    const src = fakeVm();
    src.spawn(2, 1);
    src.spawn(3, 1);
    src.root.path_create_directory("a");
    src.freezer.attach(2, src.freezer.get("/a")!);
    src.freezer.attach(3, src.freezer.get("/a")!);
    const dir = subdir(src.root, "a");
    const procs = file(src.root, "a/cgroup.procs");
    expect(dec.decode(procs.fd_read(2).data)).toBe("2\n");
    const events = file(src.root, "a/cgroup.events", R);
    const d = dump(src.host, [src.root, dir, procs, events]);
    expect(d.rec.files.map((f) => f.kind)).toEqual(["cgrouppreopen", "cgroupdir", "cgroupfile", "cgroupfile"]);
    expect(d.rec.files[1]).toMatchObject({ group: "/a" });
    expect(d.rec.files[2]).toMatchObject({ group: "/a", name: "cgroup.procs", pos: "2", readable: true, writable: true });
    expect(d.rec.files[3]).toMatchObject({ content: null }); // never read: nothing to keep
    const { vm, fds } = restore(d);
    const [root2, dir2, procs2, events2] = fds as [CgroupPreopenFd, CgroupDirFd, CgroupFileFd, CgroupFileFd];
    expect(root2).toBeInstanceOf(CgroupPreopenFd);
    expect(names(dir2)).toContain("cgroup.freeze");
    expect(dir2.group).toBe(vm.freezer.get("/a"));
    expect(readAll(procs2)).toBe("3\n"); // the rest of the text it started, though no task is in /a here
    expect(readAll(events2)).toBe("populated 0\nfrozen 0\n");
    vm.spawn(5, 0);
    vm.as(null);
    expect(write(procs2, "5")).toBe(0);
    expect(vm.freezer.groupOf(5).path).toBe("/a");
  });

  it("restores a stale fd as stale, and a group missing in the restored freezer as stale", () => {
    const src = fakeVm();
    src.root.path_create_directory("a");
    src.root.path_create_directory("b");
    const gone = file(src.root, "a/cgroup.freeze");
    const kept = file(src.root, "b/cgroup.freeze");
    src.root.path_remove_directory("a");
    const d = dump(src.host, [gone, kept]);
    expect(d.rec.files[0]).toMatchObject({ group: null });
    d.rec.groups = d.rec.groups!.filter((g) => g.path !== "/b"); // an image whose /b is not there
    const { fds } = restore(d);
    expect(fds[0]!.fd_read(8).ret).toBe(wasi.ERRNO_NODEV);
    expect(fds[1]!.fd_read(8).ret).toBe(wasi.ERRNO_NODEV);
  });

  it("binds restored fds together: an rmdir and mkdir before another fd's first call leave that fd stale", () => {
    const src = fakeVm();
    src.root.path_create_directory("g");
    const { vm, fds } = restore(dump(src.host, [src.root, file(src.root, "g/cgroup.freeze")]));
    const [root2, freeze2] = fds as [CgroupPreopenFd, CgroupFileFd];
    expect(root2.path_remove_directory("g")).toBe(0);
    expect(root2.path_create_directory("g")).toBe(0);
    expect(freeze2.fd_read(8).ret).toBe(wasi.ERRNO_NODEV);
    expect(vm.freezer.get("/g")).toBeDefined();
  });
});

describe("cgroupfs through WASI calls", () => {
  it("a blocked thaw makes preview1's fd_write suspend the task on the fd", () => {
    const { root, freezer } = fakeVm();
    root.path_create_directory("a");
    const freeze = file(root, "a/cgroup.freeze");
    write(freeze, "1");
    const done = freezer.beginCheckpoint(freezer.get("/a")!);
    const mem = new Uint8Array(256);
    const fds = new FdTable();
    fds.add(freeze, 3);
    let waited: Wait | null = null;
    const ctx: SyscallContext = {
      view: () => new DataView(mem.buffer),
      bytes: () => mem,
      fds,
      args: [],
      env: [],
      clock: null as never,
      suspend: (w) => ((waited = w), 0),
      resumed: () => undefined,
      shouldYield: () => false,
      exit: () => {
        throw new Error("exit");
      },
      randomFill: () => {},
    };
    mem.set(enc.encode("0\n"), 100);
    new DataView(mem.buffer).setUint32(0, 100, true);
    new DataView(mem.buffer).setUint32(4, 2, true);
    const fdWrite = preview1(ctx).fd_write as (fd: number, iovs: number, n: number, out: number) => number;
    expect(fdWrite(3, 0, 1, 16)).toBe(0);
    expect(waited).toEqual({ fds: [{ fd: 3, what: "write" }] });
    done();
    waited = null;
    expect(fdWrite(3, 0, 1, 16)).toBe(0); // the retry after the wake-up
    expect(waited).toBeNull();
    expect(new DataView(mem.buffer).getUint32(16, true)).toBe(2);
    expect(freezer.get("/a")!.frozen).toBe(false);
  });

  // mkdir g; echo 0 > g/cgroup.procs; echo 1 > g/cgroup.freeze; sched_yield; exit 0 — with fd 3 the cgroupfs preopen.
  const SELF_FREEZE = `(module
    (import "wasi_snapshot_preview1" "path_create_directory" (func $mkdir (param i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "sched_yield" (func $yield (result i32)))
    (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
    (memory (export "memory") 1)
    (data (i32.const 100) "g")
    (data (i32.const 200) "g/cgroup.procs")
    (data (i32.const 300) "g/cgroup.freeze")
    (data (i32.const 400) "0\\n")
    (data (i32.const 410) "1\\n")
    (func $echo (param $path i32) (param $len i32) (param $value i32) (result i32)
      (local $err i32)
      (local.set $err (call $open (i32.const 3) (i32.const 0) (local.get $path) (local.get $len) (i32.const 0)
        (i64.const ${wasi.RIGHTS_FD_WRITE}) (i64.const 0) (i32.const 0) (i32.const 600)))
      (if (local.get $err) (then (return (local.get $err))))
      (i32.store (i32.const 500) (local.get $value))
      (i32.store (i32.const 504) (i32.const 2))
      (call $write (i32.load (i32.const 600)) (i32.const 500) (i32.const 1) (i32.const 508)))
    (func (export "_start")
      (if (call $mkdir (i32.const 3) (i32.const 100) (i32.const 1)) (then (call $exit (i32.const 10))))
      (if (call $echo (i32.const 200) (i32.const 14) (i32.const 400)) (then (call $exit (i32.const 11))))
      (if (call $echo (i32.const 300) (i32.const 15) (i32.const 410)) (then (call $exit (i32.const 12))))
      (drop (call $yield))
      (call $exit (i32.const 0))))`;

  it("a guest moves itself into a new group and freezes it with file calls; the VM stops until the group thaws", async () => {
    const host = createHost();
    const module = await instrumentModule(await watToWasm(SELF_FREEZE, "self_freeze.wat"), { name: "self_freeze.wat", cacheDir: null, fs: host.fs });
    const compiled = await WebAssembly.compile(module.wasm as Uint8Array<ArrayBuffer>);
    const vm = new Vm(host);
    const fds = new FdTable();
    fds.add(new CgroupPreopenFd(vm), 3);
    vm.spawn(module, compiled, { args: ["self_freeze"], env: [], fds });
    expect(await vm.run()).toEqual({ kind: "frozen" });
    const g = vm.freezer.get("/g")!;
    expect(vm.freezer.members(g)).toEqual([1]);
    expect(vm.freezer.state(g)).toBe("FROZEN");
    await vm.freezer.thaw(g);
    expect(await vm.run()).toEqual({ kind: "exited", code: 0, trap: null });
  }, 60_000);
});
