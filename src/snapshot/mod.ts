/**
 * The snapshot image format (docs/snapshot-format.md): encode and decode,
 * nothing else. This folder imports nothing from the rest of `src/` but the
 * error classes, so tools like `crvm inspect` need no VM.
 *
 * @example
 * const w = new SnapshotWriter(await Hashing.create(), sink);
 * // ... w.meta(), w.module(), w.page(), w.blob(), w.vm(), w.finish()
 * const image = await decodeSnapshot(bytes, { name: "app.snap" });
 */
export * from "./types.ts";
export { type Sink, SnapshotWriter, type WriteStats } from "./encode.ts";
export { decodeSnapshot, decodeSnapshotStream } from "./decode.ts";
export { type RawRecord, type ReaderOptions, SnapshotReader } from "./reader.ts";
export { bytesToHex, Hashing, hexToBytes, isZeroPage } from "./hashing.ts";
export { KIND_NAMES, LIMITS } from "./format.ts";
