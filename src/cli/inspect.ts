// `crvm inspect`: what is inside an image, without running anything; also
// verifies an image, and turns its JSON form back into the image (like
// CRIU's crit decode/encode), which is how test images are crafted.
import { UsageError } from "../errors.ts";
import type { Host } from "../host/mod.ts";
import { decodeSnapshot, Hashing, KIND_NAMES, PAGE_SIZE, type RawRecord, type SnapshotImage, SnapshotWriter } from "../snapshot/mod.ts";
import { type ChainLink, readImage, readImageBytes } from "../api/images.ts";
import { concatBytes } from "../bytes.ts";

const kib = (n: number) => `${(n / 1024).toFixed(n < 10240 ? 1 : 0)} KiB`;
const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;
const b64 = (b: Uint8Array) => btoa(Array.from(b, (x) => String.fromCharCode(x)).join(""));
const unb64 = (s: string) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));

/** Pages of an image by where they come from. */
export function pageCounts(image: SnapshotImage, chain: ChainLink[]) {
  let refs = 0, zero = 0;
  const distinct = new Set<string>();
  for (const t of image.vm.tasks) {
    refs += t.memory.map.length;
    zero += t.memory.pages - t.memory.map.length;
    for (const [, id] of t.memory.map) distinct.add(id);
  }
  const fromImage = chain.map((link) => ({ path: link.path, pages: 0 }));
  for (const id of distinct) {
    const i = chain.findIndex((link) => link.pageIds.has(id));
    if (i >= 0) fromImage[i]!.pages++;
  }
  return { referenced: refs, zero, deduplicated: refs - distinct.size, stored: fromImage[0]!.pages, inherited: distinct.size - fromImage[0]!.pages, fromImage };
}

export function summary(image: SnapshotImage, chain: ChainLink[], fileBytes: number): string {
  const lines: string[] = [];
  const m = image.meta;
  lines.push(`snapshot: ${kib(fileBytes)}, written by crvm ${m.crvmVersion} on ${m.runtime} at ${m.createdAt}`);
  lines.push(`id ${m.id}, digest ${image.digest}; clock: monotonic ${(Number(BigInt(m.monotonicNs)) / 1e9).toFixed(3)} s`);
  if (chain.length > 1) lines.push(`chain: ${chain.map((c) => c.path).join(" → ")}`);
  for (const mod of image.modules) {
    lines.push(`module ${mod.id}: ${mod.name} (${kib(mod.source.length)}, sha256 ${mod.sourceHash.slice(0, 16)}…, instrumented ${mod.wasmHash.slice(0, 16)}…, pass v${mod.passVersion})`);
  }
  const p = pageCounts(image, chain);
  lines.push(
    `pages: ${p.stored} stored here (${mib(p.stored * PAGE_SIZE)}), ${p.deduplicated} deduplicated, ${p.inherited} inherited, ${p.zero} zero (not stored)`,
  );
  if (chain.length > 1) for (const f of p.fromImage) lines.push(`  ${f.pages} from ${f.path}`);
  const taken = image.vm.checkpoint;
  if (taken) {
    const by = taken.caller !== undefined ? `self-checkpoint by task ${taken.caller}` : "external checkpoint";
    lines.push(`taken: ${by}, tasks frozen in group ${taken.group}`);
  }
  for (const g of image.vm.groups ?? []) if (g.path !== "/" || g.frozen) lines.push(`group ${g.path}${g.frozen ? " (frozen)" : ""}`);
  for (const t of image.vm.tasks) {
    const frames = image.blobs.get(t.frames)?.length ?? 0;
    const wait = t.pending.freeze ? "frozen"
      : t.pending.join !== undefined ? `waiting for ${t.pending.join < 0 ? "any child" : `child ${t.pending.join}`}`
      : t.pending.untilNs ? "sleeping"
      : t.pending.fds?.length ? "waiting for an fd"
      : "yielded";
    lines.push(`task ${t.pid} (parent ${t.ppid}${t.group && t.group !== "/" ? `, group ${t.group}` : ""}${t.stopped ? ", stopped" : ""}): ${JSON.stringify(t.args.join(" "))}, module ${t.moduleId}`);
    lines.push(`  memory: ${t.memory.pages} pages (${mib(t.memory.pages * PAGE_SIZE)}), ${t.memory.map.length} non-zero`);
    lines.push(`  stack: ${frames} bytes, in ${t.pending.call} (${wait}); ${t.globals.length} globals`);
    for (const [fd, id] of t.fds) lines.push(`  fd ${fd}: ${describeFile(image.vm.files[id]!)}`);
  }
  for (const z of image.vm.zombies ?? []) {
    lines.push(`zombie ${z.pid} (parent ${z.ppid}): exited with ${z.code}${z.signal !== null ? ` (signal ${z.signal})` : ""}`);
  }
  for (const p of image.vm.pipes ?? []) {
    lines.push(`pipe ${p.id}: ${p.data === null ? 0 : image.blobs.get(p.data)?.length ?? 0} bytes buffered`);
  }
  const inodes = image.vm.inodes;
  if (inodes.length > 0) {
    const files = inodes.filter((i) => i.type === "file");
    const bytes = files.reduce((n, i) => n + (i.type === "file" ? i.size : 0), 0);
    lines.push(`in-memory fs: ${inodes.length} inodes, ${files.length} files, ${kib(bytes)}`);
  }
  return lines.join("\n") + "\n";
}

function describeFile(f: SnapshotImage["vm"]["files"][number]): string {
  switch (f.kind) {
    case "stdin":
    case "stdout":
    case "stderr":
      return f.kind;
    case "hostpreopen":
      return `dir ${f.guestPath} (host ${f.hostPath})`;
    case "mempreopen":
      return `dir ${f.name} (in memory)`;
    case "hostdir":
      return `host dir ${f.rel || "."} in preopen ${f.preopen}`;
    case "memdir":
      return `in-memory dir (inode ${f.inode})`;
    case "hostfile":
      return `host file ${f.rel} at offset ${f.pos} (size ${f.size})`;
    case "memfile":
      return `in-memory file (inode ${f.inode}) at offset ${f.pos}`;
    case "cgrouppreopen":
      return "dir /sys/fs/cgroup (freezer groups)";
    case "cgroupdir":
      return `freezer group dir ${f.group ?? "(removed)"}`;
    case "cgroupfile":
      return `${f.name} of freezer group ${f.group ?? "(removed)"} at offset ${f.pos}`;
    case "piperead":
    case "pipewrite":
      return `${f.kind === "piperead" ? "read" : "write"} end of pipe ${f.pipe}`;
  }
}

/** Every record of an image file, in order, as JSON. */
async function recordsJson(host: Host, file: string, withPages: boolean): Promise<unknown> {
  const bytes = await readImageBytes(host, host.resolvePath(file));
  const records: unknown[] = [];
  const toJson = (r: RawRecord): unknown => {
    switch (r.kind) {
      case "META":
        return { kind: r.kind, meta: r.meta };
      case "MODULE":
        return { kind: r.kind, info: r.info, bytes: r.source.length, ...(withPages ? { source: b64(r.source) } : {}) };
      case "MODULE_REF":
        return { kind: r.kind, info: r.info };
      case "PAGE":
        return { kind: r.kind, id: r.id, ...(withPages ? { data: b64(r.data) } : {}) };
      case "BLOB":
        return { kind: r.kind, id: r.id, data: b64(r.data) };
      case "VM":
        return { kind: r.kind, vm: r.vm };
      case "TRAILER":
        return { kind: r.kind, records: r.records, length: r.length, digest: r.digest };
    }
  };
  await decodeSnapshot(bytes, { name: file, onRecord: (r) => records.push(toJson(r)) });
  return { format: 1, records };
}

/** Writes the image a `--json --with-pages` document describes; returns its bytes. */
export async function encodeJson(doc: unknown): Promise<Uint8Array> {
  const records = (doc as { records?: unknown })?.records;
  if (!Array.isArray(records)) throw new UsageError("--encode: expected the JSON of `crvm inspect --json --with-pages` (no records array)");
  const chunks: Uint8Array[] = [];
  const w = new SnapshotWriter(await Hashing.create(), (c) => chunks.push(c.slice()));
  let trailer = false;
  for (const [i, r] of records.entries()) {
    const bad = (why: string): never => {
      throw new UsageError(`--encode: record ${i} (${r?.kind}): ${why}`);
    };
    if (trailer) bad("records after the trailer");
    switch (r?.kind) {
      case "META":
        w.meta(r.meta);
        break;
      case "MODULE":
        if (typeof r.source !== "string") bad("no module bytes: use inspect --json --with-pages");
        w.module({ ...r.info, source: unb64(r.source) });
        break;
      case "MODULE_REF":
        w.moduleRef(r.info);
        break;
      case "PAGE":
        if (typeof r.data !== "string") bad("no page data: use inspect --json --with-pages");
        w.page(r.id, unb64(r.data));
        break;
      case "BLOB":
        w.blob(r.id, unb64(r.data));
        break;
      case "VM":
        w.vm(r.vm);
        break;
      case "TRAILER":
        w.finish();
        trailer = true;
        break;
      default:
        bad(`unknown kind (known: ${Object.values(KIND_NAMES).join(", ")})`);
    }
  }
  if (!trailer) w.finish();
  return concatBytes(chunks);
}

export interface InspectOptions {
  input: string;
  json: boolean;
  withPages: boolean;
  verify: boolean;
  encode: boolean;
  output?: string;
}

export async function inspectCommand(host: Host, o: InspectOptions): Promise<number> {
  const out = (s: string | Uint8Array) => host.stdio.write(1, typeof s === "string" ? new TextEncoder().encode(s) : s);
  if (o.encode) {
    const text = o.input === "-" ? await readAll(host) : new TextDecoder().decode(host.fs.readFile(host.resolvePath(o.input)));
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (e) {
      throw new UsageError(`--encode: ${o.input} is not JSON (${(e as Error).message})`);
    }
    const bytes = await encodeJson(doc);
    if (o.output) host.fs.writeFileAtomic(host.resolvePath(o.output), bytes);
    else out(bytes);
    return 0;
  }
  if (o.json) {
    out(JSON.stringify(await recordsJson(host, o.input, o.withPages), null, 1) + "\n");
    return 0;
  }
  const { image, chain } = await readImage(host, o.input);
  if (o.verify) {
    out(`ok: ${o.input}: ${image.bytes} bytes, digest ${image.digest}${chain.length > 1 ? `, chain of ${chain.length} images verified` : ""}\n`);
    return 0;
  }
  out(summary(image, chain, Number(host.fs.stat(host.resolvePath(o.input)).size)));
  return 0;
}

async function readAll(host: Host): Promise<string> {
  const parts: Uint8Array[] = [];
  for (let c = await host.stdio.read(1 << 20); c !== null; c = await host.stdio.read(1 << 20)) parts.push(c);
  return new TextDecoder().decode(await new Blob(parts as Uint8Array<ArrayBuffer>[]).arrayBuffer());
}

