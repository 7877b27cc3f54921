// A cursor over WebAssembly binary bytes (LEB128 integers, names, value types, limits).

/** A value type as crvm names it ("i32", "i64", "f32", "f64", "v128", "funcref", "externref", "ref"). */
export type ValType = string;

export interface Limits {
  min: number;
  max: number | null;
  shared: boolean;
  is64: boolean;
}

const utf8 = new TextDecoder("utf-8", { fatal: false });

export class Reader {
  pos: number;
  constructor(readonly b: Uint8Array, pos = 0, readonly end = b.length) {
    this.pos = pos;
  }
  byte(): number {
    if (this.pos >= this.end) throw new RangeError("unexpected end of section");
    return this.b[this.pos++]!;
  }
  u32(): number {
    let r = 0;
    let shift = 0;
    for (;;) {
      const x = this.byte();
      r += (x & 0x7f) * 2 ** shift;
      if (!(x & 0x80)) return r;
      shift += 7;
    }
  }
  /** Signed LEB (any width) as a JS number; exact for the small values we need (type indices, valtypes). */
  sleb(): number {
    let r = 0;
    let shift = 0;
    let x: number;
    do {
      x = this.byte();
      r += (x & 0x7f) * 2 ** shift;
      shift += 7;
    } while (x & 0x80);
    return x & 0x40 ? r - 2 ** shift : r;
  }
  skipLeb(): void {
    while (this.byte() & 0x80);
  }
  skip(n: number): void {
    this.pos += n;
  }
  name(): string {
    const n = this.u32();
    const s = utf8.decode(this.b.subarray(this.pos, this.pos + n));
    this.pos += n;
    return s;
  }
  valType(): ValType {
    const t = this.sleb();
    switch (t) {
      case -1: return "i32";
      case -2: return "i64";
      case -3: return "f32";
      case -4: return "f64";
      case -5: return "v128";
      case -16: return "funcref";
      case -17: return "externref";
      case -28: // (ref ht)
      case -29: // (ref null ht)
        this.sleb();
        return "ref";
      default: return "ref";
    }
  }
  limits(): Limits {
    const flags = this.u32();
    const min = this.u32();
    const max = flags & 1 ? this.u32() : null;
    return { min, max, shared: (flags & 2) !== 0, is64: (flags & 4) !== 0 };
  }
}
