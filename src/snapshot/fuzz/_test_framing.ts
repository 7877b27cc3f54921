// The framing of docs/snapshot-format.md, written from the spec and not
// from encode.ts: splitting an image into records, and framing records back
// with their CRCs and a trailer (hashes from hash-wasm, not the code's own).
import { createCRC32, createXXHash128 } from "hash-wasm";
import { concatBytes } from "../../bytes.ts";
import { CRC_SIZE, HEADER_SIZE, Kind, MAGIC, PAGE_ID_SIZE, RECORD_HEADER } from "../format.ts";
import { FORMAT_VERSION } from "../mod.ts";

const crc = await createCRC32();
/** CRC-32 of the parts one after the other, by hash-wasm (apart from src/snapshot/hashing.ts). */
function crc32(...parts: Uint8Array[]): number {
  crc.init();
  for (const p of parts) crc.update(p);
  const d = crc.digest("binary");
  return new DataView(d.buffer, d.byteOffset, 4).getUint32(0, false);
}

export interface Frame {
  kind: number;
  flags: number;
  payload: Uint8Array;
}

/** The records of an image, split by the framing of docs/snapshot-format.md (no checks). */
export function split(bytes: Uint8Array): { frames: Frame[]; offsets: number[] } {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const frames: Frame[] = [];
  const offsets: number[] = [];
  for (let at = HEADER_SIZE; at + RECORD_HEADER <= bytes.length;) {
    const len = dv.getUint32(at + 4, true);
    offsets.push(at);
    frames.push({ kind: dv.getUint16(at, true), flags: dv.getUint16(at + 2, true), payload: bytes.subarray(at + RECORD_HEADER, at + RECORD_HEADER + len) });
    at += RECORD_HEADER + len + CRC_SIZE;
  }
  return { frames, offsets };
}

/** XXH128 straight from hash-wasm, for `frame()`: the spec's digest, computed apart from src/snapshot/hashing.ts. */
const xxh128 = await createXXHash128();
/** In `frame()`'s input: a trailer right for the records before it. */
export const TRAILER_HERE: Frame = { kind: Kind.Trailer, flags: 0, payload: new Uint8Array(0) };

/**
 * Frames records as the spec says: header, each record with its CRC-32 (a
 * PAGE's over its header and id only), then, unless `trailer` is false, a
 * trailer whose count, length and digest are right for what precedes it.
 */
export function frame(frames: Frame[], trailer = true, version = FORMAT_VERSION): Uint8Array {
  const parts: Uint8Array[] = [];
  const head = new Uint8Array(HEADER_SIZE);
  head.set(MAGIC);
  new DataView(head.buffer).setUint32(8, version, true);
  parts.push(head);
  const d = xxh128.init();
  let length = HEADER_SIZE;
  const record = (kind: number, flags: number, payload: Uint8Array): Uint8Array => {
    const h = new Uint8Array(RECORD_HEADER);
    const dv = new DataView(h.buffer);
    dv.setUint16(0, kind, true);
    dv.setUint16(2, flags, true);
    dv.setUint32(4, payload.length, true);
    const covered = kind === Kind.Page ? payload.subarray(0, PAGE_ID_SIZE) : payload;
    const t = new Uint8Array(CRC_SIZE);
    new DataView(t.buffer).setUint32(0, crc32(h, covered), true); // hash-wasm's CRC-32, not the one the code uses
    parts.push(h, payload, t);
    length += RECORD_HEADER + payload.length + CRC_SIZE;
    return h;
  };
  let count = 0;
  const trailerRecord = () => {
    const p = new Uint8Array(28);
    const dv = new DataView(p.buffer);
    dv.setUint32(0, count, true);
    dv.setBigUint64(4, BigInt(length), true);
    p.set(d.digest("binary"), 12);
    d.init(); // only a decoder that wrongly reads on needs what follows to hash to anything
    record(Kind.Trailer, 0, p);
    count++;
  };
  for (const f of frames) {
    if (f === TRAILER_HERE) {
      trailerRecord();
      continue;
    }
    const h = record(f.kind, f.flags, f.payload);
    d.update(h);
    if (f.kind === Kind.Page) d.update(f.payload.subarray(0, PAGE_ID_SIZE));
    d.update(parts[parts.length - 1]!);
    count++;
  }
  if (trailer) trailerRecord();
  return concatBytes(parts);
}
