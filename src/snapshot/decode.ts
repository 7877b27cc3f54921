import { SnapshotError } from "../errors.ts";
import { chainCrc } from "./encode.ts";
import { HEADER_SIZE, Kind, KIND_NAMES, MAGIC, MAX_RECORD, RECORD_HEADER } from "./format.ts";
import type { Hashing } from "./hashing.ts";
import { FORMAT_VERSION, type ImageMeta, type ModuleEntry, PAGE_SIZE, type SnapshotImage, type VmRecord } from "./types.ts";

const dec = new TextDecoder("utf-8", { fatal: true });

function bytesToHex(b: Uint8Array): string {
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}

/**
 * Decodes and verifies a whole image: magic, version, every record's CRC,
 * every page's content hash, the trailer. Pages and blobs are views into
 * `bytes` (no copy). Any problem is a `SnapshotError` naming the record.
 *
 * @example
 * const image = decodeSnapshot(hashing, bytes, "app.snap");
 */
export function decodeSnapshot(hashing: Hashing, bytes: Uint8Array, name = "snapshot"): SnapshotImage {
  const fail = (msg: string): never => {
    throw new SnapshotError(`Cannot read snapshot "${name}": ${msg}`);
  };
  if (bytes.length < HEADER_SIZE || !MAGIC.every((b, i) => bytes[i] === b)) fail("not a crvm snapshot (bad magic)");
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = dv.getUint32(8, true);
  if (version !== FORMAT_VERSION) {
    fail(`format version ${version} is not supported (this crvm reads version ${FORMAT_VERSION})`);
  }
  let off = HEADER_SIZE;
  let index = 0;
  let chain = 0;
  let meta: ImageMeta | null = null;
  let vm: VmRecord | null = null;
  const modules: ModuleEntry[] = [];
  const pages = new Map<string, Uint8Array>();
  const blobs = new Map<number, Uint8Array>();
  let trailer = false;
  while (off < bytes.length) {
    if (trailer) fail(`data after the trailer at offset ${off}`);
    if (bytes.length - off < RECORD_HEADER + 4) fail(`record ${index} at offset ${off} is truncated`);
    const kind = dv.getUint16(off, true);
    const len = dv.getUint32(off + 4, true);
    const kname = KIND_NAMES[kind] ?? `unknown kind ${kind}`;
    const where = `record ${index} (${kname}) at offset ${off}`;
    if (!(kind in KIND_NAMES)) fail(`${where}: unknown record kind`);
    if (len > MAX_RECORD || len > bytes.length - off - RECORD_HEADER - 4) fail(`${where} is truncated or has a bad length (${len})`);
    const head = bytes.subarray(off, off + RECORD_HEADER);
    const payload = bytes.subarray(off + RECORD_HEADER, off + RECORD_HEADER + len);
    const crc = dv.getUint32(off + RECORD_HEADER + len, true);
    const covered = kind === Kind.Page ? [head, payload.subarray(0, 16)] : [head, payload];
    if (hashing.crc32(...covered) !== crc) fail(`${where}: checksum mismatch`);
    const json = <T>(b: Uint8Array): T => {
      try {
        return JSON.parse(dec.decode(b)) as T;
      } catch (e) {
        return fail(`${where}: bad JSON (${(e as Error).message})`);
      }
    };
    switch (kind) {
      case Kind.Meta:
        meta = json<ImageMeta>(payload);
        break;
      case Kind.Module: {
        if (len < 4) fail(`${where}: too short`);
        const jl = new DataView(payload.buffer, payload.byteOffset).getUint32(0, true);
        if (jl > len - 4) fail(`${where}: bad header length`);
        const info = json<Omit<ModuleEntry, "source">>(payload.subarray(4, 4 + jl));
        modules.push({ ...info, source: payload.subarray(4 + jl) });
        break;
      }
      case Kind.Page: {
        if (len !== 16 + PAGE_SIZE) fail(`${where}: a page record must hold 16 + 65536 bytes`);
        const id = bytesToHex(payload.subarray(0, 16));
        const content = payload.subarray(16);
        if (hashing.pageId(content) !== id) fail(`${where}: page content does not match its hash ${id}`);
        pages.set(id, content);
        break;
      }
      case Kind.Blob: {
        if (len < 4) fail(`${where}: too short`);
        blobs.set(new DataView(payload.buffer, payload.byteOffset).getUint32(0, true), payload.subarray(4));
        break;
      }
      case Kind.Vm:
        vm = json<VmRecord>(payload);
        break;
      case Kind.Trailer: {
        if (len !== 16) fail(`${where}: bad trailer length`);
        const t = new DataView(payload.buffer, payload.byteOffset, 16);
        if (t.getUint32(0, true) !== index) fail(`${where}: trailer counts ${t.getUint32(0, true)} records, found ${index}`);
        if (t.getBigUint64(4, true) !== BigInt(off)) fail(`${where}: trailer length does not match`);
        if (t.getUint32(12, true) !== chain) fail(`${where}: whole-image checksum mismatch`);
        trailer = true;
        break;
      }
    }
    chain = chainCrc(hashing, chain, crc);
    off += RECORD_HEADER + len + 4;
    index++;
  }
  if (!trailer) fail("the image is incomplete (no trailer)");
  if (meta === null) fail("no META record");
  if (vm === null) fail("no VM record");
  return { meta: meta!, modules, pages, blobs, vm: vm! };
}
