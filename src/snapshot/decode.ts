import { Hashing } from "./hashing.ts";
import { type ReaderOptions, SnapshotReader } from "./reader.ts";
import type { SnapshotImage } from "./types.ts";

/**
 * Decodes and verifies a whole image held in memory: every record's CRC,
 * every page's content hash, the VM record's shape and references, the
 * trailer. Pages and blobs are views into `bytes` (no copy). Any problem is
 * a `SnapshotError` naming the record.
 *
 * @example
 * const image = await decodeSnapshot(bytes, { name: "app.snap" });
 */
export async function decodeSnapshot(bytes: Uint8Array, opts: ReaderOptions): Promise<SnapshotImage> {
  const r = new SnapshotReader(await Hashing.create(), opts);
  r.push(bytes);
  return r.end();
}

/** The same, for an image arriving in chunks (a stream). */
export async function decodeSnapshotStream(chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, opts: ReaderOptions): Promise<SnapshotImage> {
  const r = new SnapshotReader(await Hashing.create(), opts);
  for await (const c of chunks) r.push(c);
  return r.end();
}
