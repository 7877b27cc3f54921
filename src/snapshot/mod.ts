/**
 * The snapshot image format: encode and decode, nothing else (this folder
 * imports nothing from the rest of `src/` but the error classes), so tools
 * like `crvm inspect` need no VM.
 *
 * @example
 * const hashing = await Hashing.create();
 * const w = new SnapshotWriter(hashing, sink);
 * // ... w.meta(), w.module(), w.page(), w.blob(), w.vm(), w.finish()
 * const image = decodeSnapshot(hashing, bytes);
 */
export * from "./types.ts";
export { SnapshotWriter, type Sink } from "./encode.ts";
export { decodeSnapshot } from "./decode.ts";
export { Hashing, isZeroPage } from "./hashing.ts";
