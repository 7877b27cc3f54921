import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { nodeFs } from "../host/fs.ts";
import { HostFsError } from "../host/types.ts";
import { wasi, type CrvmFd } from "./fd.ts";
import { LOOKUPFLAGS_SYMLINK_FOLLOW } from "./_fs_common.ts";
import { errnoOf } from "./errno.ts";
import { HostDirFd, HostFileFd, HostPreopenFd, hostPathOf } from "./hostfs.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const RW = BigInt(wasi.RIGHTS_FD_READ | wasi.RIGHTS_FD_WRITE);
const R = BigInt(wasi.RIGHTS_FD_READ);
const FOLLOW = LOOKUPFLAGS_SYMLINK_FOLLOW;
const { OFLAGS_CREAT: CREAT, OFLAGS_EXCL: EXCL, OFLAGS_TRUNC: TRUNC, OFLAGS_DIRECTORY: DIRECTORY } = wasi;

let tmp: string; // per test: holds "root" (the preopen) and things outside it
let hostRoot: string;
let root: HostPreopenFd;

beforeEach(() => {
  tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), "crvm-hostfs-")));
  hostRoot = path.join(tmp, "root");
  fs.mkdirSync(hostRoot);
  fs.writeFileSync(path.join(tmp, "outside.txt"), "secret");
  root = new HostPreopenFd(nodeFs(), { guestPath: "/data", hostPath: hostRoot });
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

const h = (rel: string) => path.join(hostRoot, rel);
function open(dir: CrvmFd, p: string, oflags = 0, rights = RW, fdflags = 0, dirflags = FOLLOW) {
  return dir.path_open(dirflags, p, oflags, rights, 0n, fdflags);
}
function file(dir: CrvmFd, p: string, oflags = 0, rights = RW, fdflags = 0): HostFileFd {
  const r = open(dir, p, oflags, rights, fdflags);
  expect(r.ret).toBe(0);
  return r.fd_obj as HostFileFd;
}
function write(fd: CrvmFd, s: string) {
  expect(fd.fd_write(enc.encode(s))).toEqual({ ret: 0, nwritten: enc.encode(s).length });
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

describe("hostfs files", () => {
  it("writes to the real host file and reads host files in place", () => {
    const fd = file(root, "a.txt", CREAT);
    write(fd, "hello");
    expect(fs.readFileSync(h("a.txt"), "utf8")).toBe("hello");
    fs.writeFileSync(h("b.txt"), "from the host");
    const b = file(root, "b.txt", 0, R);
    expect(dec.decode(b.fd_read(4).data)).toBe("from");
    expect(dec.decode(b.fd_read(100).data)).toBe(" the host");
    expect(b.fd_read(100).data.length).toBe(0);
    expect(b.fd_write(enc.encode("x")).ret).toBe(wasi.ERRNO_BADF);
    expect(b.fd_filestat_get().filestat!.size).toBe(13n);
    expect(b.fd_filestat_get().filestat!.filetype).toBe(wasi.FILETYPE_REGULAR_FILE);
    expect(b.rel).toBe("b.txt");
    expect(hostPathOf(b.preopen, b.rel)).toBe(h("b.txt"));
  });

  it("keeps a position per fd, independent of the host fd's offset", () => {
    fs.writeFileSync(h("f"), "0123456789");
    const a = file(root, "f");
    const b = file(root, "f");
    expect(dec.decode(a.fd_read(3).data)).toBe("012");
    expect(dec.decode(b.fd_read(5).data)).toBe("01234");
    expect(dec.decode(a.fd_read(2).data)).toBe("34");
    expect(a.fd_seek(-2n, wasi.WHENCE_END)).toEqual({ ret: 0, offset: 8n });
    write(a, "XY");
    expect(dec.decode(b.fd_read(100).data)).toBe("567XY");
    expect(dec.decode(b.fd_pread(3, 1n).data)).toBe("123");
    expect(b.fd_tell().offset).toBe(10n);
    const app = file(root, "f", 0, RW, wasi.FDFLAGS_APPEND);
    write(app, "!");
    write(a, "?"); // a's own position is still 10: it overwrites the appended byte
    expect(fs.readFileSync(h("f"), "utf8")).toBe("01234567XY?");
  });

  it("appends at the end even after another fd grew the file", () => {
    const app = file(root, "log", CREAT, RW, wasi.FDFLAGS_APPEND);
    const other = file(root, "log");
    write(app, "a");
    write(other, "bbb");
    write(app, "c");
    expect(fs.readFileSync(h("log"), "utf8")).toBe("bbbc");
    expect(app.fd_tell().offset).toBe(4n);
  });

  it("honours O_EXCL, O_TRUNC, O_DIRECTORY, truncate, allocate", () => {
    fs.writeFileSync(h("f"), "data");
    expect(open(root, "f", CREAT | EXCL).ret).toBe(wasi.ERRNO_EXIST);
    expect(open(root, "f", DIRECTORY).ret).toBe(wasi.ERRNO_NOTDIR);
    expect(open(root, "f/").ret).toBe(wasi.ERRNO_NOTDIR);
    expect(open(root, "nope").ret).toBe(wasi.ERRNO_NOENT);
    expect(open(root, "f", CREAT | DIRECTORY).ret).toBe(wasi.ERRNO_INVAL);
    file(root, "f", TRUNC, 0n).fd_close();
    expect(fs.statSync(h("f")).size).toBe(0);
    const fd = file(root, "f");
    expect(fd.fd_filestat_set_size(10n)).toBe(0);
    expect(fs.statSync(h("f")).size).toBe(10);
    expect(fd.fd_allocate(5n, 20n)).toBe(0);
    expect(fs.statSync(h("f")).size).toBe(25);
    expect(fd.fd_allocate(0n, 1n)).toBe(0);
    expect(fs.statSync(h("f")).size).toBe(25);
  });

  it("keeps an unlinked open file readable; fd_close closes the host fd", () => {
    const fd = file(root, "tmp", CREAT);
    write(fd, "still here");
    expect(root.path_unlink_file("tmp")).toBe(0);
    expect(fs.existsSync(h("tmp"))).toBe(false);
    expect(dec.decode(fd.fd_pread(100, 0n).data)).toBe("still here");
    expect(fd.fd_filestat_get().filestat!.nlink).toBe(0n);
    expect(fd.fd_close()).toBe(0);
    expect(() => fs.fstatSync(fd.hfd)).toThrow();
  });

  it("sets times and validates set-times flags", () => {
    const fd = file(root, "t", CREAT);
    expect(fd.fd_filestat_set_times(0n, 5n, wasi.FSTFLAGS_MTIM | wasi.FSTFLAGS_MTIM_NOW)).toBe(wasi.ERRNO_INVAL);
    expect(root.path_filestat_set_times(0, "t", 1n, 0n, wasi.FSTFLAGS_ATIM | wasi.FSTFLAGS_ATIM_NOW)).toBe(wasi.ERRNO_INVAL);
    const atim = fd.fd_filestat_get().filestat!.atim;
    const mtim = 1_600_000_000_123_000_000n;
    expect(root.path_filestat_set_times(0, "t", 0n, mtim, wasi.FSTFLAGS_MTIM)).toBe(0);
    const st = fd.fd_filestat_get().filestat!;
    // nodeFs's utimes goes through a Date (float seconds): about a millisecond of precision.
    const near = (a: bigint, b: bigint) => (a > b ? a - b : b - a) <= 1_000_000n;
    expect(near(st.mtim, mtim), `${st.mtim} vs ${mtim}`).toBe(true);
    expect(near(st.atim, atim), `${st.atim} vs ${atim}`).toBe(true);
    expect(near(BigInt(fs.statSync(h("t"), { bigint: true }).mtimeNs), mtim)).toBe(true);
  });

  it("refuses to open a fifo (it would block the VM)", () => {
    try {
      execFileSync("mkfifo", [h("pipe")]); // not in node:fs; skipped where unavailable
    } catch {
      return;
    }
    expect(open(root, "pipe", 0, R).ret).toBe(wasi.ERRNO_NOTSUP);
  });
});

describe("hostfs sandbox", () => {
  it("refuses .. and absolute paths that leave the preopen", () => {
    fs.mkdirSync(h("a"));
    expect(open(root, "../outside.txt").ret).toBe(wasi.ERRNO_NOTCAPABLE);
    expect(open(root, "a/../../outside.txt").ret).toBe(wasi.ERRNO_NOTCAPABLE);
    expect(open(root, "..", DIRECTORY, R).ret).toBe(wasi.ERRNO_NOTCAPABLE);
    expect(open(root, path.join(tmp, "outside.txt")).ret).toBe(wasi.ERRNO_NOTCAPABLE);
    expect(open(root, "../outside.txt", CREAT | TRUNC).ret).toBe(wasi.ERRNO_NOTCAPABLE);
    expect(root.path_unlink_file("../outside.txt")).toBe(wasi.ERRNO_NOTCAPABLE);
    expect(root.path_rename_to("../outside.txt", root, "stolen")).toBe(wasi.ERRNO_NOTCAPABLE);
    expect(root.path_filestat_get(0, "a/../..").ret).toBe(wasi.ERRNO_NOTCAPABLE);
    // Inside the preopen, .. is fine, also from a subdirectory fd (up to the preopen root).
    fs.writeFileSync(h("top.txt"), "top");
    const sub = open(root, "a", DIRECTORY, R).fd_obj as HostDirFd;
    expect(sub.rel).toBe("a");
    expect(dec.decode(file(sub, "../top.txt", 0, R).fd_read(10).data)).toBe("top");
    expect(open(sub, "../../outside.txt").ret).toBe(wasi.ERRNO_NOTCAPABLE);
    expect(fs.readFileSync(path.join(tmp, "outside.txt"), "utf8")).toBe("secret");
  });

  it("refuses symlinks that lead outside, follows the ones that stay inside", () => {
    fs.symlinkSync("/etc", h("etc"));
    fs.symlinkSync("..", h("up"));
    fs.symlinkSync(path.join(hostRoot, "top.txt"), h("abs_inside")); // absolute: refused even when inside
    fs.mkdirSync(h("d"));
    fs.symlinkSync("../../outside.txt", h("d/esc"));
    fs.symlinkSync("d/esc", h("chain"));
    fs.symlinkSync("d", h("dirlink"));
    fs.symlinkSync("../d", h("d/self_parent"));
    fs.writeFileSync(h("d/f"), "inside");
    fs.writeFileSync(h("top.txt"), "top");
    for (const p of ["etc/passwd", "etc", "up/outside.txt", "up", "chain", "d/esc", "abs_inside"]) {
      expect(open(root, p, 0, R).ret, p).toBe(wasi.ERRNO_NOTCAPABLE);
    }
    expect(root.path_filestat_get(FOLLOW, "etc").ret).toBe(wasi.ERRNO_NOTCAPABLE);
    expect(root.path_filestat_get(0, "etc").filestat!.filetype).toBe(wasi.FILETYPE_SYMBOLIC_LINK);
    expect(root.path_readlink("etc")).toEqual({ ret: 0, data: "/etc" });
    // Creating through a dangling link that points outside must not create anything outside.
    fs.symlinkSync("../created_outside", h("evil"));
    expect(open(root, "evil", CREAT).ret).toBe(wasi.ERRNO_NOTCAPABLE);
    expect(fs.existsSync(path.join(tmp, "created_outside"))).toBe(false);
    // Links inside the preopen work.
    expect(dec.decode(file(root, "dirlink/f", 0, R).fd_read(10).data)).toBe("inside");
    expect(dec.decode(file(root, "d/self_parent/f", 0, R).fd_read(10).data)).toBe("inside");
    const viaLink = open(root, "dirlink", DIRECTORY, R).fd_obj as HostDirFd;
    expect(viaLink.rel).toBe("d"); // resolved: rel never contains a symlink
    expect(names(viaLink)).toEqual([".", "..", "esc", "f", "self_parent"]);
    // Without SYMLINK_FOLLOW, a final symlink is not opened.
    expect(open(root, "dirlink", DIRECTORY, R, 0, 0).ret).toBe(wasi.ERRNO_LOOP);
    // Guest-made symlinks: absolute targets refused, relative ones checked when followed.
    expect(root.path_symlink("/etc/passwd", "x")).toBe(wasi.ERRNO_NOTCAPABLE);
    expect(root.path_symlink("../outside.txt", "y")).toBe(0);
    expect(open(root, "y", 0, R).ret).toBe(wasi.ERRNO_NOTCAPABLE);
  });

  it("stops symlink loops", () => {
    fs.symlinkSync("self", h("self"));
    expect(open(root, "self").ret).toBe(wasi.ERRNO_LOOP);
    fs.symlinkSync("b", h("a"));
    fs.symlinkSync("a", h("b"));
    expect(open(root, "a/x", CREAT).ret).toBe(wasi.ERRNO_LOOP);
  });
});

describe("hostfs directories, renames, links", () => {
  it("makes, lists and removes directories", () => {
    expect(root.path_create_directory("d")).toBe(0);
    expect(root.path_create_directory("d")).toBe(wasi.ERRNO_EXIST);
    expect(root.path_create_directory("d/e/")).toBe(0);
    expect(fs.statSync(h("d/e")).isDirectory()).toBe(true);
    file(root, "d/z", CREAT).fd_close();
    file(root, "d/a", CREAT).fd_close();
    const d = open(root, "d", DIRECTORY, R).fd_obj as HostDirFd;
    expect(names(d)).toEqual([".", "..", "a", "e", "z"]);
    expect(d.fd_readdir_single(0n).dirent!.d_ino).toBe(BigInt(fs.statSync(h("d")).ino));
    expect(d.fd_readdir_single(1n).dirent!.d_ino).toBe(BigInt(fs.statSync(hostRoot).ino));
    expect(root.fd_readdir_single(1n).dirent!.d_ino).toBe(BigInt(fs.statSync(hostRoot).ino));
    expect(d.fd_read(1).ret).toBe(wasi.ERRNO_ISDIR);
    expect(open(root, "d", 0, RW).ret).toBe(wasi.ERRNO_ISDIR);
    expect(root.path_remove_directory("d")).toBe(wasi.ERRNO_NOTEMPTY);
    expect(root.path_remove_directory("d/a")).toBe(wasi.ERRNO_NOTDIR);
    expect(root.path_unlink_file("d/e")).toBe(wasi.ERRNO_ISDIR);
    expect(root.path_unlink_file("d/a/")).toBe(wasi.ERRNO_NOTDIR);
    expect(root.path_remove_directory(".")).toBe(wasi.ERRNO_INVAL);
    for (const p of ["d/a", "d/z"]) expect(root.path_unlink_file(p)).toBe(0);
    expect(root.path_remove_directory("d/e/")).toBe(0);
    expect(root.path_remove_directory("d")).toBe(0);
    expect(fs.existsSync(h("d"))).toBe(false);
    expect(root.fd_prestat_get().prestat!.inner.pr_name).toEqual(enc.encode("/data"));
    expect(d.fd_prestat_get().ret).toBe(wasi.ERRNO_BADF);
  });

  it("renames by the POSIX rules, across directory fds", () => {
    fs.writeFileSync(h("a"), "A");
    fs.writeFileSync(h("b"), "B");
    fs.mkdirSync(h("d"));
    fs.mkdirSync(h("e"));
    fs.writeFileSync(h("e/x"), "x");
    expect(root.path_rename_to("a", root, "b")).toBe(0);
    expect(fs.readFileSync(h("b"), "utf8")).toBe("A");
    expect(root.path_rename_to("b", root, "d")).toBe(wasi.ERRNO_ISDIR);
    expect(root.path_rename_to("d", root, "b")).toBe(wasi.ERRNO_NOTDIR);
    expect(root.path_rename_to("d", root, "e")).toBe(wasi.ERRNO_NOTEMPTY);
    expect(root.path_rename_to("e", root, "e/sub")).toBe(wasi.ERRNO_INVAL);
    expect(root.path_rename_to("b", root, "c/")).toBe(wasi.ERRNO_NOTDIR);
    const e = open(root, "e", DIRECTORY, R).fd_obj as HostDirFd;
    expect(root.path_rename_to("b", e, "moved")).toBe(0);
    expect(fs.readFileSync(h("e/moved"), "utf8")).toBe("A");
    expect(root.path_rename_to("d/", root, "d2/")).toBe(0);
    expect(fs.statSync(h("d2")).isDirectory()).toBe(true);
  });

  it("hard links share the host inode", () => {
    fs.writeFileSync(h("file"), "shared");
    expect(root.path_link_to("file", false, root, "link")).toBe(0);
    expect(fs.statSync(h("link")).ino).toBe(fs.statSync(h("file")).ino);
    expect(root.path_filestat_get(0, "file").filestat!.nlink).toBe(2n);
    expect(root.path_link_to("file", false, root, "link")).toBe(wasi.ERRNO_EXIST);
    expect(root.path_link_to("file", false, root, "new/")).toBe(wasi.ERRNO_NOENT);
    fs.mkdirSync(h("dir"));
    expect(root.path_link_to("dir", false, root, "dirlink")).toBe(wasi.ERRNO_PERM);
    expect(root.path_link_to("../outside.txt", false, root, "grab")).toBe(wasi.ERRNO_NOTCAPABLE);
  });
});

describe("errnoOf", () => {
  it("maps host error codes and rethrows anything else", () => {
    expect(errnoOf(new HostFsError("ENOENT", "x"))).toBe(wasi.ERRNO_NOENT);
    expect(errnoOf(new HostFsError("EOPNOTSUPP", "x"))).toBe(wasi.ERRNO_NOTSUP);
    expect(errnoOf(new HostFsError("EWEIRD", "x"))).toBe(wasi.ERRNO_IO);
    expect(() => errnoOf(new TypeError("bug"))).toThrow(TypeError);
  });
});
