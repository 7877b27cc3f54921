import { SnapshotError } from "../errors.ts";
import { CRC_SIZE, HEADER_SIZE, Kind, type KindNumber, MAGIC, PAGE_ID_SIZE, RECORD_HEADER } from "./format.ts";
import { bytesToHex, type Hashing, hexToBytes } from "./hashing.ts";
import { FORMAT_VERSION, type ImageMeta, type ModuleEntry, PAGE_SIZE, type VmRecord } from "./types.ts";

const enc = new TextEncoder();

/** Receives the image front to back. A chunk may be a view of guest memory: consume it before returning. */
export type Sink = (chunk: Uint8Array) => void;

/** What a writer wrote: bytes and pages by where they went. */
export interface WriteStats {
  bytes: number;
  records: number;
  /** Pages stored in this image. */
  pagesStored: number;
  /** Page references that named a page already stored in this image. */
  pagesDeduplicated: number;
  /** Page references that named a page of the parent chain (not stored). */
  pagesInherited: number;
}

/**
 * Writes an image record by record to a sink, never seeking back. Pages are
 * stored once per image; with `inherited` (the page ids of a parent chain),
 * pages the parent has are not stored at all (an incremental image).
 *
 * @example
 * const w = new SnapshotWriter(hashing, (c) => chunks.push(c.slice()));
 * w.meta(meta); w.module(m); w.page(id, bytes); w.vm(vm); const digest = w.finish();
 */
export class SnapshotWriter {
  readonly #pages = new Set<string>();
  #finished = false;
  readonly stats: WriteStats = { bytes: 0, records: 0, pagesStored: 0, pagesDeduplicated: 0, pagesInherited: 0 };

  constructor(
    private readonly hashing: Hashing,
    private readonly sink: Sink,
    private readonly inherited: ReadonlySet<string> = new Set(),
  ) {
    const h = new Uint8Array(HEADER_SIZE);
    h.set(MAGIC);
    new DataView(h.buffer).setUint32(8, FORMAT_VERSION, true);
    hashing.digest.init();
    this.#emit(h);
  }

  #emit(chunk: Uint8Array): void {
    this.stats.bytes += chunk.length;
    this.sink(chunk);
  }

  /** The digest is final once the trailer is out, and nothing may follow it: a clear error, not the hasher's. */
  #open(): void {
    if (this.#finished) throw new SnapshotError("Cannot write snapshot: a record after the trailer");
  }

  #recordHeader(kind: KindNumber, length: number): Uint8Array {
    this.#open();
    const h = new Uint8Array(RECORD_HEADER);
    const dv = new DataView(h.buffer);
    dv.setUint16(0, kind, true);
    dv.setUint32(4, length, true);
    return h;
  }

  /** Ends a record: its CRC, which also feeds the image digest (with the header it covers). */
  #tail(head: Uint8Array, crc: number, pageId?: Uint8Array): void {
    const t = new Uint8Array(CRC_SIZE);
    new DataView(t.buffer).setUint32(0, crc, true);
    this.#emit(t);
    this.hashing.digest.update(head);
    if (pageId) this.hashing.digest.update(pageId);
    this.hashing.digest.update(t);
    this.stats.records++;
  }

  #record(kind: KindNumber, ...parts: Uint8Array[]): void {
    const len = parts.reduce((n, p) => n + p.length, 0);
    const h = this.#recordHeader(kind, len);
    this.#emit(h);
    for (const p of parts) this.#emit(p);
    this.#tail(h, this.hashing.crc32(h, ...parts));
  }

  #json(kind: KindNumber, value: unknown): void {
    this.#record(kind, enc.encode(JSON.stringify(value)));
  }

  meta(meta: ImageMeta): void {
    this.#json(Kind.Meta, meta);
  }

  module(m: ModuleEntry): void {
    const { source, inherited: _, ...info } = m;
    const json = enc.encode(JSON.stringify(info));
    const len = new Uint8Array(4);
    new DataView(len.buffer).setUint32(0, json.length, true);
    this.#record(Kind.Module, len, json, source);
  }

  /** Names a module whose bytes the parent chain holds (an incremental image does not repeat them). */
  moduleRef(info: Omit<ModuleEntry, "source" | "inherited">): void {
    this.#json(Kind.ModuleRef, info);
  }

  /**
   * References a page: stores it unless this image or the parent chain has
   * it already. The CRC covers the record header and the id; the content is
   * covered by the id itself (a 128-bit hash the decoder recomputes), so a
   * page is hashed once.
   */
  /** Ids of the pages stored in this image so far. */
  get storedPages(): ReadonlySet<string> {
    return this.#pages;
  }

  page(id: string, bytes: Uint8Array): void {
    this.#open();
    if (this.#pages.has(id)) {
      this.stats.pagesDeduplicated++;
      return;
    }
    if (this.inherited.has(id)) {
      this.stats.pagesInherited++;
      return;
    }
    if (bytes.length !== PAGE_SIZE) throw new RangeError("page must be 64 KiB");
    this.#pages.add(id);
    const h = this.#recordHeader(Kind.Page, PAGE_ID_SIZE + PAGE_SIZE);
    const idBytes = hexToBytes(id);
    this.#emit(h);
    this.#emit(idBytes);
    this.#emit(bytes);
    this.stats.pagesStored++;
    this.#tail(h, this.hashing.crc32(h, idBytes), idBytes);
  }

  blob(id: number, bytes: Uint8Array): void {
    const idb = new Uint8Array(4);
    new DataView(idb.buffer).setUint32(0, id, true);
    this.#record(Kind.Blob, idb, bytes);
  }

  vm(vm: VmRecord): void {
    this.#json(Kind.Vm, vm);
  }

  /** Writes the trailer (record count, length before it, digest) and returns the digest as hex. */
  finish(): string {
    this.#open();
    const count = this.stats.records;
    const length = this.stats.bytes;
    const digest = this.hashing.digest.digest("binary");
    const p = new Uint8Array(4 + 8 + digest.length);
    const dv = new DataView(p.buffer);
    dv.setUint32(0, count, true);
    dv.setBigUint64(4, BigInt(length), true);
    p.set(digest, 12);
    const h = this.#recordHeader(Kind.Trailer, p.length);
    this.#finished = true;
    this.#emit(h);
    this.#emit(p);
    const t = new Uint8Array(CRC_SIZE);
    new DataView(t.buffer).setUint32(0, this.hashing.crc32(h, p), true);
    this.#emit(t);
    this.stats.records++;
    return bytesToHex(digest);
  }
}
