// `crvm inspect`: what is inside an image, without running anything.
import type { Host } from "../host/mod.ts";
import { PAGE_SIZE, type SnapshotImage } from "../snapshot/mod.ts";
import { readSnapshot } from "./restore.ts";

const kib = (n: number) => `${(n / 1024).toFixed(n < 10240 ? 1 : 0)} KiB`;
const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;

/** The image as plain JSON (bytes replaced by their sizes; pages by their ids). */
export function imageToJson(image: SnapshotImage, fileBytes: number): unknown {
  return {
    bytes: fileBytes,
    meta: image.meta,
    modules: image.modules.map(({ source, ...m }) => ({ ...m, bytes: source.length })),
    pages: { stored: image.pages.size, bytes: image.pages.size * PAGE_SIZE },
    blobs: [...image.blobs].map(([id, b]) => ({ id, bytes: b.length })),
    vm: image.vm,
  };
}

export function summary(image: SnapshotImage, fileBytes: number): string {
  const lines: string[] = [];
  const m = image.meta;
  lines.push(`snapshot: ${kib(fileBytes)}, written by crvm ${m.crvmVersion} on ${m.runtime} at ${m.createdAt}`);
  lines.push(`clock: monotonic ${(Number(BigInt(m.monotonicNs)) / 1e9).toFixed(3)} s`);
  for (const mod of image.modules) {
    lines.push(`module ${mod.id}: ${mod.name} (${kib(mod.source.length)}, sha256 ${mod.sourceHash.slice(0, 16)}…, instrumented ${mod.wasmHash.slice(0, 16)}…, pass v${mod.passVersion})`);
  }
  const referenced = image.vm.tasks.reduce((n, t) => n + t.memory.map.length, 0);
  lines.push(`pages: ${image.pages.size} stored (${mib(image.pages.size * PAGE_SIZE)}), ${referenced - image.pages.size} deduplicated`);
  for (const t of image.vm.tasks) {
    const frames = image.blobs.get(t.frames)?.length ?? 0;
    const wait = t.pending.freeze ? "frozen" : t.pending.untilNs ? "sleeping" : t.pending.fds?.length ? "waiting for fd" : "yielded";
    lines.push(`task ${t.pid}: ${JSON.stringify(t.args.join(" "))}, module ${t.moduleId}`);
    lines.push(`  memory: ${t.memory.pages} pages (${mib(t.memory.pages * PAGE_SIZE)}), ${t.memory.map.length} non-zero, ${t.memory.pages - t.memory.map.length} zero`);
    lines.push(`  stack: ${frames} bytes, in ${t.pending.call} (${wait}); ${t.globals.length} globals`);
    lines.push(`  env: ${t.env.length} variables`);
    for (const [fd, id] of t.fds) {
      const f = image.vm.files.find((x) => x.id === id);
      lines.push(`  fd ${fd}: ${f ? describeFile(f) : `missing file ${id}`}`);
    }
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
      return `host file ${f.rel} at ${f.pos} (size ${f.size})`;
    case "memfile":
      return `in-memory file (inode ${f.inode}) at ${f.pos}`;
  }
}

export async function inspectCommand(host: Host, o: { snapshot: string; json: boolean }): Promise<number> {
  const image = await readSnapshot(host, o.snapshot);
  const size = host.fs.stat(host.resolvePath(o.snapshot)).size;
  const out = o.json ? JSON.stringify(imageToJson(image, Number(size)), null, 2) + "\n" : summary(image, Number(size));
  host.stdio.write(1, new TextEncoder().encode(out));
  return 0;
}
