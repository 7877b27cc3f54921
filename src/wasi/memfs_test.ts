import { describe, expect, it } from "vitest";
import { FsContext, wasi, type CrvmFd } from "./fd.ts";
import { LOOKUPFLAGS_SYMLINK_FOLLOW } from "./_fs_common.ts";
import { MemDir, MemDirFd, MemFile, MemFileFd, MemPreopenFd, type FsEnv } from "./memfs.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const RW = BigInt(wasi.RIGHTS_FD_READ | wasi.RIGHTS_FD_WRITE);
const R = BigInt(wasi.RIGHTS_FD_READ);
const { OFLAGS_CREAT: CREAT, OFLAGS_EXCL: EXCL, OFLAGS_TRUNC: TRUNC, OFLAGS_DIRECTORY: DIRECTORY } = wasi;

function setup() {
  let clock = 1_000_000_000n;
  const env: FsEnv = { ctx: new FsContext(), now: () => (clock += 1000n) };
  const root = new MemPreopenFd(env, "/tmp");
  return { env, root };
}

function open(dir: CrvmFd, path: string, oflags = 0, rights = RW, fdflags = 0, dirflags = LOOKUPFLAGS_SYMLINK_FOLLOW) {
  return dir.path_open(dirflags, path, oflags, rights, 0n, fdflags);
}
function file(dir: CrvmFd, path: string, oflags = 0, rights = RW, fdflags = 0): MemFileFd {
  const r = open(dir, path, oflags, rights, fdflags);
  expect(r.ret).toBe(0);
  return r.fd_obj as MemFileFd;
}
function write(fd: CrvmFd, s: string) {
  expect(fd.fd_write(enc.encode(s))).toEqual({ ret: 0, nwritten: enc.encode(s).length });
}
function readAll(dir: CrvmFd, path: string): string {
  const fd = file(dir, path, 0, R);
  return dec.decode(fd.fd_read(1 << 20).data);
}
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

describe("memfs files", () => {
  it("creates, writes, seeks, reads", () => {
    const { root } = setup();
    const fd = file(root, "a.txt", CREAT);
    write(fd, "hello world");
    expect(fd.fd_tell()).toEqual({ ret: 0, offset: 11n });
    expect(fd.fd_seek(-5n, wasi.WHENCE_END)).toEqual({ ret: 0, offset: 6n });
    expect(dec.decode(fd.fd_read(100).data)).toBe("world");
    expect(fd.fd_read(100).data.length).toBe(0);
    expect(fd.fd_seek(-1n, wasi.WHENCE_SET).ret).toBe(wasi.ERRNO_INVAL);
    expect(dec.decode(fd.fd_pread(4, 1n).data)).toBe("ello");
    expect(fd.fd_pwrite(enc.encode("J"), 0n).ret).toBe(0);
    expect(readAll(root, "a.txt")).toBe("Jello world");
    expect(fd.fd_filestat_get().filestat!.size).toBe(11n);
    expect(fd.fd_filestat_get().filestat!.filetype).toBe(wasi.FILETYPE_REGULAR_FILE);
  });

  it("keeps positions per fd and appends at the end", () => {
    const { root } = setup();
    const a = file(root, "log", CREAT);
    const b = file(root, "log", 0, RW, wasi.FDFLAGS_APPEND);
    write(a, "1234");
    write(b, "AB"); // append: at the end, whatever b's position
    expect(b.fd_tell().offset).toBe(6n);
    a.fd_seek(0n, wasi.WHENCE_SET);
    write(a, "x");
    expect(readAll(root, "log")).toBe("x234AB");
    expect(b.fd_fdstat_get().fdstat!.fs_flags & wasi.FDFLAGS_APPEND).toBe(wasi.FDFLAGS_APPEND);
    b.fd_fdstat_set_flags(0);
    b.fd_seek(0n, wasi.WHENCE_SET);
    write(b, "y");
    expect(readAll(root, "log")).toBe("y234AB");
  });

  it("honours O_EXCL, O_TRUNC, O_DIRECTORY and access modes", () => {
    const { root } = setup();
    write(file(root, "f", CREAT), "data");
    expect(open(root, "f", CREAT | EXCL).ret).toBe(wasi.ERRNO_EXIST);
    expect(open(root, "f", DIRECTORY).ret).toBe(wasi.ERRNO_NOTDIR);
    expect(open(root, "f/").ret).toBe(wasi.ERRNO_NOTDIR);
    expect(open(root, "missing").ret).toBe(wasi.ERRNO_NOENT);
    expect(open(root, "new/", CREAT).ret).toBe(wasi.ERRNO_ISDIR);
    expect(open(root, "d", CREAT | DIRECTORY).ret).toBe(wasi.ERRNO_INVAL);
    expect(open(root, "").ret).toBe(wasi.ERRNO_NOENT);
    expect(open(root, "f\0").ret).toBe(wasi.ERRNO_INVAL);
    const ro = file(root, "f", 0, R);
    expect(ro.fd_write(enc.encode("x")).ret).toBe(wasi.ERRNO_BADF);
    expect(ro.fd_filestat_set_size(0n)).toBe(wasi.ERRNO_BADF);
    expect(ro.fd_fdstat_get().fdstat!.fs_rights_base & BigInt(wasi.RIGHTS_FD_WRITE)).toBe(0n);
    const wo = file(root, "f", 0, BigInt(wasi.RIGHTS_FD_WRITE));
    expect(wo.fd_read(10).ret).toBe(wasi.ERRNO_BADF);
    file(root, "f", TRUNC, 0n); // truncation needs no rights (wasi-testsuite truncation_rights)
    expect(readAll(root, "f")).toBe("");
  });

  it("fills holes with zeros, also after shrinking", () => {
    const { root } = setup();
    const fd = file(root, "sparse", CREAT);
    write(fd, "abcdef");
    expect(fd.fd_filestat_set_size(2n)).toBe(0);
    expect(fd.fd_filestat_set_size(4n)).toBe(0);
    fd.fd_seek(6n, wasi.WHENCE_SET);
    write(fd, "z");
    expect(Array.from(file(root, "sparse", 0, R).fd_read(100).data)).toEqual([97, 98, 0, 0, 0, 0, 122]);
    expect(fd.fd_allocate(0n, 3n)).toBe(0);
    expect(fd.fd_filestat_get().filestat!.size).toBe(7n);
    expect(fd.fd_allocate(5n, 10n)).toBe(0);
    expect(fd.fd_filestat_get().filestat!.size).toBe(15n);
  });

  it("writes 1 MiB in 1-byte extending writes without one reallocation per write (capacity doubles)", () => {
    const { root } = setup();
    const fd = file(root, "big", CREAT);
    const one = new Uint8Array(1);
    let buffers = 0;
    let last: Uint8Array | null = null;
    for (let i = 0; i < 1 << 20; i++) {
      one[0] = i & 0xff;
      fd.fd_write(one);
      if (fd.file.data !== last) {
        last = fd.file.data;
        buffers++;
      }
    }
    // The growth policy itself: a handful of reallocations, not one per write.
    // (No time bound: tests never depend on the speed of a shared machine.)
    expect(buffers).toBeLessThanOrEqual(20);
    expect(fd.file.size).toBe(1 << 20);
    expect(fd.file.data.length).toBeLessThanOrEqual(2 << 20);
    const back = file(root, "big", 0, R).fd_read(1 << 21).data;
    expect(back.length).toBe(1 << 20);
    expect(back[12345]).toBe(12345 & 0xff);
  });

  it("encodes stats in WASI's filestat layout (not the shim's shifted one)", () => {
    const { root } = setup();
    const fd = file(root, "s", CREAT);
    write(fd, "12345");
    const st = fd.fd_filestat_get().filestat!;
    const view = new DataView(new ArrayBuffer(64));
    st.write_bytes(view, 0);
    expect(view.getBigUint64(8, true)).toBe(fd.file.ino);
    expect(view.getUint8(16)).toBe(wasi.FILETYPE_REGULAR_FILE);
    expect(view.getBigUint64(24, true)).toBe(1n);
    expect(view.getBigUint64(32, true)).toBe(5n);
    expect(view.getBigUint64(40, true)).toBe(fd.file.atimNs);
    expect(view.getBigUint64(48, true)).toBe(fd.file.mtimNs);
    expect(view.getBigUint64(56, true)).toBe(fd.file.ctimNs);
  });

  it("sets times and validates set-times flags", () => {
    const { root } = setup();
    const fd = file(root, "t", CREAT);
    const before = fd.fd_filestat_get().filestat!;
    expect(fd.fd_filestat_set_times(0n, 5n, wasi.FSTFLAGS_MTIM | wasi.FSTFLAGS_MTIM_NOW)).toBe(wasi.ERRNO_INVAL);
    expect(fd.fd_filestat_set_times(0n, 5n, wasi.FSTFLAGS_ATIM | wasi.FSTFLAGS_ATIM_NOW)).toBe(wasi.ERRNO_INVAL);
    expect(fd.fd_filestat_set_times(0n, 5n, wasi.FSTFLAGS_MTIM)).toBe(0);
    const after = fd.fd_filestat_get().filestat!;
    expect(after.mtim).toBe(5n);
    expect(after.atim).toBe(before.atim);
    write(fd, "x");
    expect(fd.fd_filestat_get().filestat!.mtim).toBeGreaterThan(before.mtim);
  });
});

describe("memfs directories", () => {
  it("makes directories and lists them with . and ..", () => {
    const { root } = setup();
    expect(root.path_create_directory("d")).toBe(0);
    expect(root.path_create_directory("d")).toBe(wasi.ERRNO_EXIST);
    expect(root.path_create_directory("d/e/f")).toBe(wasi.ERRNO_NOENT);
    expect(root.path_create_directory("d/e/")).toBe(0);
    file(root, "d/x", CREAT);
    const d = open(root, "d", DIRECTORY, R).fd_obj as MemDirFd;
    expect(d.kind).toBe("memdir");
    expect(names(d)).toEqual([".", "..", "e", "x"]);
    const dots = d.fd_readdir_single(1n).dirent!;
    expect(dots.d_ino).toBe(root.dir.ino);
    expect(root.path_filestat_get(0, "d").filestat!.nlink).toBe(3n);
    expect(d.fd_read(1).ret).toBe(wasi.ERRNO_ISDIR);
    expect(d.fd_seek(0n, wasi.WHENCE_CUR).ret).toBe(wasi.ERRNO_ISDIR);
    expect(open(root, "d", 0, RW).ret).toBe(wasi.ERRNO_ISDIR);
    expect(d.fd_prestat_get().ret).toBe(wasi.ERRNO_BADF);
    expect(root.fd_prestat_get().prestat!.inner.pr_name).toEqual(enc.encode("/tmp"));
  });

  it("keeps readdir cookies stable while entries are removed", () => {
    const { root } = setup();
    for (let i = 0; i < 1000; i++) file(root, `f${i}`, CREAT);
    // Read the first 10 entries, delete everything read so far, continue from the cookie.
    let c = 0n;
    const seen: string[] = [];
    for (let i = 0; i < 12; i++) {
      const e = root.fd_readdir_single(c).dirent!;
      seen.push(dec.decode(e.dir_name));
      c = e.d_next;
    }
    for (const n of seen.slice(2)) expect(root.path_unlink_file(n)).toBe(0);
    for (;;) {
      const e = root.fd_readdir_single(c).dirent;
      if (e === null) break;
      seen.push(dec.decode(e.dir_name));
      c = e.d_next;
    }
    expect(seen.length).toBe(1002);
    expect(new Set(seen).size).toBe(1002);
    // A fresh fd (no cached cursor) continues from the same cookie too.
    const again = open(root, ".", DIRECTORY, R).fd_obj as MemDirFd;
    expect(dec.decode(again.fd_readdir_single(c - 1n).dirent!.dir_name)).toBe("f999");
  });

  it("removes directories by the rules", () => {
    const { root } = setup();
    root.path_create_directory("d");
    file(root, "d/f", CREAT);
    expect(root.path_remove_directory("d")).toBe(wasi.ERRNO_NOTEMPTY);
    expect(root.path_remove_directory("d/f")).toBe(wasi.ERRNO_NOTDIR);
    expect(root.path_remove_directory("d/f/")).toBe(wasi.ERRNO_NOTDIR);
    expect(root.path_unlink_file("d")).toBe(wasi.ERRNO_ISDIR);
    expect(root.path_unlink_file("d/")).toBe(wasi.ERRNO_ISDIR);
    expect(root.path_unlink_file("d/f/")).toBe(wasi.ERRNO_NOTDIR);
    expect(root.path_remove_directory(".")).toBe(wasi.ERRNO_INVAL);
    const d = open(root, "d", DIRECTORY, R).fd_obj as MemDirFd;
    expect(root.path_unlink_file("d/f")).toBe(0);
    expect(root.path_remove_directory("d/")).toBe(0);
    // The open fd still works as a handle, but nothing can be created in a removed directory.
    expect(open(d, "g", CREAT).ret).toBe(wasi.ERRNO_NOENT);
    expect(d.fd_filestat_get().filestat!.nlink).toBe(0n);
  });

  it("never lets .. or absolute paths leave the preopen", () => {
    const { root } = setup();
    root.path_create_directory("dir");
    root.path_create_directory("dir/nested");
    write(file(root, "dir/nested/file", CREAT), "ok");
    expect(readAll(root, "dir/.//nested/../../dir/nested/../nested///./file")).toBe("ok");
    expect(open(root, "..").ret).toBe(wasi.ERRNO_NOTCAPABLE);
    expect(open(root, "dir/../../x").ret).toBe(wasi.ERRNO_NOTCAPABLE);
    expect(open(root, "/dir/nested/file").ret).toBe(wasi.ERRNO_NOTCAPABLE);
    // From a subdirectory fd, .. climbs to the preopen root, not beyond.
    const sub = open(root, "dir/nested", DIRECTORY, R).fd_obj as MemDirFd;
    expect(readAll(sub, "../../dir/nested/file")).toBe("ok");
    expect(open(sub, "../../..").ret).toBe(wasi.ERRNO_NOTCAPABLE);
  });
});

describe("memfs symlinks", () => {
  it("follows links only when asked and inside the fs", () => {
    const { root } = setup();
    root.path_create_directory("target");
    write(file(root, "target/f", CREAT), "via link");
    expect(root.path_symlink("target", "link")).toBe(0);
    expect(readAll(root, "link/f")).toBe("via link");
    expect(open(root, "link", DIRECTORY, R, 0, 0).ret).toBe(wasi.ERRNO_LOOP);
    expect(open(root, "link", 0, R, 0, 0).ret).toBe(wasi.ERRNO_LOOP);
    expect(open(root, "link", DIRECTORY, R).ret).toBe(0);
    expect(root.path_readlink("link")).toEqual({ ret: 0, data: "target" });
    expect(root.path_readlink("target").ret).toBe(wasi.ERRNO_INVAL);
    expect(root.path_filestat_get(0, "link").filestat!.filetype).toBe(wasi.FILETYPE_SYMBOLIC_LINK);
    expect(root.path_filestat_get(0, "link").filestat!.size).toBe(6n);
    expect(root.path_filestat_get(LOOKUPFLAGS_SYMLINK_FOLLOW, "link").filestat!.filetype).toBe(wasi.FILETYPE_DIRECTORY);
    // "link/.." is target's parent (the root), not "." — symlinks resolve before "..".
    root.path_create_directory("target/deep");
    root.path_symlink("target/deep", "deeplink");
    expect(readAll(root, "deeplink/../f")).toBe("via link");
  });

  it("refuses escapes and loops", () => {
    const { root } = setup();
    expect(root.path_symlink("/etc", "abs")).toBe(wasi.ERRNO_NOTCAPABLE);
    expect(root.path_symlink("..", "up")).toBe(0);
    expect(open(root, "up/x").ret).toBe(wasi.ERRNO_NOTCAPABLE);
    root.path_create_directory("d");
    root.path_symlink("../../outside", "d/esc");
    root.path_symlink("d/esc", "chain");
    expect(open(root, "chain").ret).toBe(wasi.ERRNO_NOTCAPABLE);
    root.path_symlink("self", "self");
    expect(open(root, "self").ret).toBe(wasi.ERRNO_LOOP);
    for (let i = 0; i < 41; i++) root.path_symlink(`l${i + 1}`, `l${i}`);
    write(file(root, "l41", CREAT), "end");
    expect(open(root, "l1").ret).toBe(0); // 40 hops
    expect(open(root, "l0").ret).toBe(wasi.ERRNO_LOOP); // 41 hops
  });

  it("creates through a dangling link, and refuses trailing slashes on link names", () => {
    const { root } = setup();
    root.path_symlink("made", "dangling");
    expect(open(root, "dangling", CREAT | EXCL).ret).toBe(wasi.ERRNO_EXIST);
    write(file(root, "dangling", CREAT), "x");
    expect(readAll(root, "made")).toBe("x");
    expect(root.path_symlink("s", "t/")).toBe(wasi.ERRNO_NOENT);
    expect(root.path_symlink("s", "made")).toBe(wasi.ERRNO_EXIST);
    expect(root.path_symlink("s", "made/")).toBe(wasi.ERRNO_NOTDIR);
  });
});

describe("memfs links, renames, unlink", () => {
  it("hard links share the inode and count links", () => {
    const { root } = setup();
    const fd = file(root, "file", CREAT);
    write(fd, "shared");
    expect(root.path_link_to("file", false, root, "link")).toBe(0);
    expect(root.path_filestat_get(0, "link").filestat!.ino).toBe(fd.file.ino);
    expect(fd.fd_filestat_get().filestat!.nlink).toBe(2n);
    expect(root.path_link_to("file", false, root, "link")).toBe(wasi.ERRNO_EXIST);
    expect(root.path_link_to("file", false, root, "file")).toBe(wasi.ERRNO_EXIST);
    expect(root.path_link_to("file", false, root, "new/")).toBe(wasi.ERRNO_NOENT);
    root.path_create_directory("dir");
    expect(root.path_link_to("dir", false, root, "dirlink")).toBe(wasi.ERRNO_PERM);
    expect(root.path_link_to("file", false, root, "dir")).toBe(wasi.ERRNO_EXIST);
    root.path_symlink("nowhere", "sym");
    expect(root.path_link_to("sym", false, root, "symlink2")).toBe(0);
    expect(root.path_link_to("sym", true, root, "symlink3")).toBe(wasi.ERRNO_NOENT);
    expect(root.path_unlink_file("file")).toBe(0);
    expect(readAll(root, "link")).toBe("shared");
    expect(fd.fd_filestat_get().filestat!.nlink).toBe(1n);
  });

  it("keeps an unlinked open file readable and writable", () => {
    const { root } = setup();
    const fd = file(root, "tmp", CREAT);
    write(fd, "still here");
    expect(root.path_unlink_file("tmp")).toBe(0);
    expect(open(root, "tmp").ret).toBe(wasi.ERRNO_NOENT);
    expect(dec.decode(fd.fd_pread(100, 0n).data)).toBe("still here");
    write(fd, "!");
    expect(fd.fd_filestat_get().filestat!.nlink).toBe(0n);
    expect(fd.fd_filestat_get().filestat!.size).toBe(11n);
    expect(names(root)).toEqual([".", ".."]);
  });

  it("renames files and directories by the POSIX replace rules", () => {
    const { root } = setup();
    write(file(root, "a", CREAT), "A");
    write(file(root, "b", CREAT), "B");
    const held = file(root, "a", 0, R);
    expect(root.path_rename_to("a", root, "b")).toBe(0); // replaces b
    expect(open(root, "a").ret).toBe(wasi.ERRNO_NOENT);
    expect(readAll(root, "b")).toBe("A");
    expect(dec.decode(held.fd_read(10).data)).toBe("A"); // the open fd follows the inode
    root.path_create_directory("d");
    root.path_create_directory("e");
    file(root, "e/x", CREAT);
    expect(root.path_rename_to("b", root, "d")).toBe(wasi.ERRNO_ISDIR);
    expect(root.path_rename_to("d", root, "b")).toBe(wasi.ERRNO_NOTDIR);
    expect(root.path_rename_to("d", root, "e")).toBe(wasi.ERRNO_NOTEMPTY);
    expect(root.path_rename_to("e", root, "e/sub")).toBe(wasi.ERRNO_INVAL);
    expect(root.path_rename_to("b", root, "c/")).toBe(wasi.ERRNO_NOTDIR);
    expect(root.path_rename_to("missing", root, "z")).toBe(wasi.ERRNO_NOENT);
    expect(root.path_rename_to("e", root, "d")).toBe(0); // over an empty directory
    expect(names(open(root, "d", DIRECTORY, R).fd_obj as MemDirFd)).toEqual([".", "..", "x"]);
    expect(root.path_rename_to("d/", root, "moved/")).toBe(0); // trailing slashes on directories
    // Across directory fds, and a directory's ".." follows its new parent.
    root.path_create_directory("p");
    const p = open(root, "p", DIRECTORY, R).fd_obj as MemDirFd;
    expect(root.path_rename_to("moved", p, "inner")).toBe(0);
    const inner = open(p, "inner", DIRECTORY, R).fd_obj as MemDirFd;
    expect(inner.fd_readdir_single(1n).dirent!.d_ino).toBe(p.dir.ino);
    expect(inner.dir.parent).toBe(p.dir);
    expect(root.path_filestat_get(0, "p/inner/x").ret).toBe(0);
    // Hard links to one inode: rename is a no-op.
    root.path_link_to("b", false, root, "b2");
    expect(root.path_rename_to("b", root, "b2")).toBe(0);
    expect(root.path_filestat_get(0, "b").ret).toBe(0);
  });

  it("rename and link to another kind of fd is EXDEV", () => {
    const { root, env } = setup();
    file(root, "f", CREAT);
    const other = new MemFileFd(env, new MemFile(env), { readable: true, writable: true, append: false });
    expect(root.path_rename_to("f", other, "g")).toBe(wasi.ERRNO_XDEV);
    expect(other.path_open(0, "x", 0, 0n, 0n, 0).ret).toBe(wasi.ERRNO_NOTDIR);
  });

  it("shares one tree between preopens built on the same directory", () => {
    const { env } = setup();
    const dir = new MemDir(env);
    const a = new MemPreopenFd(env, "/a", dir);
    write(file(a, "x", CREAT), "1");
    expect(dir.entries.get("x")).toBeInstanceOf(MemFile);
    expect(env.ctx.nextIno).toBeGreaterThan((dir.entries.get("x") as MemFile).ino);
    expect(new MemFile(env, new Uint8Array(3), 100n).ino).toBe(100n);
    expect(env.ctx.nextIno).toBe(101n);
  });
});
