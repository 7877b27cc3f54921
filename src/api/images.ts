// Snapshot files: reading one (gzip-compressed or not) with its parent chain,
// and writing one (incremental against a parent, compressed on request),
// always atomically.
import { type CheckpointStats, dumpVm } from "../checkpoint/dump.ts";
import { SnapshotError } from "../errors.ts";
import { type Host, HostFsError } from "../host/mod.ts";
import type { Vm } from "../sched/vm.ts";
import { decodeSnapshot, decodeSnapshotStream, Hashing, type SnapshotImage } from "../snapshot/mod.ts";

/** One image of a chain, newest first, with how many pages it stores itself. */
export interface ChainLink {
  path: string;
  id: string;
  digest: string;
  bytes: number;
  /** Ids of the pages this image stores itself. */
  pageIds: Set<string>;
}

export interface LoadedImage {
  /** The image with the pages of its whole chain. */
  image: SnapshotImage;
  chain: ChainLink[];
}

const isGzip = (b: Uint8Array) => b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b;

async function pipe(bytes: Uint8Array[], t: CompressionStream | DecompressionStream): Promise<Uint8Array> {
  const body = new Blob(bytes as Uint8Array<ArrayBuffer>[]).stream().pipeThrough(t);
  return new Uint8Array(await new Response(body).arrayBuffer());
}

/** The bytes of an image file, decompressed if it is gzip. */
export async function readImageBytes(host: Host, path: string): Promise<Uint8Array> {
  let bytes: Uint8Array;
  try {
    bytes = host.fs.readFile(path);
  } catch (e) {
    const why = e instanceof HostFsError && e.code === "ENOENT" ? "no such file" : (e as Error).message;
    throw new SnapshotError(`Cannot read snapshot "${path}": ${why}`);
  }
  if (!isGzip(bytes)) return bytes;
  try {
    return await pipe([bytes], new DecompressionStream("gzip"));
  } catch (e) {
    throw new SnapshotError(`Cannot read snapshot "${path}": bad compressed data (${(e as Error).message})`);
  }
}

/** The chunks of an image arriving on stdin, gunzipped if they start like gzip. */
async function* stdinImage(host: Host): AsyncGenerator<Uint8Array> {
  const next = () => host.stdio.read(1 << 20);
  let first = await next();
  while (first !== null && first.length === 0) first = await next();
  if (first === null) return;
  if (!isGzip(first)) {
    yield first;
    for (let c = await next(); c !== null; c = await next()) yield c;
    return;
  }
  const source = new ReadableStream<Uint8Array>({
    async start(ctrl) {
      ctrl.enqueue(first);
      for (let c = await next(); c !== null; c = await next()) ctrl.enqueue(c);
      ctrl.close();
    },
  });
  const reader = source.pipeThrough(new DecompressionStream("gzip") as unknown as TransformStream<Uint8Array, Uint8Array>).getReader();
  try {
    for (let r = await reader.read(); !r.done; r = await reader.read()) yield r.value;
  } catch (e) {
    throw new SnapshotError(`Cannot read snapshot from stdin: bad compressed data (${(e as Error).message})`);
  }
}

/**
 * Reads and verifies an image ("-": streamed from stdin, decoded as it
 * arrives) and, for an incremental one, its parents
 * (found relative to the image's directory; each must have the id and
 * digest the child recorded).
 */
export async function readImage(host: Host, file: string, opts: { verifyPages?: boolean } = {}, seen = new Set<string>()): Promise<LoadedImage> {
  const path = host.resolvePath(file === "-" ? "stdin" : file);
  // A chain that comes back to an image already read would never end.
  if (seen.has(path)) throw new SnapshotError(`Cannot restore snapshot "${file}": its chain of parents loops back to it`);
  seen.add(path);
  const image = file === "-"
    ? await decodeSnapshotStream(stdinImage(host), { name: "stdin", verifyPages: opts.verifyPages })
    : await decodeSnapshot(await readImageBytes(host, path), { name: file, verifyPages: opts.verifyPages });
  const link: ChainLink = { path: file, id: image.meta.id, digest: image.digest, bytes: image.bytes, pageIds: new Set(image.pages.keys()) };
  const ref = image.meta.parent;
  if (!ref) return { image, chain: [link] };
  const parentPath = host.resolvePath(ref.path, host.dirname(path));
  if (!host.fs.exists(parentPath)) {
    throw new SnapshotError(`Cannot restore snapshot "${file}": its parent image ${ref.path} is missing`);
  }
  const parent = await readImage(host, parentPath, opts, seen);
  if (parent.image.meta.id !== ref.id || parent.image.digest !== ref.digest) {
    throw new SnapshotError(`Cannot restore snapshot "${file}": ${ref.path} is not the parent it was made against (id or digest differs)`);
  }
  for (const [id, page] of parent.image.pages) if (!image.pages.has(id)) image.pages.set(id, page);
  for (const m of image.modules.filter((m) => m.inherited)) {
    const from = parent.image.modules.find((p) => p.sourceHash === m.sourceHash);
    if (!from) throw new SnapshotError(`Cannot restore snapshot "${file}": module ${m.name} is in no image of the chain`);
    m.source = from.source;
    m.inherited = false;
  }
  for (const t of image.vm.tasks) {
    for (const [index, id] of t.memory.map) {
      if (!image.pages.has(id)) throw new SnapshotError(`Cannot restore snapshot "${file}": page ${index} of task ${t.pid} is in no image of the chain`);
    }
  }
  return { image, chain: [link, ...parent.chain] };
}

export interface WriteOptions {
  /** Write an incremental image: only pages the parent chain lacks. */
  parent?: string;
  /** gzip the image (for networks and long-term storage; not the default hot path). */
  compress?: boolean;
}

/** Writes the frozen VM's image to `file` atomically (temporary file + rename). */
export async function writeImage(host: Host, vm: Vm, file: string, opts: WriteOptions = {}): Promise<CheckpointStats> {
  const path = host.resolvePath(file);
  let parent: Parameters<typeof dumpVm>[3]["parent"];
  if (opts.parent !== undefined) {
    const parentPath = host.resolvePath(opts.parent);
    const p = await readImage(host, parentPath, { verifyPages: false });
    parent = {
      ref: { id: p.image.meta.id, digest: p.image.digest, path: host.relativePath(host.dirname(path), parentPath) },
      pages: new Set(p.image.pages.keys()),
      modules: new Set(p.image.modules.map((m) => m.sourceHash)),
    };
  }
  const chunks: Uint8Array[] = [];
  // Chunks may be views of guest memory: they are written before any guest code runs again.
  const stats = dumpVm(vm, await Hashing.create(), (c) => chunks.push(c), {
    runtime: `${host.runtime.name} ${host.runtime.version}`,
    parent,
  });
  const out = opts.compress ? [await pipe(chunks, new CompressionStream("gzip"))] : chunks;
  try {
    host.fs.writeFileAtomic(path, out);
  } catch (e) {
    throw new SnapshotError(`Cannot write snapshot "${file}": ${(e as Error).message}`);
  }
  return stats;
}
