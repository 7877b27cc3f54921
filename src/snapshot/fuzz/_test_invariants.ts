// The format's invariants (docs/snapshot-format.md, "What a decoder
// verifies"), checked on a decoded image apart from schema.ts on purpose: the
// fuzzer asks of every image that decodes that it has no violation.
import { LIMITS } from "../format.ts";
import { Hashing, PAGE_SIZE, type SnapshotImage } from "../mod.ts";

const hashing = await Hashing.create();

const HEX32 = /^[0-9a-f]{32}$/;
const HEX64 = /^[0-9a-f]{64}$/;
const isInt = (x: unknown, min = 0, max = 2 ** 53): x is number => typeof x === "number" && Number.isInteger(x) && x >= min && x <= max && !Object.is(x, -0);
const isDecimal = (x: unknown, signed = false) => typeof x === "string" && (signed ? /^-?\d{1,30}$/ : /^\d{1,30}$/).test(x);
const isBool = (x: unknown) => typeof x === "boolean";
const isStr = (x: unknown, max = 4096) => typeof x === "string" && x.length <= max;
/** "/" or "/a/b": components without "/", none "." or "..". */
const isGroupPath = (x: unknown) => isStr(x) && (x === "/" || (/^(\/[^/]+)+$/.test(x as string) && !(x as string).split("/").some((c) => c === "." || c === "..")));

/** The first node whose parent links loop, by brute force (the checker may be slow, not wrong). */
function loops<K>(nodes: K[], parent: (k: K) => K | undefined): K | undefined {
  for (const n of nodes) {
    const seen = new Set<K>();
    for (let k: K | undefined = n; k !== undefined; k = parent(k)) {
      if (seen.has(k)) return n;
      seen.add(k);
    }
  }
  return undefined;
}

/** Every rule of the format a decoded image breaks (empty: none). */
export function violations(img: SnapshotImage): string[] {
  const out: string[] = [];
  const bad = (s: string) => void out.push(s);
  const m = img.meta;
  if (!HEX32.test(m.id) || !isStr(m.crvmVersion, 64) || !isStr(m.createdAt, 64) || !isStr(m.runtime, 128) || !isDecimal(m.monotonicNs)) bad("meta fields");
  if (m.parent !== undefined && (!HEX32.test(m.parent.id) || !HEX32.test(m.parent.digest) || !isStr(m.parent.path) || m.parent.path === "")) bad("meta parent");
  const moduleIds = new Set<number>();
  for (const mod of img.modules) {
    if (!isInt(mod.id, 0, 2 ** 31) || moduleIds.has(mod.id)) bad(`module id ${mod.id}`);
    moduleIds.add(mod.id);
    if (!isStr(mod.name) || !HEX64.test(mod.sourceHash) || !HEX64.test(mod.wasmHash) || !isInt(mod.passVersion)) bad(`module ${mod.id} fields`);
    if (mod.inherited && !m.parent) bad(`module ${mod.id} inherited without a parent`);
  }
  for (const [id, data] of img.pages) {
    if (data.length !== PAGE_SIZE || hashing.pageId(data) !== id) bad(`page ${id} content`);
  }
  const vm = img.vm;
  const blob = (id: unknown) => isInt(id, 0, 2 ** 31) && img.blobs.has(id);
  // Inodes: ids in order, blobs that exist with the recorded size, a directory tree.
  for (const [i, n] of vm.inodes.entries()) {
    if (n.id !== i || !isDecimal(n.ino) || !Array.isArray(n.times) || n.times.length !== 3 || !n.times.every((t) => isDecimal(t, true))) bad(`inode ${i} fields`);
    if (n.type === "file") {
      if (n.data === null ? n.size !== 0 : !blob(n.data) || img.blobs.get(n.data)!.length !== n.size) bad(`inode ${i} data`);
      if (!isInt(n.nlink)) bad(`inode ${i} nlink`);
    } else if (n.type === "symlink") {
      if (!isStr(n.target) || !isInt(n.nlink)) bad(`inode ${i} symlink`);
    } else if (n.type === "dir") {
      const names = new Set<string>();
      for (const [name, child, cookie] of n.entries) {
        if (!isStr(name) || name === "" || name === "." || name === ".." || name.includes("/") || names.has(name)) bad(`inode ${i} entry name ${JSON.stringify(name)}`);
        names.add(name);
        const c = vm.inodes[child];
        if (!isInt(child, 0, 2 ** 31) || !c) bad(`inode ${i} entry ${name} → ${child}`);
        else if (c.type === "dir" && c.parent !== i) bad(`inode ${i} entry ${name}: directory ${child} has parent ${c.parent}`);
        if (!isDecimal(cookie)) bad(`inode ${i} cookie`);
      }
      if (n.parent !== null && vm.inodes[n.parent]?.type !== "dir") bad(`inode ${i} parent ${n.parent}`);
      if (!isDecimal(n.nextCookie) || !isBool(n.removed)) bad(`inode ${i} dir fields`);
    } else bad(`inode ${i} type`);
  }
  const dirs = vm.inodes.filter((n) => n.type === "dir").map((n) => n.id);
  const parentDir = (k: number) => {
    const n = vm.inodes[k];
    return n?.type === "dir" && n.parent !== null ? n.parent : undefined;
  };
  if (loops(dirs, parentDir) !== undefined) bad("directory parents loop");
  const linked = new Map<number, number>();
  for (const n of vm.inodes) {
    if (n.type !== "dir") continue;
    for (const [, child] of n.entries) if (vm.inodes[child]?.type === "dir") linked.set(child, (linked.get(child) ?? 0) + 1);
  }
  for (const [d, count] of linked) if (count > 1) bad(`directory ${d} linked ${count} times`);
  // Open files: ids in order, references of the right kind.
  const inodeOf = (id: unknown, type: string) => isInt(id, 0, 2 ** 31) && vm.inodes[id]?.type === type;
  for (const [i, f] of vm.files.entries()) {
    if (f.id !== i) bad(`file ${i} id`);
    switch (f.kind) {
      case "stdin":
        if ((f.buffered !== null && !blob(f.buffered)) || !isBool(f.eof)) bad(`file ${i} stdin`);
        break;
      case "stdout":
      case "stderr":
        break;
      case "mempreopen":
        if (!inodeOf(f.inode, "dir") || !isStr(f.name)) bad(`file ${i} mempreopen`);
        break;
      case "memdir":
        if (!inodeOf(f.inode, "dir") || !inodeOf(f.root, "dir")) bad(`file ${i} memdir`);
        break;
      case "memfile":
        if (!inodeOf(f.inode, "file") || !isDecimal(f.pos) || !isInt(f.fdflags)) bad(`file ${i} memfile`);
        break;
      case "hostpreopen":
        if (!isStr(f.guestPath) || !isStr(f.hostPath)) bad(`file ${i} hostpreopen`);
        break;
      case "hostdir":
        if (vm.files[f.preopen]?.kind !== "hostpreopen" || !isStr(f.rel)) bad(`file ${i} hostdir`);
        break;
      case "hostfile":
        if (vm.files[f.preopen]?.kind !== "hostpreopen" || !isDecimal(f.pos) || !isDecimal(f.size) || !isDecimal(f.mtimeNs, true)) bad(`file ${i} hostfile`);
        break;
      case "piperead":
      case "pipewrite":
        if (!isInt(f.pipe, 0, 2 ** 31) || f.pipe >= (vm.pipes?.length ?? 0) || !isBool(f.nonblock)) bad(`file ${i} ${f.kind}`);
        break;
      case "cgrouppreopen":
        break;
      case "cgroupdir":
        if (f.group !== null && !isGroupPath(f.group)) bad(`file ${i} cgroupdir`);
        break;
      case "cgroupfile":
        if ((f.group !== null && !isGroupPath(f.group)) || !["cgroup.procs", "cgroup.freeze", "cgroup.events"].includes(f.name)) bad(`file ${i} cgroupfile`);
        if (f.group === "/" && f.name !== "cgroup.procs") bad(`file ${i} cgroupfile on the root group`);
        if (!isDecimal(f.pos) || !isBool(f.readable) || !isBool(f.writable) || !isInt(f.fdflags) || (f.content !== null && !blob(f.content))) bad(`file ${i} cgroupfile fields`);
        break;
      default:
        bad(`file ${i} kind`);
    }
  }
  for (const [i, p] of (vm.pipes ?? []).entries()) {
    if (p.id !== i || !isInt(p.capacity, 1, 1 << 24)) bad(`pipe ${i} fields`);
    if (p.data !== null && (!blob(p.data) || img.blobs.get(p.data)!.length > p.capacity)) bad(`pipe ${i} data`);
  }
  if (vm.maxTasks !== undefined && !isInt(vm.maxTasks, 1, LIMITS.tasks)) bad("maxTasks");
  // Tasks and zombies: unique pids below nextPid, a tree, references that resolve, pages inside memory.
  const pids = new Set<number>();
  for (const z of vm.zombies ?? []) {
    if (!isInt(z.pid, 1, 2 ** 31) || pids.has(z.pid) || z.pid >= vm.nextPid) bad(`zombie ${z.pid} pid`);
    pids.add(z.pid);
    if (!isInt(z.code, 0, 2 ** 32) || (z.signal !== null && !isInt(z.signal, 0, 64))) bad(`zombie ${z.pid} status`);
  }
  if (!isInt(vm.nextPid, 1, 2 ** 31) || !isDecimal(vm.nextIno) || vm.tasks.length === 0) bad("vm fields");
  for (const t of vm.tasks) {
    const w = `task ${t.pid}`;
    if (!isInt(t.pid, 1, 2 ** 31) || pids.has(t.pid) || t.pid >= vm.nextPid) bad(`${w} pid`);
    pids.add(t.pid);
    if (!moduleIds.has(t.moduleId)) bad(`${w} module ${t.moduleId}`);
    if (!blob(t.frames)) bad(`${w} frames ${t.frames}`);
    if (!isInt(t.memory.pages, 0, LIMITS.memoryPages)) bad(`${w} memory size`);
    let last = -1;
    for (const [index, id] of t.memory.map) {
      if (!isInt(index, 0, 2 ** 53) || index >= t.memory.pages || index <= last) bad(`${w} page index ${index}`);
      last = index;
      if (!HEX32.test(id) || (!img.pages.has(id) && !m.parent)) bad(`${w} page ${index} → ${id}`);
    }
    const fds = new Set<number>();
    for (const [fd, file] of t.fds) {
      if (!isInt(fd, 0, LIMITS.fds) || fds.has(fd) || !isInt(file, 0, 2 ** 31) || file >= vm.files.length) bad(`${w} fd ${fd}`);
      fds.add(fd);
    }
    const names = new Set<string>();
    for (const [name, g] of t.globals) {
      if (!isStr(name, 1024) || names.has(name)) bad(`${w} global ${name} twice`);
      names.add(name);
      const ok = g.type === "i64"
        ? /^-?\d{1,19}$/.test(g.value) && BigInt(g.value) >= -(2n ** 63n) && BigInt(g.value) < 2n ** 63n
        : g.type === "num" && /^(NaN|-?Infinity|-?\d+(\.\d+)?(e[+-]\d+)?)$/.test(g.value);
      if (!ok) bad(`${w} global ${name} value ${JSON.stringify(g.value)}`);
    }
    if (!isStr(t.pending.call, 256)) bad(`${w} pending`);
    if (t.pending.join !== undefined && !isInt(t.pending.join, -1, 2 ** 31)) bad(`${w} join`);
    if (t.stopped !== undefined && !isBool(t.stopped)) bad(`${w} stopped`);
    if (!t.args.every((a) => typeof a === "string") || !t.env.every((a) => typeof a === "string")) bad(`${w} args`);
  }
  const everyone = [...vm.tasks, ...(vm.zombies ?? [])];
  for (const t of everyone) if (t.ppid !== 0 && !pids.has(t.ppid)) bad(`task ${t.pid} parent ${t.ppid}`);
  const ppid = new Map(everyone.map((t) => [t.pid, t.ppid]));
  if (loops([...pids], (p) => (ppid.get(p) || undefined)) !== undefined) bad("parent links loop");
  return out;
}
