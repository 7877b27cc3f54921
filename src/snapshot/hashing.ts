import { createXXHash128, type IHasher } from "hash-wasm";

const PAGE = 65536;

/**
 * The hash functions the format uses: xxh128 (XXH3-128, seed 0) for page
 * ids and the image digest, CRC-32 for records.
 *
 * Page ids come from crvm's own SIMD build of XXH3-128 for 64 KiB inputs
 * (below), 2–3× faster than hash-wasm's portable one and able to hash a
 * page where it lies in a guest's memory; the ids are identical (the unit
 * tests compare them with hash-wasm's). Without wasm SIMD it falls back to
 * hash-wasm.
 */
export class Hashing {
  /** The image digest (xxh128 over record headers, page ids and CRCs), fed in small pieces. */
  readonly digest: Digest;

  private constructor(private readonly pages: PageHasher, digest: IHasher) {
    this.digest = new Digest(digest);
  }

  /**
   * A set of hashers for one image at a time (a writer or a reader uses
   * `digest` throughout). Costs one wasm memory (the digest's) up front and
   * one more at the first `pageId`: on Bun every new wasm memory costs a
   * garbage collection, so keep a Hashing rather than making one per image
   * where that matters.
   */
  static async create(): Promise<Hashing> {
    return new Hashing(await PageHasher.create(), await createXXHash128());
  }

  /** 128-bit content id of a 64 KiB page, as 32 hex digits. */
  pageId(page: Uint8Array): string {
    return this.pages.id(page);
  }

  /**
   * Zero-page detection and page ids straight from a wasm memory, without
   * copying a page out of it (checkpoint/memory.ts walks a frozen guest's
   * memory with it). Valid until the memory grows.
   *
   * @example
   * const scan = hashing.scanMemory(task.memory);
   * for (let p = scan.nextNonZero(0); p < scan.pages; p = scan.nextNonZero(p + 1)) use(p, scan.pageId(p));
   */
  scanMemory(memory: WebAssembly.Memory): MemoryScanner {
    return this.pages.scanner(memory);
  }

  /** CRC-32 (IEEE, as zlib) of the parts, in order. */
  crc32(...parts: Uint8Array[]): number {
    let c = 0xffffffff;
    for (const p of parts) c = crc32Update(c, p);
    return (c ^ 0xffffffff) >>> 0;
  }
}

/**
 * CRC-32 in JavaScript, 8 bytes per step (slicing-by-8): ~1–2 GB/s, and no
 * call into wasm for the 24 bytes of a page record.
 */
function crc32Update(crc: number, p: Uint8Array): number {
  const t = CRC_TABLES;
  let c = crc;
  let i = 0;
  const n = p.length;
  for (; i + 8 <= n; i += 8) {
    const a = c ^ (p[i]! | (p[i + 1]! << 8) | (p[i + 2]! << 16) | (p[i + 3]! << 24));
    c = t[7 * 256 + (a & 0xff)]! ^ t[6 * 256 + ((a >>> 8) & 0xff)]! ^ t[5 * 256 + ((a >>> 16) & 0xff)]! ^ t[4 * 256 + (a >>> 24)]! ^
      t[3 * 256 + p[i + 4]!]! ^ t[2 * 256 + p[i + 5]!]! ^ t[256 + p[i + 6]!]! ^ t[p[i + 7]!]!;
  }
  for (; i < n; i++) c = t[(c ^ p[i]!) & 0xff]! ^ (c >>> 8);
  return c;
}

/**
 * A streaming hash that gathers the small pieces it is fed (a record
 * header, a page id, a CRC: 28 bytes per page) and hands them to the
 * hasher in 64 KiB batches; the result is the same as feeding them one by
 * one, without a call into wasm per piece.
 */
export class Digest {
  readonly #buf = new Uint8Array(65536);
  #fill = 0;

  constructor(private readonly hasher: IHasher) {}

  init(): this {
    this.#fill = 0;
    this.hasher.init();
    return this;
  }

  update(data: Uint8Array): this {
    if (this.#fill + data.length > this.#buf.length) this.#flush();
    if (data.length > this.#buf.length) this.hasher.update(data);
    else {
      this.#buf.set(data, this.#fill);
      this.#fill += data.length;
    }
    return this;
  }

  digest(outputType: "binary"): Uint8Array;
  digest(outputType?: "hex"): string;
  digest(outputType?: "binary" | "hex"): Uint8Array | string {
    this.#flush();
    return outputType === "binary" ? this.hasher.digest("binary") : this.hasher.digest("hex");
  }

  #flush(): void {
    if (this.#fill > 0) this.hasher.update(this.#buf.subarray(0, this.#fill));
    this.#fill = 0;
  }
}

/** Pages of one wasm memory: which are all zero, and their ids. */
export interface MemoryScanner {
  /** Pages in the memory when the scanner was made. */
  readonly pages: number;
  /** The first page at or after `page` that is not all zero, or `pages` if none is. */
  nextNonZero(page: number): number;
  /** The id of page `page` (as `Hashing.pageId` of its bytes). */
  pageId(page: number): string;
}

/**
 * Whether a 64 KiB page is all zeros. Exact, word-wise with 8 words per
 * step, stopping at the first non-zero step. (A wasm memory is scanned
 * faster, in place and with SIMD, by `Hashing.scanMemory`.)
 */
export function isZeroPage(page: Uint8Array): boolean {
  if (page.byteOffset % 4 !== 0 || page.byteLength % 32 !== 0) {
    for (let i = 0; i < page.length; i++) if (page[i] !== 0) return false;
    return true;
  }
  // Int32 words, never Float64 ones: -0.0 === 0 would call a page with a sign bit set zero.
  const w = new Int32Array(page.buffer, page.byteOffset, page.byteLength >> 2);
  for (let i = 0; i < w.length; i += 8) {
    if ((w[i]! | w[i + 1]! | w[i + 2]! | w[i + 3]! | w[i + 4]! | w[i + 5]! | w[i + 6]! | w[i + 7]!) !== 0) return false;
  }
  return true;
}

/** Lower-case hex of the bytes (one table lookup per byte: every page record goes through here). */
export function bytesToHex(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i++) s += HEX[b[i]!];
  return s;
}

/** The bytes of a hex string (as many as it has digit pairs; a non-hex digit reads as 0). */
export function hexToBytes(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length >> 1);
  for (let i = 0; i < out.length; i++) out[i] = (nibble(hex.charCodeAt(2 * i)) << 4) | nibble(hex.charCodeAt(2 * i + 1));
  return out;
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));
/** 0-9, a-f, A-F; anything else 0. */
const nibble = (c: number) => (c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : 0);

// ---------------------------------------------------------------- page hasher

interface PageHashExports {
  /** 1 if the 64 KiB at `addr` are all zero. */
  zero(addr: number): number;
  /** The first page in [page, end) that is not all zero, or `end`. */
  next(page: number, end: number): number;
  /** XXH3-128 of the 64 KiB at `addr`, left in h0..h3 (canonical order: high64 then low64, big-endian words). */
  hash(addr: number): void;
  h0: WebAssembly.Global;
  h1: WebAssembly.Global;
  h2: WebAssembly.Global;
  h3: WebAssembly.Global;
}

/** CRC-32 (reflected, polynomial 0xEDB88320): table k maps a byte k positions before the end of an 8-byte step. */
const CRC_TABLES = (() => {
  const t = new Int32Array(8 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  for (let n = 0; n < 256; n++) for (let k = 1; k < 8; k++) t[k * 256 + n] = t[(k - 1) * 256 + n]! >>> 8 ^ t[t[(k - 1) * 256 + n]! & 0xff]!;
  return t;
})();

const hex8 = (g: WebAssembly.Global) => ((g.value as number) >>> 0).toString(16).padStart(8, "0");

/** Page ids by the SIMD module (or hash-wasm where the runtime has no wasm SIMD). */
class PageHasher {
  /** Instance over a one-page memory of its own, for pages that are not in a wasm memory; made at the first use. */
  #scratch: { ex: PageHashExports; bytes: Uint8Array } | null = null;

  private constructor(
    private readonly module: WebAssembly.Module | null,
    private readonly fallback: IHasher | null,
  ) {}

  static async create(): Promise<PageHasher> {
    const module = await PAGE_HASH_MODULE;
    return module === null ? new PageHasher(null, await createXXHash128()) : new PageHasher(module, null);
  }

  id(page: Uint8Array): string {
    if (page.length !== PAGE) throw new RangeError(`a page id is the hash of exactly ${PAGE} bytes, not ${page.length}`);
    if (this.module === null) return this.fallback!.init().update(page).digest("hex");
    if (this.#scratch === null) {
      const memory = new WebAssembly.Memory({ initial: 1, maximum: 1 });
      const ex = new WebAssembly.Instance(this.module, { m: { memory } }).exports as unknown as PageHashExports;
      this.#scratch = { ex, bytes: new Uint8Array(memory.buffer) };
    }
    this.#scratch.bytes.set(page);
    return this.read(this.#scratch.ex, 0);
  }

  private read(ex: PageHashExports, addr: number): string {
    ex.hash(addr);
    return hex8(ex.h0) + hex8(ex.h1) + hex8(ex.h2) + hex8(ex.h3);
  }

  scanner(memory: WebAssembly.Memory): MemoryScanner {
    const pages = memory.buffer.byteLength / PAGE;
    if (this.module === null) {
      const bytes = new Uint8Array(memory.buffer);
      const view = (p: number) => bytes.subarray(p * PAGE, (p + 1) * PAGE);
      return {
        pages,
        nextNonZero: (p) => {
          while (p < pages && isZeroPage(view(p))) p++;
          return p;
        },
        pageId: (p) => this.fallback!.init().update(view(p)).digest("hex"),
      };
    }
    // The module imports the memory it works on: instantiating it over the guest's memory lets it
    // read pages in place. It declares no data segments, so instantiation writes nothing there.
    const ex = new WebAssembly.Instance(this.module, { m: { memory } }).exports as unknown as PageHashExports;
    return {
      pages,
      // Addresses at or above 2^31 reach wasm as negative i32s: the same bits, the same unsigned address.
      nextNonZero: (p) => (p >= pages ? pages : ex.next(p, pages)),
      pageId: (p) => this.read(ex, p * PAGE),
    };
  }
}

// ---------------------------------------------------------------- the wasm module
//
// XXH3-128 of exactly 64 KiB with the default secret and seed 0, as in
// xxhash.h 0.8 (XXH3_hashLong_128b with the SSE2 kernel's arithmetic): 8
// 64-bit accumulators in four v128 values, 64 blocks of 16 stripes (the last
// block 15 stripes and the final stripe), a scramble after each full block,
// then two merges. The module is emitted here rather than shipped as a
// binary so that it can be read and checked; it imports its memory
// ("m" "memory") so it can work in place on a guest's memory.
//
// Per 16 bytes of input: load, xor with the secret, add the lane-swapped
// input to the accumulator, and add lo32 × hi32 of the keyed input
// (i64x2.extmul_low_i32x4_u of two lane shuffles: wasm has no pmuludq). The
// secret windows live in v128 locals; inlining them as constants was no
// faster on V8 11.3 / JSC and slower on V8 15.

const SECRET = new Uint8Array([
  0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe, 0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21, 0xad, 0x1c,
  0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb, 0x72, 0x40, 0xa4, 0xa4, 0xb7, 0xb3, 0x67, 0x1f,
  0xcb, 0x79, 0xe6, 0x4e, 0xcc, 0xc0, 0xe5, 0x78, 0x82, 0x5a, 0xd0, 0x7d, 0xcc, 0xff, 0x72, 0x21,
  0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43, 0x24, 0x8e, 0xe0, 0x35, 0x90, 0xe6, 0x81, 0x3a, 0x26, 0x4c,
  0x3c, 0x28, 0x52, 0xbb, 0x91, 0xc3, 0x00, 0xcb, 0x88, 0xd0, 0x65, 0x8b, 0x1b, 0x53, 0x2e, 0xa3,
  0x71, 0x64, 0x48, 0x97, 0xa2, 0x0d, 0xf9, 0x4e, 0x38, 0x19, 0xef, 0x46, 0xa9, 0xde, 0xac, 0xd8,
  0xa8, 0xfa, 0x76, 0x3f, 0xe3, 0x9c, 0x34, 0x3f, 0xf9, 0xdc, 0xbb, 0xc7, 0xc7, 0x0b, 0x4f, 0x1d,
  0x8a, 0x51, 0xe0, 0x4b, 0xcd, 0xb4, 0x59, 0x31, 0xc8, 0x9f, 0x7e, 0xc9, 0xd9, 0x78, 0x73, 0x64,
  0xea, 0xc5, 0xac, 0x83, 0x34, 0xd3, 0xeb, 0xc3, 0xc5, 0x81, 0xa0, 0xff, 0xfa, 0x13, 0x63, 0xeb,
  0x17, 0x0d, 0xdd, 0x51, 0xb7, 0xf0, 0xda, 0x49, 0xd3, 0x16, 0x55, 0x26, 0x29, 0xd4, 0x68, 0x9e,
  0x2b, 0x16, 0xbe, 0x58, 0x7d, 0x47, 0xa1, 0xfc, 0x8f, 0xf8, 0xb8, 0xd1, 0x7a, 0xd0, 0x31, 0xce,
  0x45, 0xcb, 0x3a, 0x8f, 0x95, 0x16, 0x04, 0x28, 0xaf, 0xd7, 0xfb, 0xca, 0xbb, 0x4b, 0x40, 0x7e,
]);
const P32_1 = 0x9e3779b1n;
const P32_2 = 0x85ebca77n;
const P32_3 = 0xc2b2ae3dn;
const P64_1 = 0x9e3779b185ebca87n;
const P64_2 = 0xc2b2ae3d27d4eb4fn;
const P64_3 = 0x165667b19e3779f9n;
const P64_4 = 0x85ebca77c2b2ae63n;
const P64_5 = 0x27d4eb2f165667c5n;
const AVALANCHE = 0x165667919e3779f9n;
const M64 = (1n << 64n) - 1n;
/** xxhash.h: XXH3_INIT_ACC, XXH_SECRET_MERGEACCS_START, XXH_SECRET_LASTACC_START. */
const INIT_ACC = [P32_3, P64_1, P64_2, P64_3, P64_4, P32_2, P64_5, P32_1];
const MERGE_START = 11;
const LAST_ACC_START = 7;

type Bytes = number[];

const uleb = (n: number): Bytes => {
  const out: Bytes = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
};

const sleb = (n: bigint): Bytes => {
  let v = BigInt.asIntN(64, n);
  const out: Bytes = [];
  for (;;) {
    const b = Number(v & 0x7fn);
    v >>= 7n;
    if ((v === 0n && (b & 0x40) === 0) || (v === -1n && (b & 0x40) !== 0)) return [...out, b];
    out.push(b | 0x80);
  }
};

// The few instructions the module uses (WebAssembly core 2.0, with SIMD's fixed-width 128-bit ops).
const I = {
  block: [0x02, 0x40], loop: [0x03, 0x40], end: [0x0b], ret: [0x0f],
  br: (d: number) => [0x0c, ...uleb(d)], brIf: (d: number) => [0x0d, ...uleb(d)], call: (f: number) => [0x10, ...uleb(f)],
  get: (l: number) => [0x20, ...uleb(l)], set: (l: number) => [0x21, ...uleb(l)], tee: (l: number) => [0x22, ...uleb(l)],
  gset: (g: number) => [0x24, ...uleb(g)],
  i32: (n: number) => [0x41, ...sleb(BigInt(n))], i64: (n: bigint) => [0x42, ...sleb(n)],
  i32Add: [0x6a], i32Shl: [0x74], i32LtU: [0x49], i32Ne: [0x47], i32Eqz: [0x45], i32WrapI64: [0xa7],
  i64Add: [0x7c], i64Mul: [0x7e], i64And: [0x83], i64Or: [0x84], i64Xor: [0x85], i64Shl: [0x86], i64ShrU: [0x88],
  v128Load: (offset: number) => [0xfd, 0x00, 4, ...uleb(offset)],
  v128Const: (bytes: ArrayLike<number>) => [0xfd, 0x0c, ...Array.from(bytes)],
  i8x16Shuffle: (lanes: number[]) => [0xfd, 0x0d, ...lanes],
  i64x2Splat: [0xfd, 0x12], i64x2ExtractLane: (l: number) => [0xfd, 0x1d, l],
  v128Or: [0xfd, 0x50], v128Xor: [0xfd, 0x51], v128AnyTrue: [0xfd, 0x53],
  i64x2ShrU: [0xfd, 0xcd, 0x01], i64x2Add: [0xfd, 0xce, 0x01], i64x2Mul: [0xfd, 0xd5, 0x01],
  i64x2ExtmulLowI32x4U: [0xfd, 0xde, 0x01],
};
const T = { i32: 0x7f, i64: 0x7e, v128: 0x7b };

/** Lanes: [a1, a0] (adjacent 64-bit lanes swapped); [lo32 of both lanes, ...]; [hi32 of both lanes, ...]. */
const SWAP64 = [8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7];
const LO32 = [0, 1, 2, 3, 8, 9, 10, 11, 0, 1, 2, 3, 8, 9, 10, 11];
const HI32 = [4, 5, 6, 7, 12, 13, 14, 15, 4, 5, 6, 7, 12, 13, 14, 15];

function emitPageHashModule(): Uint8Array<ArrayBuffer> {
  const secret64 = (off: number) => new DataView(SECRET.buffer).getBigUint64(off, true);
  const secret128 = (off: number) => SECRET.subarray(off, off + 16);

  // func 0: zero(addr) -> i32. 128 bytes per step (8 loads OR-ed), leaves at the first non-zero step.
  const ZP = 0, ZEND = 1;
  const zero = [
    ...I.get(ZP), ...I.i32(PAGE), ...I.i32Add, ...I.set(ZEND),
    ...I.block, ...I.loop,
    ...[0, 1, 2, 3, 4, 5, 6, 7].flatMap((k) => [...I.get(ZP), ...I.v128Load(16 * k), ...(k > 0 ? I.v128Or : [])]),
    ...I.v128AnyTrue, ...I.brIf(1),
    // ne, not lt_u: the last page of a 4 GiB memory ends at address 2^32, which wraps to 0.
    ...I.get(ZP), ...I.i32(128), ...I.i32Add, ...I.tee(ZP), ...I.get(ZEND), ...I.i32Ne, ...I.brIf(0),
    ...I.end, ...I.i32(1), ...I.ret, ...I.end,
    ...I.i32(0),
  ];

  // func 1: hash(addr). Locals: see below.
  const P = 0;
  const ACC = (j: number) => 1 + j; // 4 × v128: accumulators 2j, 2j+1
  const KEY_BASE = 5; // v128 windows of the secret at offsets 0, 8, ..., 176 (23 of them)
  const LAST_BASE = 28; // v128 windows at 121, 137, 153, 169 (the final stripe's secret)
  const DV = 32, DK = 33; // v128: data, keyed data
  const BLK = 34; // i32: current block address
  const A = (i: number) => 35 + i; // 8 × i64: the accumulators, extracted
  const TMP = 43, LOW = 44, HIGH = 45; // i64
  const key = (off: number) => (off % 8 === 0 ? KEY_BASE + off / 8 : LAST_BASE + (off - (192 - 64 - LAST_ACC_START)) / 16);

  const h: Bytes = [];
  for (let j = 0; j < 4; j++) {
    const b = new Uint8Array(16);
    new DataView(b.buffer).setBigUint64(0, INIT_ACC[2 * j]!, true);
    new DataView(b.buffer).setBigUint64(8, INIT_ACC[2 * j + 1]!, true);
    h.push(...I.v128Const(b), ...I.set(ACC(j)));
  }
  for (let off = 0; off <= 176; off += 8) h.push(...I.v128Const(secret128(off)), ...I.set(key(off)));
  for (let j = 0; j < 4; j++) {
    const off = 192 - 64 - LAST_ACC_START + 16 * j;
    h.push(...I.v128Const(secret128(off)), ...I.set(key(off)));
  }
  // XXH3_accumulate_512: acc[i ^ 1] += data[i]; acc[i] += lo32(data[i] ^ key[i]) * hi32(data[i] ^ key[i]).
  const stripe = (base: number, offset: number, secretOff: number): Bytes => {
    const out: Bytes = [];
    for (let j = 0; j < 4; j++) {
      out.push(...I.get(base), ...I.v128Load(offset + 16 * j), ...I.tee(DV), ...I.get(key(secretOff + 16 * j)), ...I.v128Xor, ...I.set(DK));
      out.push(...I.get(ACC(j)), ...I.get(DV), ...I.get(DV), ...I.i8x16Shuffle(SWAP64), ...I.i64x2Add);
      out.push(...I.get(DK), ...I.get(DK), ...I.i8x16Shuffle(LO32), ...I.get(DK), ...I.get(DK), ...I.i8x16Shuffle(HI32));
      out.push(...I.i64x2ExtmulLowI32x4U, ...I.i64x2Add, ...I.set(ACC(j)));
    }
    return out;
  };
  // XXH3_scrambleAcc: acc ^= acc >> 47; acc ^= key; acc *= PRIME32_1 (secret at 192 - 64).
  const scramble: Bytes = [];
  for (let j = 0; j < 4; j++) {
    scramble.push(...I.get(ACC(j)), ...I.get(ACC(j)), ...I.i32(47), ...I.i64x2ShrU, ...I.v128Xor, ...I.get(key(128 + 16 * j)), ...I.v128Xor);
    scramble.push(...I.i64(P32_1), ...I.i64x2Splat, ...I.i64x2Mul, ...I.set(ACC(j)));
  }
  // 63 full blocks of 16 stripes (nb_blocks = (len - 1) / 1024), then 15 stripes, then the last stripe.
  h.push(...I.get(P), ...I.set(BLK), ...I.block, ...I.loop);
  for (let s = 0; s < 16; s++) h.push(...stripe(BLK, 64 * s, 8 * s));
  h.push(...scramble);
  h.push(...I.get(BLK), ...I.i32(1024), ...I.i32Add, ...I.tee(BLK), ...I.get(P), ...I.i32(63 * 1024), ...I.i32Add, ...I.i32LtU, ...I.brIf(0));
  h.push(...I.end, ...I.end);
  for (let s = 0; s < 15; s++) h.push(...stripe(BLK, 64 * s, 8 * s));
  h.push(...stripe(P, PAGE - 64, 192 - 64 - LAST_ACC_START));
  for (let j = 0; j < 4; j++) {
    h.push(...I.get(ACC(j)), ...I.i64x2ExtractLane(0), ...I.set(A(2 * j)), ...I.get(ACC(j)), ...I.i64x2ExtractLane(1), ...I.set(A(2 * j + 1)));
  }
  // XXH3_mergeAccs + XXH3_avalanche.
  const merge = (secretOff: number, start: bigint): Bytes => {
    const out = [...I.i64(start)];
    for (let i = 0; i < 4; i++) {
      out.push(...I.get(A(2 * i)), ...I.i64(secret64(secretOff + 16 * i)), ...I.i64Xor);
      out.push(...I.get(A(2 * i + 1)), ...I.i64(secret64(secretOff + 16 * i + 8)), ...I.i64Xor);
      out.push(...I.call(2), ...I.i64Add);
    }
    out.push(...I.tee(TMP), ...I.get(TMP), ...I.i64(37n), ...I.i64ShrU, ...I.i64Xor, ...I.i64(AVALANCHE), ...I.i64Mul);
    out.push(...I.tee(TMP), ...I.get(TMP), ...I.i64(32n), ...I.i64ShrU, ...I.i64Xor);
    return out;
  };
  const len = BigInt(PAGE);
  h.push(...merge(MERGE_START, (len * P64_1) & M64), ...I.set(LOW));
  h.push(...merge(192 - 64 - MERGE_START, ~(len * P64_2) & M64), ...I.set(HIGH));
  for (const [g, v, shift] of [[0, HIGH, 32n], [1, HIGH, 0n], [2, LOW, 32n], [3, LOW, 0n]] as const) {
    h.push(...I.get(v), ...(shift ? [...I.i64(shift), ...I.i64ShrU] : []), ...I.i32WrapI64, ...I.gset(g));
  }

  // func 2: fold(a, b) -> i64: low64 ^ high64 of the 128-bit product (XXH3_mul128_fold64, portable form).
  const lo = (l: number) => [...I.get(l), ...I.i64(0xffffffffn), ...I.i64And];
  const hi = (l: number) => [...I.get(l), ...I.i64(32n), ...I.i64ShrU];
  const LL = 2, HL = 3, LH = 4, CROSS = 5;
  const fold = [
    ...lo(0), ...lo(1), ...I.i64Mul, ...I.set(LL),
    ...hi(0), ...lo(1), ...I.i64Mul, ...I.set(HL),
    ...lo(0), ...hi(1), ...I.i64Mul, ...I.set(LH),
    ...hi(LL), ...lo(HL), ...I.i64Add, ...I.get(LH), ...I.i64Add, ...I.set(CROSS),
    ...hi(HL), ...hi(CROSS), ...I.i64Add, ...hi(0), ...hi(1), ...I.i64Mul, ...I.i64Add,
    ...I.get(CROSS), ...I.i64(32n), ...I.i64Shl, ...lo(LL), ...I.i64Or, ...I.i64Xor,
  ];

  // func 3: next(page, end) -> i32. Page indices, not addresses: a 4 GiB memory ends at 2^32.
  const next = [
    ...I.block, ...I.loop,
    ...I.get(0), ...I.get(1), ...I.i32LtU, ...I.i32Eqz, ...I.brIf(1),
    ...I.get(0), ...I.i32(16), ...I.i32Shl, ...I.call(0), ...I.i32Eqz, ...I.brIf(1),
    ...I.get(0), ...I.i32(1), ...I.i32Add, ...I.set(0), ...I.br(0),
    ...I.end, ...I.end, ...I.get(0),
  ];

  const locals = (groups: [number, number][]) => [...uleb(groups.length), ...groups.flatMap(([n, t]) => [...uleb(n), t])];
  const body = (decl: Bytes, code: Bytes) => {
    const b = [...decl, ...code, ...I.end];
    return [...uleb(b.length), ...b];
  };
  const vec = (items: Bytes[]) => [...uleb(items.length), ...items.flat()];
  const name = (s: string) => [...uleb(s.length), ...new TextEncoder().encode(s)];
  const section = (id: number, bytes: Bytes) => [id, ...uleb(bytes.length), ...bytes];
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec([
      [0x60, 1, T.i32, 1, T.i32], // zero
      [0x60, 1, T.i32, 0], // hash
      [0x60, 2, T.i64, T.i64, 1, T.i64], // fold
      [0x60, 2, T.i32, T.i32, 1, T.i32], // next
    ])),
    ...section(2, vec([[...name("m"), ...name("memory"), 0x02, 0x00, 0x00]])),
    ...section(3, vec([[0], [1], [2], [3]])),
    ...section(6, vec([0, 1, 2, 3].map(() => [T.i32, 0x01, ...I.i32(0), ...I.end]))),
    ...section(7, vec([
      [...name("zero"), 0x00, 0], [...name("hash"), 0x00, 1], [...name("next"), 0x00, 3],
      [...name("h0"), 0x03, 0], [...name("h1"), 0x03, 1], [...name("h2"), 0x03, 2], [...name("h3"), 0x03, 3],
    ])),
    ...section(10, vec([
      body(locals([[1, T.i32]]), zero),
      body(locals([[31, T.v128], [2, T.v128], [1, T.i32], [11, T.i64]]), h),
      body(locals([[4, T.i64]]), fold),
      body(locals([]), next),
    ])),
  ]);
}

/** The module's bytes and its compilation (null without wasm SIMD): made once, never changed, no state. */
const PAGE_HASH_WASM = emitPageHashModule();
const PAGE_HASH_MODULE: Promise<WebAssembly.Module | null> = WebAssembly.validate(PAGE_HASH_WASM)
  ? WebAssembly.compile(PAGE_HASH_WASM)
  : Promise.resolve(null);
