import { FORMAT_VERSION, type ImageMeta, type ModuleEntry, PAGE_SIZE, type VmRecord } from "./types.ts";
import { HEADER_SIZE, Kind, MAGIC, RECORD_HEADER } from "./format.ts";
import type { Hashing } from "./hashing.ts";

const enc = new TextEncoder();

/** Receives the image front to back. A chunk may be a view of guest memory: consume it before returning. */
export type Sink = (chunk: Uint8Array) => void;

/**
 * Writes an image record by record to a sink, never seeking back.
 *
 * @example
 * const w = new SnapshotWriter(hashing, (c) => chunks.push(c.slice()));
 * w.meta(meta); w.module(m); w.page(id, bytes); w.vm(vm); w.finish();
 */
export class SnapshotWriter {
  #records = 0;
  #bytes = 0;
  #chain = 0;
  readonly #pages = new Set<string>();
  /** Bytes of page content written (after dedup). */
  pageBytes = 0;

  constructor(private readonly hashing: Hashing, private readonly sink: Sink) {
    const h = new Uint8Array(HEADER_SIZE);
    h.set(MAGIC);
    new DataView(h.buffer).setUint32(8, FORMAT_VERSION, true);
    this.#emit(h);
  }

  get bytesWritten(): number {
    return this.#bytes;
  }

  #emit(chunk: Uint8Array): void {
    this.#bytes += chunk.length;
    this.sink(chunk);
  }

  #recordHeader(kind: Kind, length: number): Uint8Array {
    const h = new Uint8Array(RECORD_HEADER);
    const dv = new DataView(h.buffer);
    dv.setUint16(0, kind, true);
    dv.setUint32(4, length, true);
    return h;
  }

  #tail(crc: number): void {
    const t = new Uint8Array(4);
    new DataView(t.buffer).setUint32(0, crc, true);
    this.#emit(t);
    this.#chain = chainCrc(this.hashing, this.#chain, crc);
    this.#records++;
  }

  #record(kind: Kind, ...parts: Uint8Array[]): void {
    const len = parts.reduce((n, p) => n + p.length, 0);
    const h = this.#recordHeader(kind, len);
    this.#emit(h);
    for (const p of parts) this.#emit(p);
    this.#tail(this.hashing.crc32(h, ...parts));
  }

  #json(kind: Kind, value: unknown): void {
    this.#record(kind, enc.encode(JSON.stringify(value)));
  }

  meta(meta: ImageMeta): void {
    this.#json(Kind.Meta, meta);
  }

  module(m: ModuleEntry): void {
    const { source, ...info } = m;
    const json = enc.encode(JSON.stringify(info));
    const len = new Uint8Array(4);
    new DataView(len.buffer).setUint32(0, json.length, true);
    this.#record(Kind.Module, len, json, source);
  }

  /**
   * Writes a page unless a page with this id was already written. The CRC
   * covers the record header and the id; the content is covered by the id
   * itself (a 128-bit hash the decoder recomputes), so a page is hashed once.
   */
  page(id: string, bytes: Uint8Array): void {
    if (this.#pages.has(id)) return;
    if (bytes.length !== PAGE_SIZE) throw new RangeError("page must be 64 KiB");
    this.#pages.add(id);
    const h = this.#recordHeader(Kind.Page, 16 + PAGE_SIZE);
    const idBytes = hexToBytes(id);
    this.#emit(h);
    this.#emit(idBytes);
    this.#emit(bytes);
    this.pageBytes += PAGE_SIZE;
    this.#tail(this.hashing.crc32(h, idBytes));
  }

  blob(id: number, bytes: Uint8Array): void {
    const idb = new Uint8Array(4);
    new DataView(idb.buffer).setUint32(0, id, true);
    this.#record(Kind.Blob, idb, bytes);
  }

  vm(vm: VmRecord): void {
    this.#json(Kind.Vm, vm);
  }

  /** Writes the trailer: record count, length before the trailer, chained CRC of all records. */
  finish(): void {
    const p = new Uint8Array(16);
    const dv = new DataView(p.buffer);
    dv.setUint32(0, this.#records, true);
    dv.setBigUint64(4, BigInt(this.#bytes), true);
    dv.setUint32(12, this.#chain, true);
    this.#record(Kind.Trailer, p);
  }
}

/** The trailer's whole-image checksum: a CRC-32 chained over every record's CRC. */
export function chainCrc(hashing: Hashing, prev: number, crc: number): number {
  const b = new Uint8Array(8);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, prev, true);
  dv.setUint32(4, crc, true);
  return hashing.crc32(b);
}

export function hexToBytes(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}
