// Host filesystem over `node:fs`, which Node, Deno and Bun all implement.
import * as fs from "node:fs";
import * as path from "node:path";
import { HostFsError } from "./types.ts";
import type { HostDirent, HostFs, HostOpenFlags, HostStat } from "./types.ts";

function wrap<T>(what: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") throw new HostFsError(code, `${what}: ${code}`);
    throw e;
  }
}

function typeOf(s: fs.Stats | fs.Dirent): HostStat["type"] {
  if (s.isFile()) return "file";
  if (s.isDirectory()) return "dir";
  if (s.isSymbolicLink()) return "symlink";
  if (s.isCharacterDevice()) return "char";
  if (s.isBlockDevice()) return "block";
  if (s.isFIFO()) return "fifo";
  if (s.isSocket()) return "socket";
  return "unknown";
}

function toStat(s: fs.BigIntStats): HostStat {
  return {
    type: typeOf(s as unknown as fs.Stats),
    size: s.size,
    ino: s.ino,
    dev: s.dev,
    nlink: s.nlink,
    atimeNs: s.atimeNs,
    mtimeNs: s.mtimeNs,
    ctimeNs: s.ctimeNs,
  };
}

function openFlags(f: HostOpenFlags): number {
  const C = fs.constants;
  let n = f.read && f.write ? C.O_RDWR : f.write ? C.O_WRONLY : C.O_RDONLY;
  if (f.create) n |= C.O_CREAT;
  if (f.truncate) n |= C.O_TRUNC;
  if (f.exclusive) n |= C.O_EXCL;
  if (f.append) n |= C.O_APPEND;
  if (f.directory) n |= C.O_DIRECTORY;
  if (f.noFollow) n |= C.O_NOFOLLOW;
  return n;
}

const nsToDate = (ns: bigint) => new Date(Number(ns / 1_000_000n));

/** A `HostFs` on `node:fs`. Each call is synchronous: the guest sees POSIX semantics. */
export function nodeFs(): HostFs {
  let tmpSeq = 0;
  return {
    open: (p, flags, mode = 0o666) => wrap(`open ${p}`, () => fs.openSync(p, openFlags(flags), mode)),
    close: (hfd) => wrap("close", () => fs.closeSync(hfd)),
    read: (hfd, buf, pos) => wrap("read", () => fs.readSync(hfd, buf, 0, buf.length, pos)),
    write: (hfd, buf, pos) => wrap("write", () => fs.writeSync(hfd, buf, 0, buf.length, pos === null ? null : Number(pos))),
    fstat: (hfd) => wrap("fstat", () => toStat(fs.fstatSync(hfd, { bigint: true }))),
    ftruncate: (hfd, size) => wrap("ftruncate", () => fs.ftruncateSync(hfd, Number(size))),
    fsync: (hfd) => wrap("fsync", () => fs.fsyncSync(hfd)),
    futimes: (hfd, a, m) => wrap("futimes", () => fs.futimesSync(hfd, nsToDate(a), nsToDate(m))),
    stat: (p) => wrap(`stat ${p}`, () => toStat(fs.statSync(p, { bigint: true }))),
    lstat: (p) => wrap(`lstat ${p}`, () => toStat(fs.lstatSync(p, { bigint: true }))),
    readdir: (p): HostDirent[] =>
      wrap(`readdir ${p}`, () =>
        fs.readdirSync(p, { withFileTypes: true }).map((d) => ({ name: String(d.name), type: typeOf(d) }))
      ),
    mkdir: (p) => wrap(`mkdir ${p}`, () => fs.mkdirSync(p)),
    rmdir: (p) => wrap(`rmdir ${p}`, () => fs.rmdirSync(p)),
    unlink: (p) => wrap(`unlink ${p}`, () => fs.unlinkSync(p)),
    rename: (a, b) => wrap(`rename ${a}`, () => fs.renameSync(a, b)),
    link: (a, b) => wrap(`link ${a}`, () => fs.linkSync(a, b)),
    symlink: (t, p) => wrap(`symlink ${p}`, () => fs.symlinkSync(t, p)),
    readlink: (p) => wrap(`readlink ${p}`, () => fs.readlinkSync(p, "utf8")),
    utimes: (p, a, m, follow) =>
      wrap(`utimes ${p}`, () => (follow ? fs.utimesSync : fs.lutimesSync)(p, nsToDate(a), nsToDate(m))),
    realpath: (p) => wrap(`realpath ${p}`, () => fs.realpathSync(p)),
    readFile: (p) => wrap(`read ${p}`, () => new Uint8Array(fs.readFileSync(p))),
    writeFileAtomic(p, chunks, mode = 0o644) {
      const tmp = path.join(path.dirname(p), `.${path.basename(p)}.${process.pid}.${tmpSeq++}.tmp`);
      const list = chunks instanceof Uint8Array ? [chunks] : chunks;
      wrap(`write ${p}`, () => {
        const hfd = fs.openSync(tmp, "w", mode);
        try {
          for (const c of list) {
            for (let off = 0; off < c.length;) off += fs.writeSync(hfd, c, off, c.length - off);
          }
          fs.fsyncSync(hfd);
        } catch (e) {
          fs.closeSync(hfd);
          fs.rmSync(tmp, { force: true });
          throw e;
        }
        fs.closeSync(hfd);
        try {
          fs.renameSync(tmp, p);
        } catch (e) {
          fs.rmSync(tmp, { force: true });
          throw e;
        }
      });
    },
    mkdirp: (p) => wrap(`mkdir ${p}`, () => void fs.mkdirSync(p, { recursive: true })),
    exists: (p) => fs.existsSync(p),
  };
}
