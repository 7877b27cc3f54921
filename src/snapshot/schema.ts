// Shapes of the JSON records (zod), then the cross-record rules no shape can
// say: ids refer to objects already seen, pids are unique, parents form a
// tree, page indices lie inside their memory.
import { z } from "zod";
import { LIMITS } from "./format.ts";
import type { ImageMeta, ModuleEntry, VmRecord } from "./types.ts";

const hex32 = z.string().regex(/^[0-9a-f]{32}$/);
const decimal = z.string().regex(/^-?\d{1,30}$/);
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

const fileSchema = z.discriminatedUnion("kind", [
  z.strictObject({ id, kind: z.literal("stdin"), buffered: id.nullable(), eof: z.boolean() }),
  z.strictObject({ id, kind: z.enum(["stdout", "stderr"]) }),
  z.strictObject({ id, kind: z.literal("mempreopen"), name: z.string().max(4096), inode: id }),
  z.strictObject({ id, kind: z.literal("memdir"), inode: id, root: id }),
  z.strictObject({
    id, kind: z.literal("memfile"), inode: id, pos: decimal, append: z.boolean(), readable: z.boolean(), writable: z.boolean(), fdflags: uint,
  }),
  z.strictObject({ id, kind: z.literal("hostpreopen"), guestPath: z.string().max(4096), hostPath: z.string().max(4096) }),
  z.strictObject({ id, kind: z.literal("hostdir"), preopen: id, rel: z.string().max(4096) }),
  z.strictObject({
    id, kind: z.literal("hostfile"), preopen: id, rel: z.string().max(4096), pos: decimal, append: z.boolean(), readable: z.boolean(),
    writable: z.boolean(), fdflags: uint, size: decimal, mtimeNs: decimal,
  }),
]);

const inodeSchema = z.discriminatedUnion("type", [
  z.strictObject({ id, type: z.literal("file"), ino: decimal, data: id.nullable(), size: uint, nlink: uint, times }),
  z.strictObject({
    id, type: z.literal("dir"), ino: decimal, entries: z.array(z.tuple([z.string().max(4096), id, decimal])).max(1 << 20),
    nextCookie: decimal, parent: id.nullable(), removed: z.boolean(), times,
  }),
  z.strictObject({ id, type: z.literal("symlink"), ino: decimal, target: z.string().max(4096), nlink: uint, times }),
]);

const pendingSchema = z.strictObject({
  call: z.string().max(256),
  untilNs: decimal.optional(),
  fds: z.array(z.strictObject({ fd: uint, what: z.enum(["read", "write"]) })).max(1024).optional(),
  yield: z.boolean().optional(),
  freeze: z.boolean().optional(),
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
  globals: z.array(z.tuple([z.string().max(1024), z.strictObject({ type: z.enum(["num", "i64"]), value: z.string().max(64) })])).max(1 << 16),
  frames: id,
  pending: pendingSchema,
  fds: z.array(z.tuple([z.number().int().nonnegative().max(LIMITS.fds), id])).max(LIMITS.fds),
});

export const vmSchema = z.strictObject({
  nextPid: z.number().int().positive().max(2 ** 31),
  nextIno: decimal,
  inodes: z.array(inodeSchema).max(1 << 24),
  files: z.array(fileSchema).max(1 << 24),
  tasks: z.array(taskSchema).min(1).max(LIMITS.tasks),
});

function first(e: z.ZodError): string {
  const i = e.issues[0]!;
  return `${i.path.length ? i.path.join(".") + ": " : ""}${i.message}`;
}

export function parseMeta(v: unknown): { ok: true; value: ImageMeta } | { ok: false; error: string } {
  const r = metaSchema.safeParse(v);
  return r.success ? { ok: true, value: r.data as ImageMeta } : { ok: false, error: first(r.error) };
}

export function parseModuleInfo(v: unknown): { ok: true; value: Omit<ModuleEntry, "source"> } | { ok: false; error: string } {
  const r = moduleInfoSchema.safeParse(v);
  return r.success ? { ok: true, value: r.data } : { ok: false, error: first(r.error) };
}

/** Shape, then cross-references. `pageKnown` says whether a page id is available (here or in a parent). */
export function checkVm(
  v: unknown,
  ctx: { modules: Set<number>; blobs: Set<number>; pageKnown: (id: string) => boolean },
): { ok: true; value: VmRecord } | { ok: false; error: string } {
  const r = vmSchema.safeParse(v);
  if (!r.success) return { ok: false, error: first(r.error) };
  const vm = r.data as VmRecord;
  const bad = (error: string) => ({ ok: false as const, error });
  for (const [i, n] of vm.inodes.entries()) {
    if (n.id !== i) return bad(`inode ${i} has id ${n.id}`);
    if (n.type === "file" && n.data !== null && !ctx.blobs.has(n.data)) return bad(`inode ${i} refers to missing blob ${n.data}`);
    if (n.type === "dir") {
      for (const [, child] of n.entries) if (child >= vm.inodes.length) return bad(`inode ${i} refers to missing inode ${child}`);
      if (n.parent !== null && n.parent >= vm.inodes.length) return bad(`inode ${i} has a missing parent`);
    }
  }
  const inodeOk = (x: number) => x < vm.inodes.length;
  for (const [i, f] of vm.files.entries()) {
    if (f.id !== i) return bad(`file ${i} has id ${f.id}`);
    if ("inode" in f && !inodeOk(f.inode)) return bad(`file ${i} refers to missing inode ${f.inode}`);
    if (f.kind === "memdir" && !inodeOk(f.root)) return bad(`file ${i} refers to missing inode ${f.root}`);
    if ((f.kind === "hostdir" || f.kind === "hostfile") && vm.files[f.preopen]?.kind !== "hostpreopen") {
      return bad(`file ${i} refers to ${f.preopen}, which is not a host preopen`);
    }
    if (f.kind === "stdin" && f.buffered !== null && !ctx.blobs.has(f.buffered)) return bad(`file ${i} refers to missing blob ${f.buffered}`);
  }
  const pids = new Set<number>();
  for (const t of vm.tasks) {
    const w = `task ${t.pid}`;
    if (pids.has(t.pid)) return bad(`pid ${t.pid} appears twice`);
    pids.add(t.pid);
    if (t.pid >= vm.nextPid) return bad(`${w}: pid is not below nextPid ${vm.nextPid}`);
    if (!ctx.modules.has(t.moduleId)) return bad(`${w} refers to missing module ${t.moduleId}`);
    if (!ctx.blobs.has(t.frames)) return bad(`${w} refers to missing stack blob ${t.frames}`);
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
  }
  // Parent links: every ppid is 0 (a root) or a pid in the image, and following them never loops.
  for (const t of vm.tasks) {
    if (t.ppid !== 0 && !pids.has(t.ppid)) return bad(`task ${t.pid}: parent ${t.ppid} is not in the image`);
  }
  const parentOf = new Map(vm.tasks.map((t) => [t.pid, t.ppid]));
  for (const t of vm.tasks) {
    let p = t.ppid;
    for (let steps = 0; p !== 0; steps++) {
      if (steps > vm.tasks.length) return bad(`task ${t.pid}: parent links form a cycle`);
      p = parentOf.get(p) ?? 0;
    }
  }
  return { ok: true, value: vm };
}
