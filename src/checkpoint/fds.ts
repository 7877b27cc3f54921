// Fd tables, open files and the in-memory filesystem: dump and restore.
// An open file shared by several fds is written once (by id) and restored as
// one object, so its offset stays shared. In-memory inodes are written once
// each; file contents go to blobs. Host files are not copied: their path,
// size and mtime are recorded, and restore reopens them by path. cgroupfs
// fds name their freezer group by path; the groups themselves are in the VM
// record (`groups`).
import { SnapshotError } from "../errors.ts";
import { CgroupBinding, CgroupDirFd, CgroupFileFd, type CgroupHost, CgroupPreopenFd } from "../freezer/cgroupfs.ts";
import type { Host } from "../host/mod.ts";
import type { FileRecord, InodeRecord, PipeRecord, SnapshotImage, VmRecord } from "../snapshot/mod.ts";
import type { CrvmFd, FsContext } from "../wasi/fd.ts";
import { type FsEnv, MemDir, MemDirFd, MemFile, MemFileFd, type MemInode, MemPreopenFd, MemSymlink } from "../wasi/memfs.ts";
import { HostDirFd, HostFileFd, type HostPreopen, HostPreopenFd } from "../wasi/hostfs.ts";
import { Pipe, PipeReadFd, PipeWriteFd } from "../wasi/pipe.ts";
import { StdinFd, StdoutFd } from "../wasi/stdio.ts";

const times = (n: { atimNs: bigint; mtimNs: bigint; ctimNs: bigint }): [string, string, string] => [
  n.atimNs.toString(),
  n.mtimNs.toString(),
  n.ctimNs.toString(),
];

/** Collects the open files and inodes reachable from fd tables, each once. */
export class FdDumper {
  readonly files: FileRecord[] = [];
  readonly inodes: InodeRecord[] = [];
  readonly pipes: PipeRecord[] = [];
  readonly #pipeIds = new Map<Pipe, number>();
  readonly #fileIds = new Map<CrvmFd, number>();
  readonly #inodeIds = new Map<MemInode, number>();
  readonly #preopens = new Map<HostPreopen, number>();

  /** `imageTarget`: the fd a self-checkpoint writes its image into (recorded as growing by it). */
  constructor(private readonly blob: (bytes: Uint8Array) => number, private readonly host: Host, private readonly imageTarget?: CrvmFd) {}

  inodeId(node: MemInode): number {
    const known = this.#inodeIds.get(node);
    if (known !== undefined) return known;
    const id = this.inodes.length;
    this.#inodeIds.set(node, id);
    this.inodes.push(null as unknown as InodeRecord); // reserve the slot: directories refer to children
    if (node instanceof MemFile) {
      const data = node.size > 0 ? this.blob(node.data.subarray(0, node.size)) : null;
      this.inodes[id] = { id, type: "file", ino: node.ino.toString(), data, size: node.size, nlink: node.nlink, times: times(node) };
    } else if (node instanceof MemSymlink) {
      this.inodes[id] = { id, type: "symlink", ino: node.ino.toString(), target: node.target, nlink: node.nlink, times: times(node) };
    } else {
      const rec: InodeRecord = {
        id,
        type: "dir",
        ino: node.ino.toString(),
        entries: [],
        nextCookie: node.nextCookie.toString(),
        parent: null,
        removed: node.removed,
        times: times(node),
      };
      this.inodes[id] = rec;
      for (const [name, child] of node.entries) rec.entries.push([name, this.inodeId(child), node.cookies.get(name)!.toString()]);
      rec.parent = node.parent ? this.inodeId(node.parent) : null;
    }
    return id;
  }

  #pipeId(p: Pipe): number {
    let id = this.#pipeIds.get(p);
    if (id === undefined) {
      id = this.pipes.length;
      this.#pipeIds.set(p, id);
      this.pipes.push({ id, data: p.data.length > 0 ? this.blob(p.data) : null, capacity: p.capacity });
    }
    return id;
  }

  #preopenId(p: HostPreopen): number {
    let id = this.#preopens.get(p);
    if (id === undefined) {
      id = this.files.length;
      this.#preopens.set(p, id);
      this.files.push({ id, kind: "hostpreopen", guestPath: p.guestPath, hostPath: p.hostPath });
    }
    return id;
  }

  fileId(obj: CrvmFd): number {
    const known = this.#fileIds.get(obj);
    if (known !== undefined) return known;
    let rec: FileRecord;
    if (obj instanceof HostPreopenFd) {
      const id = this.#preopenId(obj.preopen);
      this.#fileIds.set(obj, id);
      return id;
    }
    const id = this.files.length;
    this.#fileIds.set(obj, id);
    this.files.push(null as unknown as FileRecord);
    if (obj instanceof StdinFd) rec = { id, kind: "stdin", buffered: obj.buffered.length ? this.blob(obj.buffered) : null, eof: obj.eof };
    else if (obj instanceof StdoutFd) rec = { id, kind: obj.name };
    else if (obj instanceof PipeReadFd || obj instanceof PipeWriteFd) rec = { id, kind: obj.kind, pipe: this.#pipeId(obj.pipe), nonblock: obj.nonblock };
    else if (obj instanceof MemPreopenFd) rec = { id, kind: "mempreopen", name: obj.name, inode: this.inodeId(obj.dir) };
    else if (obj instanceof MemDirFd) rec = { id, kind: "memdir", inode: this.inodeId(obj.dir), root: this.inodeId(obj.root) };
    else if (obj instanceof MemFileFd) {
      rec = { id, kind: "memfile", inode: this.inodeId(obj.file), pos: obj.pos.toString(), append: obj.append, readable: obj.readable, writable: obj.writable, fdflags: obj.fdflags };
    } else if (obj instanceof HostDirFd) rec = { id, kind: "hostdir", preopen: this.#preopenId(obj.preopen), rel: obj.rel };
    else if (obj instanceof CgroupPreopenFd) rec = { id, kind: "cgrouppreopen" };
    else if (obj instanceof CgroupDirFd) rec = { id, kind: "cgroupdir", group: obj.ref.path(obj.host) };
    else if (obj instanceof CgroupFileFd) {
      // The generated text is kept only while a read is under way (pos > 0): the guest must go on reading the
      // text it started (seq_file), not a new one whose lines may have moved. At pos 0 the next read makes it anew.
      const content = obj.pos > 0n && obj.content !== null && obj.group !== null ? this.blob(obj.content) : null;
      rec = {
        id,
        kind: "cgroupfile",
        group: obj.ref.path(obj.host),
        name: obj.name,
        pos: obj.pos.toString(),
        readable: obj.readable,
        writable: obj.writable,
        fdflags: obj.fdflags,
        content,
      };
    }
    else if (obj instanceof HostFileFd) {
      const st = this.host.fs.fstat(obj.hfd);
      rec = {
        id,
        kind: "hostfile",
        preopen: this.#preopenId(obj.preopen),
        rel: obj.rel,
        pos: obj.pos.toString(),
        append: obj.append,
        readable: obj.readable,
        writable: obj.writable,
        fdflags: obj.fdflags,
        size: st.size.toString(),
        mtimeNs: st.mtimeNs.toString(),
        ...(obj === this.imageTarget ? { imageTarget: true as const } : {}),
      };
    } else throw new SnapshotError(`Cannot checkpoint an fd of kind "${obj.kind}"`);
    this.files[id] = rec;
    return id;
  }
}

export interface FileRestoreEnv {
  host: Host;
  fsContext: FsContext;
  /** Guest preopen path → host directory to use instead of the recorded one. */
  dirs: Map<string, string>;
  now: () => bigint;
  what: string;
  /** The restored VM, for cgroupfs fds (they name their freezer groups). */
  cgroups?: CgroupHost;
}

function restoreInodes(inodes: InodeRecord[], image: SnapshotImage, env: FsEnv, what: string): MemInode[] {
  const out: MemInode[] = [];
  // Pass 1: create every inode with its own number; pass 2: link directories.
  for (const [i, r] of inodes.entries()) {
    if (r?.id !== i) throw new SnapshotError(`${what}: inode record ${i} is out of order`);
    if (r.type === "file") {
      const blob = r.data === null ? new Uint8Array(0) : image.blobs.get(r.data);
      if (!blob || blob.length !== r.size) throw new SnapshotError(`${what}: inode ${i} has missing or wrong-sized data`);
      const f = new MemFile(env, blob.slice(), BigInt(r.ino));
      f.nlink = r.nlink;
      [f.atimNs, f.mtimNs, f.ctimNs] = r.times.map(BigInt) as [bigint, bigint, bigint];
      out.push(f);
    } else if (r.type === "symlink") {
      const s = new MemSymlink(env, r.target, BigInt(r.ino));
      s.nlink = r.nlink;
      [s.atimNs, s.mtimNs, s.ctimNs] = r.times.map(BigInt) as [bigint, bigint, bigint];
      out.push(s);
    } else if (r.type === "dir") {
      const d = new MemDir(env, null, BigInt(r.ino));
      d.removed = r.removed;
      d.nextCookie = BigInt(r.nextCookie);
      [d.atimNs, d.mtimNs, d.ctimNs] = r.times.map(BigInt) as [bigint, bigint, bigint];
      out.push(d);
    } else throw new SnapshotError(`${what}: inode ${i} has an unknown type`);
  }
  const node = (id: number | null, ctx: string): MemInode => {
    const n = id === null ? undefined : out[id];
    if (!n) throw new SnapshotError(`${what}: ${ctx} refers to missing inode ${id}`);
    return n;
  };
  for (const r of inodes) {
    if (r.type !== "dir") continue;
    const d = out[r.id] as MemDir;
    for (const [name, child, cookie] of r.entries) {
      d.entries.set(name, node(child, `directory ${r.id}`));
      d.cookies.set(name, BigInt(cookie));
    }
    if (r.parent !== null) d.parent = node(r.parent, `directory ${r.id}`) as MemDir;
  }
  return out;
}

/** Rebuilds every open file of an image; returns them by file id. */
export function restoreFiles(rec: VmRecord, image: SnapshotImage, e: FileRestoreEnv): Map<number, CrvmFd> {
  const env: FsEnv = { ctx: e.fsContext, now: e.now };
  const inodes = restoreInodes(rec.inodes ?? [], image, env, e.what);
  const files = new Map<number, CrvmFd>();
  const preopens = new Map<number, HostPreopen>();
  const pipes = new Map<number, Pipe>();
  for (const r of rec.pipes ?? []) {
    const p = new Pipe(r.capacity);
    if (r.data !== null) {
      const data = image.blobs.get(r.data);
      if (!data || data.length > r.capacity) throw new SnapshotError(`${e.what}: pipe ${r.id} has missing or oversized data`);
      p.data = data.slice();
    }
    pipes.set(r.id, p);
  }
  const inode = (id: number, ctx: string) => {
    const n = inodes[id];
    if (!n) throw new SnapshotError(`${e.what}: ${ctx} refers to missing inode ${id}`);
    return n;
  };
  const dirInode = (id: number, ctx: string) => {
    const n = inode(id, ctx);
    if (!(n instanceof MemDir)) throw new SnapshotError(`${e.what}: ${ctx}: inode ${id} is not a directory`);
    return n;
  };
  const preopen = (id: number, ctx: string) => {
    const p = preopens.get(id);
    if (!p) throw new SnapshotError(`${e.what}: ${ctx} refers to missing preopen ${id}`);
    return p;
  };
  // cgroupfs fds look their groups up on first use: the freezer's groups are loaded after the files.
  const binding = e.cgroups ? new CgroupBinding(e.cgroups) : null;
  const cgroups = (ctx: string): { host: CgroupHost; binding: CgroupBinding } => {
    if (!e.cgroups || !binding) throw new SnapshotError(`${e.what}: ${ctx}: no VM to restore a cgroup fd against`);
    return { host: e.cgroups, binding };
  };
  // Preopens first: a file may refer to a preopen recorded after it.
  const ordered = [...rec.files.filter((f) => f.kind === "hostpreopen"), ...rec.files.filter((f) => f.kind !== "hostpreopen")];
  for (const f of ordered) {
    const ctx = `file ${f.id} (${f.kind})`;
    let obj: CrvmFd;
    switch (f.kind) {
      case "stdin": {
        const s = new StdinFd(e.host.stdio);
        if (f.buffered !== null) s.buffered = (image.blobs.get(f.buffered) ?? new Uint8Array(0)).slice();
        s.eof = f.eof;
        obj = s;
        break;
      }
      case "stdout":
      case "stderr":
        obj = new StdoutFd(f.kind === "stdout" ? 1 : 2, e.host.stdio);
        break;
      case "mempreopen":
        obj = new MemPreopenFd(env, f.name, dirInode(f.inode, ctx));
        break;
      case "memdir":
        obj = new MemDirFd(env, dirInode(f.inode, ctx), dirInode(f.root, ctx));
        break;
      case "memfile": {
        const file = inode(f.inode, ctx);
        if (!(file instanceof MemFile)) throw new SnapshotError(`${e.what}: ${ctx}: inode ${f.inode} is not a file`);
        const fd = new MemFileFd(env, file, { readable: f.readable, writable: f.writable, append: f.append, fdflags: f.fdflags });
        fd.pos = BigInt(f.pos);
        obj = fd;
        break;
      }
      case "hostpreopen": {
        const hostPath = e.dirs.get(f.guestPath) ?? f.hostPath;
        let ok = false;
        try {
          ok = e.host.fs.stat(hostPath).type === "dir";
        } catch { /* reported below */ }
        if (!ok) throw new SnapshotError(`${e.what}: directory ${hostPath} (guest ${f.guestPath}) is missing`);
        const p: HostPreopen = { guestPath: f.guestPath, hostPath };
        preopens.set(f.id, p);
        obj = new HostPreopenFd(e.host.fs, p);
        break;
      }
      case "hostdir":
        obj = new HostDirFd(e.host.fs, preopen(f.preopen, ctx), f.rel);
        break;
      case "piperead":
      case "pipewrite": {
        const p = pipes.get(f.pipe);
        if (!p) throw new SnapshotError(`${e.what}: ${ctx} refers to missing pipe ${f.pipe}`);
        const end = f.kind === "piperead" ? new PipeReadFd(p) : new PipeWriteFd(p);
        end.nonblock = f.nonblock;
        obj = end;
        break;
      }
      case "hostfile": {
        const p = preopen(f.preopen, ctx);
        const path = `${p.hostPath}/${f.rel}`;
        let hfd: number;
        try {
          hfd = e.host.fs.open(path, { read: f.readable, write: f.writable });
        } catch {
          throw new SnapshotError(`${e.what}: file ${path}, open in the guest as ${p.guestPath}/${f.rel}, is missing`);
        }
        const size = e.host.fs.fstat(hfd).size;
        if (size.toString() !== f.size && !(f.imageTarget && size >= BigInt(f.size))) {
          e.host.fs.close(hfd);
          throw new SnapshotError(`${e.what}: file ${path} changed size since the checkpoint (${f.size} → ${size} bytes)`);
        }
        const fd = new HostFileFd(e.host.fs, p, f.rel, hfd, { readable: f.readable, writable: f.writable, append: f.append, fdflags: f.fdflags });
        // The image itself was written into this file after its size was taken: the call returned with the offset past it.
        fd.pos = BigInt(f.pos) + (f.imageTarget ? size - BigInt(f.size) : 0n);
        obj = fd;
        break;
      }
      case "cgrouppreopen": {
        const c = cgroups(ctx);
        obj = new CgroupPreopenFd(c.host, c.binding.ref("/"));
        break;
      }
      case "cgroupdir": {
        const c = cgroups(ctx);
        obj = new CgroupDirFd(c.host, c.binding.ref(f.group));
        break;
      }
      case "cgroupfile": {
        const c = cgroups(ctx);
        const fd = new CgroupFileFd(c.host, c.binding.ref(f.group), f.name, { readable: f.readable, writable: f.writable, fdflags: f.fdflags });
        fd.pos = BigInt(f.pos);
        if (f.content !== null) {
          const text = image.blobs.get(f.content);
          if (!text) throw new SnapshotError(`${e.what}: ${ctx} refers to missing blob ${f.content}`);
          fd.content = text.slice();
        }
        obj = fd;
        break;
      }
      default:
        throw new SnapshotError(`${e.what}: ${ctx}: unknown kind`);
    }
    files.set(f.id, obj);
  }
  return files;
}
