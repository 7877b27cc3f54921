// Reading an image front to back, from one buffer or from chunks as they
// arrive (a pipe, a socket, an HTTP body). Each record is checked as soon as
// it is complete; lengths are checked against the limits before anything is
// allocated; a bad image fails with the record it failed at.
import { SnapshotError } from "../errors.ts";
import { CRC_SIZE, DIGEST_SIZE, HEADER_SIZE, Kind, KIND_NAMES, LIMITS, MAGIC, PAGE_ID_SIZE, RECORD_HEADER, TRAILER_SIZE } from "./format.ts";
import { bytesToHex, type Hashing } from "./hashing.ts";
import { checkVm, parseMeta, parseModuleInfo } from "./schema.ts";
import { FORMAT_VERSION, type ImageMeta, type ModuleEntry, PAGE_SIZE, type SnapshotImage, type VmRecord } from "./types.ts";

// JSON payloads are UTF-8 without a byte order mark: kept (ignoreBOM), a BOM is not JSON and is refused,
// so one record has one encoding.
const dec = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** One record as read, for tools that show or re-encode images record by record. */
export type RawRecord =
  | { kind: "META"; offset: number; meta: ImageMeta }
  | { kind: "MODULE"; offset: number; info: Omit<ModuleEntry, "source">; source: Uint8Array }
  | { kind: "MODULE_REF"; offset: number; info: Omit<ModuleEntry, "source"> }
  | { kind: "PAGE"; offset: number; id: string; data: Uint8Array }
  | { kind: "BLOB"; offset: number; id: number; data: Uint8Array }
  | { kind: "VM"; offset: number; vm: VmRecord }
  | { kind: "TRAILER"; offset: number; records: number; length: number; digest: string };

export interface ReaderOptions {
  /** Name for messages (a file path). */
  name: string;
  /** Recompute every page's hash (default true; the page-id scan of a parent may skip it). */
  verifyPages?: boolean;
  /** Called with every record as it is read. */
  onRecord?: (r: RawRecord) => void;
  /** Whether a page id not stored in this image is available elsewhere (a parent chain). */
  inherited?: (id: string) => boolean;
}

/**
 * An incremental decoder: `push()` chunks in order, then `end()`.
 *
 * @example
 * const r = new SnapshotReader(await Hashing.create(), { name: "a.snap" });
 * for await (const chunk of body) r.push(chunk);
 * const image = r.end();
 */
export class SnapshotReader {
  #offset = 0;
  #index = 0;
  #header: Uint8Array | null = null;
  #headerFill = 0;
  /** The record being assembled when it spans chunks. */
  #partial: Uint8Array | null = null;
  #partialFill = 0;
  #recordHead = new Uint8Array(RECORD_HEADER);
  #recordHeadFill = 0;
  #meta: ImageMeta | null = null;
  #vm: unknown = null;
  #vmWhere = "";
  #trailer = false;
  readonly #modules: ModuleEntry[] = [];
  readonly #moduleIds = new Set<number>();
  readonly #pages = new Map<string, Uint8Array>();
  readonly #blobs = new Map<number, Uint8Array>();
  #digestHex = "";

  constructor(private readonly hashing: Hashing, private readonly opts: ReaderOptions) {
    hashing.digest.init();
  }

  #fail(msg: string): never {
    throw new SnapshotError(`Cannot read snapshot "${this.opts.name}": ${msg}`);
  }

  /** Feeds the next bytes of the image. Views of `chunk` may be kept: do not reuse it. */
  push(chunk: Uint8Array): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.#header === null || this.#headerFill < HEADER_SIZE) at += this.#readHeader(chunk, at);
      else at += this.#readRecord(chunk, at);
    }
  }

  #readHeader(chunk: Uint8Array, at: number): number {
    this.#header ??= new Uint8Array(HEADER_SIZE);
    const n = Math.min(HEADER_SIZE - this.#headerFill, chunk.length - at);
    this.#header.set(chunk.subarray(at, at + n), this.#headerFill);
    this.#headerFill += n;
    this.#offset += n;
    if (this.#headerFill === HEADER_SIZE) {
      if (!MAGIC.every((b, i) => this.#header![i] === b)) this.#fail("not a crvm snapshot (bad magic)");
      const dv = new DataView(this.#header.buffer);
      const version = dv.getUint32(8, true);
      if (version !== FORMAT_VERSION) {
        this.#fail(`format version ${version} is not supported (this crvm reads version ${FORMAT_VERSION})`);
      }
      if (dv.getUint32(12, true) !== 0) this.#fail("unknown header flags");
    }
    return n;
  }

  #readRecord(chunk: Uint8Array, at: number): number {
    if (this.#trailer) this.#fail(`data after the trailer at offset ${this.#offset}`);
    const start = at;
    // The 8-byte record header first, so the length is known (and checked) before any allocation.
    if (this.#recordHeadFill < RECORD_HEADER) {
      const n = Math.min(RECORD_HEADER - this.#recordHeadFill, chunk.length - at);
      this.#recordHead.set(chunk.subarray(at, at + n), this.#recordHeadFill);
      this.#recordHeadFill += n;
      at += n;
      if (this.#recordHeadFill < RECORD_HEADER) return at - start;
      this.#checkHead();
    }
    const len = new DataView(this.#recordHead.buffer).getUint32(4, true);
    const need = len + CRC_SIZE;
    if (this.#partial === null && chunk.length - at >= need) {
      // The whole record is in this chunk: no copy.
      this.#record(chunk.subarray(at, at + len), new DataView(chunk.buffer, chunk.byteOffset + at + len, 4).getUint32(0, true));
      return at + need - start;
    }
    // Grow with the data actually received (doubling, so a record arriving in small chunks is copied
    // O(1) times per byte): a lying length cannot make us allocate more than twice what arrived.
    const n = Math.min(need - this.#partialFill, chunk.length - at);
    const want = this.#partialFill + n;
    if (n === 0) return at - start;
    if (this.#partial === null || this.#partial.length < want) {
      const grown = new Uint8Array(Math.min(need, Math.max(want, (this.#partial?.length ?? 0) * 2)));
      if (this.#partial) grown.set(this.#partial.subarray(0, this.#partialFill));
      this.#partial = grown;
    }
    this.#partial.set(chunk.subarray(at, at + n), this.#partialFill);
    this.#partialFill += n;
    at += n;
    if (this.#partialFill === need) {
      const p = this.#partial;
      this.#partial = null;
      this.#partialFill = 0;
      this.#record(p.subarray(0, len), new DataView(p.buffer, len, 4).getUint32(0, true));
    }
    return at - start;
  }

  #where(): string {
    const kind = new DataView(this.#recordHead.buffer).getUint16(0, true);
    return `record ${this.#index} (${KIND_NAMES[kind] ?? `kind ${kind}`}) at offset ${this.#offset}`;
  }

  #checkHead(): void {
    const dv = new DataView(this.#recordHead.buffer);
    const kind = dv.getUint16(0, true);
    const len = dv.getUint32(4, true);
    const w = this.#where();
    if (!(kind in KIND_NAMES)) this.#fail(`${w}: unknown record kind`);
    if (dv.getUint16(2, true) !== 0) this.#fail(`${w}: unknown record flags`);
    if (this.#index >= LIMITS.records) this.#fail(`${w}: more than ${LIMITS.records} records`);
    const max = kind === Kind.Page ? PAGE_ID_SIZE + PAGE_SIZE
      : kind === Kind.Trailer ? TRAILER_SIZE
      : kind === Kind.Meta || kind === Kind.Vm || kind === Kind.ModuleRef ? LIMITS.json
      : LIMITS.record;
    if (len > max || ((kind === Kind.Page || kind === Kind.Trailer) && len !== max)) this.#fail(`${w}: bad length ${len}`);
    if (this.#index === 0 && kind !== Kind.Meta) this.#fail(`${w}: the first record must be META`);
  }

  #json(payload: Uint8Array, w: string): unknown {
    try {
      return JSON.parse(dec.decode(payload));
    } catch (e) {
      return this.#fail(`${w}: bad JSON (${(e as Error).message})`);
    }
  }

  #record(payload: Uint8Array, crc: number): void {
    const head = this.#recordHead;
    const kind = new DataView(head.buffer).getUint16(0, true);
    const w = this.#where();
    const offset = this.#offset;
    const isPage = kind === Kind.Page;
    if (this.hashing.crc32(head, isPage ? payload.subarray(0, PAGE_ID_SIZE) : payload) !== crc) this.#fail(`${w}: checksum mismatch`);
    if (this.#vm !== null && kind !== Kind.Trailer) this.#fail(`${w}: only the trailer may follow the VM record`);
    const emit = this.opts.onRecord;
    switch (kind) {
      case Kind.Meta: {
        if (this.#meta) this.#fail(`${w}: a second META record`);
        const m = parseMeta(this.#json(payload, w));
        if (!m.ok) this.#fail(`${w}: ${m.error}`);
        this.#meta = m.value;
        emit?.({ kind: "META", offset, meta: m.value });
        break;
      }
      case Kind.Module: {
        if (payload.length < 4) this.#fail(`${w}: too short`);
        const jl = new DataView(payload.buffer, payload.byteOffset).getUint32(0, true);
        if (jl > payload.length - 4 || jl > LIMITS.json) this.#fail(`${w}: bad header length ${jl}`);
        const info = parseModuleInfo(this.#json(payload.subarray(4, 4 + jl), w));
        if (!info.ok) this.#fail(`${w}: ${info.error}`);
        this.#addModule(info.value.id, w);
        const source = payload.subarray(4 + jl);
        this.#modules.push({ ...info.value, source });
        emit?.({ kind: "MODULE", offset, info: info.value, source });
        break;
      }
      case Kind.ModuleRef: {
        if (!this.#meta?.parent) this.#fail(`${w}: a module reference in an image without a parent`);
        const info = parseModuleInfo(this.#json(payload, w));
        if (!info.ok) this.#fail(`${w}: ${info.error}`);
        this.#addModule(info.value.id, w);
        this.#modules.push({ ...info.value, source: new Uint8Array(0), inherited: true });
        emit?.({ kind: "MODULE_REF", offset, info: info.value });
        break;
      }
      case Kind.Page: {
        const id = bytesToHex(payload.subarray(0, PAGE_ID_SIZE));
        const data = payload.subarray(PAGE_ID_SIZE);
        if (this.#pages.has(id)) this.#fail(`${w}: page ${id} is stored twice`);
        if (this.opts.verifyPages !== false && this.hashing.pageId(data) !== id) this.#fail(`${w}: page content does not match its hash ${id}`);
        this.#pages.set(id, data);
        this.hashing.digest.update(head);
        this.hashing.digest.update(payload.subarray(0, PAGE_ID_SIZE));
        emit?.({ kind: "PAGE", offset, id, data });
        break;
      }
      case Kind.Blob: {
        if (payload.length < 4) this.#fail(`${w}: too short`);
        const id = new DataView(payload.buffer, payload.byteOffset).getUint32(0, true);
        if (this.#blobs.has(id)) this.#fail(`${w}: blob ${id} appears twice`);
        const data = payload.subarray(4);
        this.#blobs.set(id, data);
        emit?.({ kind: "BLOB", offset, id, data });
        break;
      }
      case Kind.Vm:
        this.#vm = this.#json(payload, w);
        this.#vmWhere = w;
        break;
      case Kind.Trailer: {
        if (this.#vm === null) this.#fail(`${w}: trailer before the VM record`);
        const t = new DataView(payload.buffer, payload.byteOffset, TRAILER_SIZE);
        const digest = this.hashing.digest.digest("binary");
        if (t.getUint32(0, true) !== this.#index) this.#fail(`${w}: trailer counts ${t.getUint32(0, true)} records, found ${this.#index}`);
        if (t.getBigUint64(4, true) !== BigInt(offset)) this.#fail(`${w}: trailer length does not match`);
        if (!digest.every((b, i) => b === payload[12 + i])) this.#fail(`${w}: image digest mismatch`);
        this.#digestHex = bytesToHex(digest.subarray(0, DIGEST_SIZE));
        this.#trailer = true;
        break;
      }
    }
    if (kind !== Kind.Page && kind !== Kind.Trailer) {
      this.hashing.digest.update(head);
    }
    if (kind !== Kind.Trailer) {
      const t = new Uint8Array(CRC_SIZE);
      new DataView(t.buffer).setUint32(0, crc, true);
      this.hashing.digest.update(t);
    }
    if (kind === Kind.Vm) this.#checkVm(offset);
    if (kind === Kind.Trailer) {
      emit?.({ kind: "TRAILER", offset, records: this.#index, length: offset, digest: this.#digestHex });
    }
    this.#offset += RECORD_HEADER + payload.length + CRC_SIZE;
    this.#recordHeadFill = 0;
    this.#index++;
  }

  /** A set, not a scan of the modules: an image of many small MODULE_REF records must not take quadratic time. */
  #addModule(id: number, w: string): void {
    if (this.#moduleIds.has(id)) this.#fail(`${w}: module id ${id} appears twice`);
    this.#moduleIds.add(id);
  }

  #checkVm(offset: number): void {
    const inherited = this.opts.inherited;
    const r = checkVm(this.#vm, {
      modules: this.#moduleIds,
      blobs: new Map([...this.#blobs].map(([id, b]) => [id, b.length])),
      pageKnown: (id) => this.#pages.has(id) || (this.#meta?.parent !== undefined && (inherited ? inherited(id) : true)),
    });
    if (!r.ok) this.#fail(`${this.#vmWhere}: ${r.error}`);
    this.#vm = r.value;
    this.opts.onRecord?.({ kind: "VM", offset, vm: r.value });
  }

  /** Ends the input: the image, or an error if it is incomplete. */
  end(): SnapshotImage {
    if (this.#headerFill < HEADER_SIZE) this.#fail(this.#offset === 0 ? "the file is empty" : "not a crvm snapshot (truncated header)");
    if (!this.#trailer) {
      this.#fail(this.#recordHeadFill > 0 ? `${this.#where()} is truncated` : "the image is incomplete (no trailer)");
    }
    return {
      meta: this.#meta!,
      modules: this.#modules,
      pages: this.#pages,
      blobs: this.#blobs,
      vm: this.#vm as VmRecord,
      digest: this.#digestHex,
      bytes: this.#offset,
    };
  }
}
