import { createCRC32, createXXHash128, type IHasher } from "hash-wasm";

/** The hash functions the format uses: xxh128 for page ids and the image digest, CRC-32 for records. */
export class Hashing {
  private constructor(private readonly xxh: IHasher, private readonly crc: IHasher, readonly digest: IHasher) {}
  /** A set of hashers for one image at a time (a writer or a reader uses `digest` throughout). */
  static async create(): Promise<Hashing> {
    return new Hashing(await createXXHash128(), await createCRC32(), await createXXHash128());
  }
  /** 128-bit content id of a page, as 32 hex digits. */
  pageId(page: Uint8Array): string {
    return this.xxh.init().update(page).digest("hex");
  }
  crc32(...parts: Uint8Array[]): number {
    this.crc.init();
    for (const p of parts) this.crc.update(p);
    const d = this.crc.digest("binary");
    return ((d[0]! << 24) | (d[1]! << 16) | (d[2]! << 8) | d[3]!) >>> 0;
  }
}

/** Whether a 64 KiB page is all zeros (word-wise, stops at the first non-zero word). */
export function isZeroPage(page: Uint8Array): boolean {
  const words = new Int32Array(page.buffer, page.byteOffset, page.byteLength >> 2);
  for (let i = 0; i < words.length; i++) if (words[i] !== 0) return false;
  return true;
}

export function bytesToHex(b: Uint8Array): string {
  let s = "";
  for (const x of b) s += (x < 16 ? "0" : "") + x.toString(16);
  return s;
}

export function hexToBytes(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length >> 1);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}
