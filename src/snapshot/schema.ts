// Shapes of the JSON records (zod), then the cross-record rules no shape can
// say: ids refer to objects already seen (and of the right kind), pids are
// unique, parents form a tree, page indices lie inside their memory, the
// in-memory filesystem is a tree. docs/snapshot-format.md lists every rule.
// Every function here returns an error instead of throwing, whatever its
// input, and takes time linear in it.
import { z } from "zod";
import { LIMITS } from "./format.ts";
import type { ImageMeta, ModuleEntry, VmRecord } from "./types.ts";

const hex32 = z.string().regex(/^[0-9a-f]{32}$/);
/** A signed integer as a decimal string (a time in ns). */
const decimal = z.string().regex(/^-?\d{1,30}$/);
/** An unsigned integer as a decimal string (an offset, a size, an inode number, a cookie): at most 2^64 - 1. */
// (The refinement runs even where the regex failed: it re-checks before BigInt(), which would throw.)
const udecimal = z.string().regex(/^\d{1,20}$/).refine((s) => !/^\d{1,20}$/.test(s) || BigInt(s) < 2n ** 64n, "must be below 2^64");
const uint = z.number().int().nonnegative().max(2 ** 53);
const id = z.number().int().nonnegative().max(2 ** 31);
const times = z.tuple([decimal, decimal, decimal]);

export const metaSchema = z.strictObject({
  crvmVersion: z.string().max(64),
  createdAt: z.string().max(64),
  runtime: z.string().max(128),
  monotonicNs: z.string().regex(/^\d{1,30}$/),
  id: hex32,
  parent: z.strictObject({ id: hex32, digest: hex32, path: z.string().min(1).max(4096) }).optional(),
});

export const moduleInfoSchema = z.strictObject({
  id,
  name: z.string().max(4096),
  sourceHash: z.string().regex(/^[0-9a-f]{64}$/),
  wasmHash: z.string().regex(/^[0-9a-f]{64}$/),
  passVersion: uint,
});

/** A freezer group path: "/" or "/a/b" (names without slashes, not "." or ".."). */
const groupPath = z.string().max(4096).regex(/^\/$|^(\/[^/]+)+$/, "not a group path").refine((p) => !/\/\.\.?(\/|$)/.test(p), "not a group path");

const fileSchema = z.discriminatedUnion("kind", [
  z.strictObject({ id, kind: z.enum(["piperead", "pipewrite"]), pipe: id, nonblock: z.boolean() }),
  z.strictObject({ id, kind: z.literal("stdin"), buffered: id.nullable(), eof: z.boolean() }),
  z.strictObject({ id, kind: z.enum(["stdout", "stderr"]) }),
  z.strictObject({ id, kind: z.literal("mempreopen"), name: z.string().max(4096), inode: id }),
  z.strictObject({ id, kind: z.literal("memdir"), inode: id, root: id }),
  z.strictObject({
    id, kind: z.literal("memfile"), inode: id, pos: udecimal, append: z.boolean(), readable: z.boolean(), writable: z.boolean(), fdflags: uint,
  }),
  z.strictObject({ id, kind: z.literal("hostpreopen"), guestPath: z.string().max(4096), hostPath: z.string().max(4096) }),
  z.strictObject({ id, kind: z.literal("hostdir"), preopen: id, rel: z.string().max(4096) }),
  z.strictObject({
    id, kind: z.literal("hostfile"), preopen: id, rel: z.string().max(4096), pos: udecimal, append: z.boolean(), readable: z.boolean(),
    writable: z.boolean(), fdflags: uint, size: udecimal, mtimeNs: decimal, imageTarget: z.literal(true).optional(),
  }),
  z.strictObject({ id, kind: z.literal("cgrouppreopen") }),
  z.strictObject({ id, kind: z.literal("cgroupdir"), group: groupPath.nullable() }),
  z.strictObject({
    id, kind: z.literal("cgroupfile"), group: groupPath.nullable(), name: z.enum(["cgroup.procs", "cgroup.freeze", "cgroup.events"]),
    pos: udecimal, readable: z.boolean(), writable: z.boolean(), fdflags: uint, content: id.nullable(),
  }),
]);

const inodeSchema = z.discriminatedUnion("type", [
  z.strictObject({ id, type: z.literal("file"), ino: udecimal, data: id.nullable(), size: uint, nlink: uint, times }),
  z.strictObject({
    id, type: z.literal("dir"), ino: udecimal, entries: z.array(z.tuple([z.string().max(4096), id, udecimal])).max(1 << 20),
    nextCookie: udecimal, parent: id.nullable(), removed: z.boolean(), times,
  }),
  z.strictObject({ id, type: z.literal("symlink"), ino: udecimal, target: z.string().max(4096), nlink: uint, times }),
]);

/**
 * A global's value as dumpGlobals writes it: "num" is JavaScript's own
 * decimal form of an i32/f32/f64 (String(x), with "-0" for negative zero),
 * "i64" a decimal integer in the signed 64-bit range.
 */
const globalValue = z.discriminatedUnion("type", [
  z.strictObject({ type: z.literal("num"), value: z.string().max(64).regex(/^(NaN|-?Infinity|-?\d+(\.\d+)?(e[+-]\d+)?)$/) }),
  z.strictObject({
    type: z.literal("i64"),
    // The refinements run even where the regex failed, so each re-checks it before BigInt() (which throws).
    value: z.string().regex(/^-?\d{1,19}$/).refine((s) => !/^-?\d{1,19}$/.test(s) || (BigInt(s) >= -(2n ** 63n) && BigInt(s) < 2n ** 63n), "must be a signed 64-bit integer"),
  }),
]);

const pendingSchema = z.strictObject({
  call: z.string().max(256),
  untilNs: decimal.optional(),
  fds: z.array(z.strictObject({ fd: uint, what: z.enum(["read", "write"]) })).max(1024).optional(),
  yield: z.boolean().optional(),
  freeze: z.boolean().optional(),
  join: z.number().int().min(-1).max(2 ** 31).optional(),
  state: z.json().optional(),
});

const taskSchema = z.strictObject({
  pid: z.number().int().positive().max(2 ** 31),
  ppid: z.number().int().nonnegative().max(2 ** 31),
  moduleId: id,
  args: z.array(z.string().max(1 << 20)).max(1 << 16),
  env: z.array(z.string().max(1 << 20)).max(1 << 16),
  memory: z.strictObject({
    pages: z.number().int().nonnegative().max(LIMITS.memoryPages),
    map: z.array(z.tuple([z.number().int().nonnegative(), hex32])).max(LIMITS.memoryPages),
  }),
  globals: z.array(z.tuple([z.string().max(1024), globalValue])).max(1 << 16),
  frames: id,
  pending: pendingSchema,
  fds: z.array(z.tuple([z.number().int().nonnegative().max(LIMITS.fds), id])).max(LIMITS.fds),
  stopped: z.boolean().optional(),
  group: z.string().max(4096).optional(),
  unsent: id.optional(),
});

const groupSchema = z.strictObject({ path: groupPath, frozen: z.boolean() });

const pipeSchema = z.strictObject({ id, data: id.nullable(), capacity: z.number().int().positive().max(1 << 24) });
const zombieSchema = z.strictObject({
  pid: z.number().int().positive().max(2 ** 31),
  ppid: z.number().int().nonnegative().max(2 ** 31),
  code: z.number().int().nonnegative().max(2 ** 32),
  signal: z.number().int().nonnegative().max(64).nullable(),
});

export const vmSchema = z.strictObject({
  nextPid: z.number().int().positive().max(2 ** 31),
  nextIno: udecimal,
  inodes: z.array(inodeSchema).max(1 << 24),
  files: z.array(fileSchema).max(1 << 24),
  tasks: z.array(taskSchema).min(1).max(LIMITS.tasks),
  pipes: z.array(pipeSchema).max(1 << 20).optional(),
  zombies: z.array(zombieSchema).max(LIMITS.tasks).optional(),
  maxTasks: z.number().int().positive().max(LIMITS.tasks).optional(),
  maxMemoryPages: z.number().int().positive().max(LIMITS.memoryPages).optional(),
  groups: z.array(groupSchema).min(1).max(1 << 16).optional(),
  checkpoint: z.strictObject({ group: groupPath, caller: z.number().int().positive().max(2 ** 31).optional() }).optional(),
  nextCheckpointId: z.number().int().positive().max(Number.MAX_SAFE_INTEGER).optional(),
});

function first(e: z.ZodError): string {
  const i = e.issues[0]!;
  return `${i.path.length ? i.path.join(".") + ": " : ""}${i.message}`;
}

/**
 * What no schema should be shown: a value nested deeper than
 * `LIMITS.jsonDepth` (zod validates `z.json()` recursively, and a few
 * thousand levels overflow the stack: a RangeError, not a SnapshotError), or
 * an object key "__proto__" (a validator that copies objects drops it, so
 * the image would decode to something other than what it holds). Iterative,
 * so it cannot overflow itself.
 */
export function jsonProblem(v: unknown): string | null {
  // Containers only, each with its depth (two stacks: no allocation per value).
  const values: object[] = [];
  const depths: number[] = [];
  const visit = (x: unknown, depth: number) => {
    if (x !== null && typeof x === "object") {
      values.push(x);
      depths.push(depth);
    }
  };
  visit(v, 1);
  while (values.length > 0) {
    const x = values.pop()!;
    const depth = depths.pop()!;
    if (depth > LIMITS.jsonDepth) return `nested deeper than ${LIMITS.jsonDepth} levels`;
    if (Array.isArray(x)) {
      for (let i = 0; i < x.length; i++) visit(x[i], depth + 1);
      continue;
    }
    for (const k of Object.keys(x)) {
      if (k === "__proto__") return `a key named "__proto__"`;
      visit((x as Record<string, unknown>)[k], depth + 1);
    }
  }
  return null;
}

export function parseMeta(v: unknown): { ok: true; value: ImageMeta } | { ok: false; error: string } {
  const problem = jsonProblem(v);
  if (problem) return { ok: false, error: problem };
  const r = metaSchema.safeParse(v);
  return r.success ? { ok: true, value: r.data as ImageMeta } : { ok: false, error: first(r.error) };
}

export function parseModuleInfo(v: unknown): { ok: true; value: Omit<ModuleEntry, "source"> } | { ok: false; error: string } {
  const problem = jsonProblem(v);
  if (problem) return { ok: false, error: problem };
  const r = moduleInfoSchema.safeParse(v);
  return r.success ? { ok: true, value: r.data } : { ok: false, error: first(r.error) };
}

/**
 * The first of `nodes` whose chain of parents loops, or undefined. Linear:
 * each node is walked once (a node known to reach a root is not walked
 * again), so 100,000 tasks in one chain cost 100,000 steps, not 5·10^9.
 */
function firstLoop<K>(nodes: Iterable<K>, parentOf: (k: K) => K | undefined): K | undefined {
  const state = new Map<K, "walking" | "rooted">();
  for (const start of nodes) {
    const walk: K[] = [];
    for (let k: K | undefined = start; k !== undefined && state.get(k) !== "rooted"; k = parentOf(k)) {
      if (state.get(k) === "walking") return start;
      state.set(k, "walking");
      walk.push(k);
    }
    for (const k of walk) state.set(k, "rooted");
  }
  return undefined;
}

/** A directory entry's name: one path component, not "." or "..". */
const entryNameOk = (name: string) => name !== "" && name !== "." && name !== ".." && !name.includes("/");

/**
 * Shape, then cross-references. `ctx` holds what the records before the VM
 * record defined: module ids, blob sizes by id, and whether a page id is
 * available (stored here, or in a parent chain).
 */
export function checkVm(
  v: unknown,
  ctx: { modules: ReadonlySet<number>; blobs: ReadonlyMap<number, number>; pageKnown: (id: string) => boolean },
): { ok: true; value: VmRecord } | { ok: false; error: string } {
  const problem = jsonProblem(v);
  if (problem) return { ok: false, error: problem };
  const r = vmSchema.safeParse(v);
  if (!r.success) return { ok: false, error: first(r.error) };
  const vm = r.data as VmRecord;
  const bad = (error: string) => ({ ok: false as const, error });
  // The in-memory filesystem: ids in order, file data in blobs of the recorded size, and a tree of
  // directories (each linked once, by the directory its parent field names; parents never loop).
  const linkedFrom = new Map<number, number>();
  for (const [i, n] of vm.inodes.entries()) {
    if (n.id !== i) return bad(`inode ${i} has id ${n.id}`);
    if (n.type === "file") {
      const size = n.data === null ? 0 : ctx.blobs.get(n.data);
      if (size === undefined) return bad(`inode ${i} refers to missing blob ${n.data}`);
      if (size !== n.size) return bad(`inode ${i} has size ${n.size} but its data holds ${size} bytes`);
    }
    if (n.type === "dir") {
      const names = new Set<string>();
      for (const [name, child] of n.entries) {
        if (!entryNameOk(name)) return bad(`inode ${i} has an entry named ${JSON.stringify(name)}`);
        if (names.has(name)) return bad(`inode ${i} has two entries named ${JSON.stringify(name)}`);
        names.add(name);
        const c = vm.inodes[child];
        if (c === undefined) return bad(`inode ${i} refers to missing inode ${child}`);
        if (c.type !== "dir") continue;
        if (linkedFrom.has(child)) return bad(`directory ${child} is linked twice`);
        linkedFrom.set(child, i);
        if (c.parent !== i) return bad(`directory ${child} is linked from directory ${i} but its parent is ${c.parent}`);
      }
      if (n.parent !== null && n.parent >= vm.inodes.length) return bad(`inode ${i} has a missing parent`);
      if (n.parent !== null && vm.inodes[n.parent]!.type !== "dir") return bad(`inode ${i} has a parent ${n.parent} that is not a directory`);
    }
  }
  const dirParent = (i: number) => {
    const n = vm.inodes[i]!;
    return n.type === "dir" && n.parent !== null ? n.parent : undefined;
  };
  const dirLoop = firstLoop(vm.inodes.filter((n) => n.type === "dir").map((n) => n.id), dirParent);
  if (dirLoop !== undefined) return bad(`directory ${dirLoop}: parent links form a cycle`);
  const inodeOfType = (i: number, x: number, type: "file" | "dir"): string | null => {
    const n = vm.inodes[x];
    if (n === undefined) return `file ${i} refers to missing inode ${x}`;
    return n.type === type ? null : `file ${i} refers to inode ${x}, which is not a ${type === "dir" ? "directory" : "file"}`;
  };
  for (const [i, f] of vm.files.entries()) {
    if (f.id !== i) return bad(`file ${i} has id ${f.id}`);
    const wrong = f.kind === "memfile" ? inodeOfType(i, f.inode, "file")
      : f.kind === "mempreopen" ? inodeOfType(i, f.inode, "dir")
      : f.kind === "memdir" ? inodeOfType(i, f.inode, "dir") ?? inodeOfType(i, f.root, "dir")
      : null;
    if (wrong) return bad(wrong);
    if ((f.kind === "hostdir" || f.kind === "hostfile") && vm.files[f.preopen]?.kind !== "hostpreopen") {
      return bad(`file ${i} refers to ${f.preopen}, which is not a host preopen`);
    }
    if (f.kind === "stdin" && f.buffered !== null && !ctx.blobs.has(f.buffered)) return bad(`file ${i} refers to missing blob ${f.buffered}`);
    if (f.kind === "cgroupfile" && f.content !== null && !ctx.blobs.has(f.content)) return bad(`file ${i} refers to missing blob ${f.content}`);
    // The root group has only cgroup.procs (its freeze is the VM-wide one).
    if (f.kind === "cgroupfile" && f.group === "/" && f.name !== "cgroup.procs") return bad(`file ${i}: the root group has no ${f.name}`);
    if ((f.kind === "piperead" || f.kind === "pipewrite") && f.pipe >= (vm.pipes?.length ?? 0)) return bad(`file ${i} refers to missing pipe ${f.pipe}`);
  }
  for (const [i, p] of (vm.pipes ?? []).entries()) {
    if (p.id !== i) return bad(`pipe ${i} has id ${p.id}`);
    const held = p.data === null ? 0 : ctx.blobs.get(p.data);
    if (held === undefined) return bad(`pipe ${i} refers to missing blob ${p.data}`);
    if (held > p.capacity) return bad(`pipe ${i} holds ${held} bytes, more than its capacity ${p.capacity}`);
  }
  const pids = new Set<number>();
  for (const t of vm.tasks) {
    const w = `task ${t.pid}`;
    if (pids.has(t.pid)) return bad(`pid ${t.pid} appears twice`);
    pids.add(t.pid);
    if (t.pid >= vm.nextPid) return bad(`${w}: pid is not below nextPid ${vm.nextPid}`);
    if (!ctx.modules.has(t.moduleId)) return bad(`${w} refers to missing module ${t.moduleId}`);
    if (!ctx.blobs.has(t.frames)) return bad(`${w} refers to missing stack blob ${t.frames}`);
    if (t.unsent !== undefined && !ctx.blobs.has(t.unsent)) return bad(`${w} refers to missing blob ${t.unsent}`);
    let last = -1;
    for (const [index, page] of t.memory.map) {
      if (index >= t.memory.pages) return bad(`${w}: page ${index} lies outside its memory of ${t.memory.pages} pages`);
      if (index <= last) return bad(`${w}: page indices are not increasing at ${index}`);
      last = index;
      if (!ctx.pageKnown(page)) return bad(`${w}: page ${index} refers to missing page ${page}`);
    }
    const fds = new Set<number>();
    for (const [fd, file] of t.fds) {
      if (fds.has(fd)) return bad(`${w}: fd ${fd} appears twice`);
      fds.add(fd);
      if (file >= vm.files.length) return bad(`${w}: fd ${fd} refers to missing file ${file}`);
    }
    // Restore sets globals by name and counts them: a repeated name would leave another global unset.
    const globals = new Set<string>();
    for (const [name] of t.globals) {
      if (globals.has(name)) return bad(`${w}: global ${name} appears twice`);
      globals.add(name);
    }
  }
  for (const z of vm.zombies ?? []) {
    if (pids.has(z.pid)) return bad(`pid ${z.pid} appears twice`);
    if (z.pid >= vm.nextPid) return bad(`zombie ${z.pid}: pid is not below nextPid ${vm.nextPid}`);
    pids.add(z.pid);
  }
  // Parent links: every ppid is 0 (a root) or a task of the image, and following them never loops.
  for (const t of [...vm.tasks, ...(vm.zombies ?? [])]) {
    if (t.ppid !== 0 && !pids.has(t.ppid)) return bad(`task ${t.pid}: parent ${t.ppid} is not in the image`);
  }
  const all = [...vm.tasks, ...(vm.zombies ?? [])];
  const parentOf = new Map(all.map((t) => [t.pid, t.ppid]));
  const taskLoop = firstLoop(all.map((t) => t.pid), (pid) => parentOf.get(pid) || undefined);
  if (taskLoop !== undefined) return bad(`task ${taskLoop}: parent links form a cycle`);
  // Freezer groups: "/" first, each once, parents before children; tasks and the checkpoint name groups that exist.
  const groups = new Set<string>();
  for (const [i, g] of (vm.groups ?? []).entries()) {
    if (i === 0 ? g.path !== "/" : groups.has(g.path)) return bad(i === 0 ? `group 0 is not "/"` : `group ${g.path} appears twice`);
    const parent = g.path.slice(0, g.path.lastIndexOf("/")) || "/";
    if (i > 0 && !groups.has(parent)) return bad(`group ${g.path} comes before its parent`);
    groups.add(g.path);
  }
  if (groups.size === 0) groups.add("/");
  for (const t of vm.tasks) if (t.group !== undefined && !groups.has(t.group)) return bad(`task ${t.pid}: group ${t.group} is not in the image`);
  if (vm.checkpoint && !groups.has(vm.checkpoint.group)) return bad(`checkpoint group ${vm.checkpoint.group} is not in the image`);
  if (vm.checkpoint?.caller !== undefined && !vm.tasks.some((t) => t.pid === vm.checkpoint!.caller)) {
    return bad(`checkpoint caller ${vm.checkpoint.caller} is not a task of the image`);
  }
  return { ok: true, value: vm };
}
